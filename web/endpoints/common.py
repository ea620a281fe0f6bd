"""Types shared by the API's models: bounded strings, page sizes, money as currency strings."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

__all__ = ["Model", "Text", "Ref", "PageLimit", "Money", "utc", "UtcDateTime",
           "PAGE_SIZE_MAX", "PAGE_SIZE_DEFAULT", "Cursor"]

PAGE_SIZE_MAX = 1000
PAGE_SIZE_DEFAULT = 100


class Model(BaseModel):
    """Every request and response model: unknown fields are refused, by name."""
    model_config = ConfigDict(extra="forbid")


# No control characters anywhere a person types text.
Text = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                       pattern=r"^[\x21-\x7e]+$")]
PageLimit = Annotated[int, Field(ge=1, le=PAGE_SIZE_MAX,
                                 description=f"rows per page, at most {PAGE_SIZE_MAX}")]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                          pattern=r"^[A-Za-z0-9_-]+$")]
Money = Annotated[str, StringConstraints(pattern=r"^-?[0-9]+\.[0-9]{2,6}$"),
                  Field(description="an amount in currency units, e.g. 25.00")]


def _aware(v: dt.datetime) -> dt.datetime:
    if v.tzinfo is None:
        raise ValueError("give a time zone (e.g. Z or +00:00)")
    return v.astimezone(dt.timezone.utc)


def _iso(v: object) -> dt.datetime:
    # Only RFC 3339 text: pydantic alone would also take 0.5 as seconds since 1970.
    if isinstance(v, dt.datetime):
        return v
    if not isinstance(v, str) or len(v) < 16 or v[4:5] != "-" or v[10:11] not in ("T", "t", " "):
        raise ValueError("give an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")
    try:
        return dt.datetime.fromisoformat(v)
    except ValueError:
        raise ValueError("give an RFC 3339 time, e.g. 2026-03-01T00:00:00Z") from None


UtcDateTime = Annotated[dt.datetime, BeforeValidator(_iso), AfterValidator(_aware)]


def utc(v: dt.datetime) -> dt.datetime:
    return v.astimezone(dt.timezone.utc)


# Amounts in requests: currency strings, never JSON numbers (no binary floats near money).
AmountIn = Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,10}(\.[0-9]{1,6})?$"),
                     Field(description="an amount in currency units, e.g. 25.00 (up to 6 "
                                       "decimals)")]
