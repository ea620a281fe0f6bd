"""RFC 9457 problem details: every refusal the API gives, naming the field where there is one."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["FieldError", "Problem", "ApiProblem", "BadInput", "Unauthorized", "Forbidden",
           "NotFoundProblem", "Conflict", "from_validation", "PROBLEM_MEDIA_TYPE"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://ics.invalid/problems/"     # stable identifiers, not fetched


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location: Literal["body", "query", "path", "header"]
    field: str = Field(description="dotted path of the field, e.g. lines.3.amount")
    message: str


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


def field_error(location: str, field: str, message: str) -> FieldError:
    return FieldError(location=location, field=field, message=message)


def invalid(location: str, field: str, message: str) -> ApiProblem:
    """One bad field: `detail` repeats it so a person reading only the detail still sees where."""
    return BadInput(f"{location} field {field!r}: {message}", [field_error(location, field, message)])


def from_validation(location: str, e: ValidationError) -> ApiProblem:
    errors = []
    for err in e.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(whole)"
        errors.append(field_error(location, field, err["msg"]))
    first = errors[0] if errors else field_error(location, "(whole)", "invalid")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return BadInput(f"{location} field {first.field!r}: {first.message}{more}", errors)
