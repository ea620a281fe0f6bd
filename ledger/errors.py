"""Errors of the ledger: bad input refused before it reaches the database; refusals of a query.

One family, as asyncpg has its own: every error the ledger raises is a `LedgerError` that says
`what` went wrong (the condition, in words), `where` (the field, line or account) and the
offending `value`, so a boundary (the CLI, an HTTP problem body, a log line) shows them without
parsing the message; ``str(e)`` is the sentence for people. Kinds that callers caught as a
built-in before (ValueError, LookupError) still derive from it. Expected rejections of transfers
are not errors but result codes (`ledger.results`).
"""

from __future__ import annotations

__all__ = [
    "EngineError",
    "LedgerError",
    "InvalidAccount",
    "InvalidTransfer",
    "BatchTooLarge",
    "AccountNotFound",
    "ConcurrentSubmission",
]


class EngineError(Exception):
    """The shape every error family of the engine shares (ledger, rating, ivr, switch, web, ops):
    `what` went wrong (defaults to the message), `where` and the offending `value`. It lives on
    the lowest floor so that each package's family derives from it; nothing raises it alone."""

    what: str = ""
    where: str | None = None
    value: object = None

    def __init__(
        self,
        message: str = "",
        *,
        what: str | None = None,
        where: str | None = None,
        value: object = None,
    ) -> None:
        super().__init__(message)
        self.what = what if what is not None else message
        if where is not None:
            self.where = where
        if value is not None:
            self.value = value


class LedgerError(EngineError):
    """Base of the ledger's own errors (expected rejections of transfers are result codes)."""


class InvalidAccount(LedgerError, ValueError):
    """An account description that cannot be created: names the field and the value."""

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(
            f"account {field}: {reason} (got {value!r})",
            what=reason,
            where=f"account {field}",
            value=value,
        )
        self.field, self.value, self.reason = field, value, reason


class InvalidTransfer(LedgerError, ValueError):
    """A transfer whose field has the wrong type or an unknown value: names the field and value.

    Values of the right type that the ledger refuses (a negative amount, an unknown account) are
    not errors but result codes (`ledger.results.TransferResult`)."""

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(
            f"transfer {field}: {reason} (got {value!r})",
            what=reason,
            where=f"transfer {field}",
            value=value,
        )
        self.field, self.value, self.reason = field, value, reason


class BatchTooLarge(LedgerError):
    """More transfers than one batch may carry."""

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"a batch holds at most {limit} transfers, got {size}",
            what=f"a batch holds at most {limit} transfers",
            where="batch",
            value=size,
        )
        self.size, self.limit = size, limit


class AccountNotFound(LedgerError, LookupError):
    def __init__(self, account_id: str):
        super().__init__(
            f"no ledger account {account_id!r}",
            what="no such ledger account",
            where="account",
            value=account_id,
        )
        self.account_id = account_id


class ConcurrentSubmission(LedgerError):
    """Another connection committed a transfer with one of this batch's ids while the batch ran.

    Nothing of the batch was applied; submitting it again answers ``exists`` for that transfer.
    `submit` retries once by itself when it is not inside the caller's transaction."""
