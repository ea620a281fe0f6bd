"""Errors of the ledger: bad input refused before it reaches the database; refusals of a query."""

from __future__ import annotations

__all__ = [
    "LedgerError",
    "InvalidAccount",
    "InvalidTransfer",
    "BatchTooLarge",
    "AccountNotFound",
    "ConcurrentSubmission",
]


class LedgerError(Exception):
    """Base of the ledger's own errors (expected rejections of transfers are result codes)."""


class InvalidAccount(LedgerError, ValueError):
    """An account description that cannot be created: names the field and the value."""

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(f"account {field}: {reason} (got {value!r})")
        self.field, self.value, self.reason = field, value, reason


class InvalidTransfer(LedgerError, ValueError):
    """A transfer whose field has the wrong type or an unknown value: names the field and value.

    Values of the right type that the ledger refuses (a negative amount, an unknown account) are
    not errors but result codes (`ledger.results.TransferResult`)."""

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(f"transfer {field}: {reason} (got {value!r})")
        self.field, self.value, self.reason = field, value, reason


class BatchTooLarge(LedgerError):
    """More transfers than one batch may carry."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"a batch holds at most {limit} transfers, got {size}")
        self.size, self.limit = size, limit


class AccountNotFound(LedgerError, LookupError):
    def __init__(self, account_id: str):
        super().__init__(f"no ledger account {account_id!r}")
        self.account_id = account_id


class ConcurrentSubmission(LedgerError):
    """Another connection committed a transfer with one of this batch's ids while the batch ran.

    Nothing of the batch was applied; submitting it again answers ``exists`` for that transfer.
    `submit` retries once by itself when it is not inside the caller's transaction."""
