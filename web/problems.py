"""RFC 9457 problem details: every refusal the API gives, naming the field where there is one."""
from __future__ import annotations

import functools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["FieldError", "Problem", "ApiProblem", "BadInput", "Unauthorized", "Forbidden",
           "NotFoundProblem", "Conflict", "from_validation", "PROBLEM_MEDIA_TYPE",
           "VALIDATION_TYPES", "validation_code", "SLUGS", "WEB_CODES", "known_codes"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://ics.invalid/problems/"     # stable identifiers, not fetched


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location: Literal["body", "query", "path", "header"]
    field: str = Field(description="dotted path of the field, e.g. lines.3.amount")
    message: str
    code: str = Field(default="invalid", description="stable code of the refusal (see "
                      "docs/api.md): a client shows its own words for it, with `params`")
    params: dict[str, str] = Field(default_factory=dict, description="the values the "
                                   "refusal's text names (limits, amounts), as text")


class Problem(BaseModel):
    """application/problem+json (RFC 9457), with `errors` naming each bad field."""
    model_config = ConfigDict(extra="forbid")
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class ApiProblem(Exception):
    """Raised by handlers and the dispatcher; rendered as a Problem with its status."""
    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str, errors: list[FieldError] | None = None, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def problem(self, instance: str | None = None) -> Problem:
        return Problem(type=TYPE_BASE + self.slug, title=self.title, status=self.status,
                       detail=self.detail, instance=instance, errors=self.errors)


def _problem(status: int, title: str, slug: str) -> type[ApiProblem]:
    return type(slug.title().replace("-", ""), (ApiProblem,),
                {"status": status, "title": title, "slug": slug})


BadInput = _problem(422, "Invalid request", "invalid-request")
Unauthorized = _problem(401, "Not authenticated", "unauthenticated")
Forbidden = _problem(403, "Not allowed", "forbidden")
NotFoundProblem = _problem(404, "Not found", "not-found")
MethodNotAllowed = _problem(405, "Method not allowed", "method-not-allowed")
Conflict = _problem(409, "Conflict", "conflict")
TooLarge = _problem(413, "Request body too large", "body-too-large")
UnsupportedMedia = _problem(415, "Unsupported media type", "unsupported-media-type")
Unavailable = _problem(503, "Service unavailable", "unavailable")
# Every problem type's slug (the `type` URL's last part), for pages that title it in their words.
SLUGS = ("internal", "invalid-request", "unauthenticated", "forbidden", "not-found",
         "method-not-allowed", "conflict", "body-too-large", "unsupported-media-type",
         "unavailable", "too-many-requests")


def field_error(location: str, field: str, message: str, code: str = "invalid",
                params: dict[str, str] | None = None) -> FieldError:
    if code not in known_codes():       # our bug: a code no page has words for
        raise ValueError(f"unknown problem code {code!r}")
    return FieldError(location=location, field=field, message=message, code=code,
                      params=params or {})


def invalid(location: str, field: str, message: str, code: str = "invalid",
            params: dict[str, str] | None = None) -> ApiProblem:
    """One bad field: `detail` repeats it so a person reading only the detail still sees where."""
    return BadInput(f"{location} field {field!r}: {message}",
                    [field_error(location, field, message, code, params)])


# The request-validation failures the API names by code ("validation.<type>"); any other type
# is "validation.other". A closed list, so every code has words in every language.
VALIDATION_TYPES = frozenset({
    "missing", "extra_forbidden", "string_type", "string_pattern_mismatch", "string_too_short",
    "string_too_long", "int_type", "int_parsing", "int_from_float", "bool_type", "bool_parsing",
    "uuid_type", "uuid_parsing", "literal_error", "enum", "greater_than", "greater_than_equal",
    "less_than", "less_than_equal", "datetime_type", "datetime_parsing", "date_type",
    "date_parsing", "list_type", "too_short", "too_long", "model_type", "dict_type",
    "json_invalid", "value_error", "url_parsing"})
PARAM_TEXT_MAX = 200


# Codes the web layer gives itself (beside the families' and the validation ones).
WEB_CODES = frozenset({"invalid", "amount.format", "passwords_differ", "login.wrong",
                       "login.unverified"})


@functools.cache
def known_codes() -> frozenset[str]:
    """Every code a field error may carry: the web's, the families', and validation.<type>."""
    from families.errors import CODES
    return WEB_CODES | CODES | {validation_code(t) for t in VALIDATION_TYPES} | {
        "validation.other"}


def validation_code(error_type: str) -> str:
    return "validation." + (error_type if error_type in VALIDATION_TYPES else "other")


def from_validation(location: str, e: ValidationError) -> ApiProblem:
    errors = []
    for err in e.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(whole)"
        ctx = {k: str(v)[:PARAM_TEXT_MAX] for k, v in (err.get("ctx") or {}).items()
               if isinstance(v, (str, int))}
        errors.append(field_error(location, field, err["msg"], validation_code(err["type"]),
                                  ctx))
    first = errors[0] if errors else field_error(location, "(whole)", "invalid")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return BadInput(f"{location} field {first.field!r}: {first.message}{more}", errors)
