"""The families' refusals, each naming the field at fault: bad input, a conflict with the current
state, something not found, and a login refused (wrong, unverified or throttled).

One family, as asyncpg has its own: every error the families package raises is a `FamilyError`
(fees, passwords, providers and settings included) with `what` went wrong (its message),
`where` (the field) and the offending `value` when there is one; ``str(e)`` is for people."""
from __future__ import annotations

__all__ = ["FamilyError", "Invalid", "Refused", "NotFound", "NotApproved", "LoginRefused"]


class FamilyError(Exception):
    def __init__(self, field: str, message: str, *, value: object = None) -> None:
        super().__init__(message)
        self.field, self.message, self.value = field, message, value

    @property
    def what(self) -> str:
        return self.message

    @property
    def where(self) -> str:
        return self.field


class Invalid(FamilyError):
    """The input is unusable (422): the message says what is wrong with `field`."""


class Refused(FamilyError):
    """The input is well formed but conflicts with the current state (409)."""


class NotFound(FamilyError):
    """What `field` names does not exist, or is not this holder's (404)."""


class NotApproved(FamilyError):
    """The holder is not allowed this (403): e.g. a deposit where only approved contacts may."""


class LoginRefused(FamilyError):
    """A login that does not go through. `reason`: wrong (email or password), unverified, or
    throttled (too many failures for this email or source; nothing was checked)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__("login", message, value=reason)
        self.reason = reason
