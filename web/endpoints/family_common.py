"""Shared pieces of the family API: families' refusals as problem documents, bounded inputs."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, cast

from pydantic import Field, StringConstraints

from families.errors import (FamilyError, FamilyLedgerRefused, Invalid, NotApproved, NotFound,
                             Refused)
from families.settings import parse_amount
from web import problems

if TYPE_CHECKING:
    from web.dispatch import Call
    from web.family import FamilyServices
    from web.family_auth import HolderPrincipal

__all__ = ["family_problems", "TooManyRequests", "Email", "Password", "Token", "IdemKey",
           "NumberText", "Amount", "micros_of", "fam", "holder"]

Email = Annotated[str, StringConstraints(min_length=3, max_length=254,
                                         pattern=r"^[^\x00-\x1f\x7f]+$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=100,
                                         pattern=r"^[A-Za-z0-9_-]+$")]
IdemKey = Annotated[str, StringConstraints(min_length=1, max_length=100,
                                           pattern=r"^[\x21-\x7e]+$"),
                    Field(description="your key for this payment: the same key again pays once")]
NumberText = Annotated[str, StringConstraints(min_length=1, max_length=32,
                                              pattern=r"^[0-9+() .-]+$")]
Amount = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,7}(\.[0-9]{1,2})?$"),
                   Field(description="an amount in currency units, e.g. 25.00")]


class TooManyRequests(problems.ApiProblem):
    status = 429
    title = "Too many requests"
    slug = "too-many-requests"


def _location(field: str) -> str:
    return "path" if field in ("number", "inmate", "payment", "facility") else "body"


@contextmanager
def family_problems(location: str | None = None) -> Iterator[None]:
    """Turn a families refusal into a problem naming its field."""
    try:
        yield
    except FamilyLedgerRefused as e:
        # Ours, not the holder's: the payment stays pending for an operator; never a 422.
        raise problems.Unavailable("the payment could not be booked now; it is kept and an "
                                   "operator will settle it") from e
    except Invalid as e:
        raise problems.invalid(location or "body", e.field, e.message, e.code, e.params) from None
    except Refused as e:
        raise problems.Conflict(f"{e.field}: {e.message}",
                                [problems.field_error(location or "body", e.field,
                                                      e.message, e.code, e.params)]) from None
    except NotFound as e:
        raise problems.NotFoundProblem(f"{e.field}: {e.message}") from None
    except NotApproved as e:
        raise problems.Forbidden(f"{e.field}: {e.message}",
                                 [problems.field_error(location or "body", e.field,
                                                       e.message, e.code, e.params)]) from None
    except FamilyError as e:         # pragma: no cover - every family error is one of the above
        raise problems.invalid(location or "body", e.field, e.message, e.code,
                               e.params) from None


def micros_of(field: str, text: str) -> int:
    try:
        return parse_amount(text, field=field)
    except ValueError as e:
        raise problems.invalid("body", field, str(e).partition(": ")[2] or str(e),
                               "amount.format") from None


def fam(call: Call) -> FamilyServices:
    families: FamilyServices | None = call.services.families
    if families is None:
        raise problems.NotFoundProblem("the family API is not served by this node")
    return families


def holder(call: Call) -> uuid.UUID:
    # Only holder operations call this: their principal is the holder's session.
    return cast("HolderPrincipal", call.principal).holder_id
