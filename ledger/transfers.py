"""Transfers and holds as data: what a transfer is, its result, and a batch's database arguments.

This module does no I/O (it imports neither asyncpg nor the database), so the pure modules (the
call session's charging steps) may build transfers; `ledger.submit` sends a batch to the database.
Every transfer gets a `Result` in input order; expected refusals are result codes, not exceptions.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import uuid
from dataclasses import dataclass

from ledger.errors import BatchTooLarge, InvalidTransfer
from ledger.results import TransferResult

__all__ = [
    "TransferKind",
    "TransferCode",
    "Transfer",
    "Result",
    "batch_args",
    "expiry_id",
    "AMOUNT_MAX",
    "BATCH_SIZE_MAX",
    "HOLD_EXPIRY_SECONDS_MAX",
    "REF_LENGTH_MAX",
]

AMOUNT_MAX = 10**15  # micro-units: a billion currency units in one transfer
BATCH_SIZE_MAX = 8_190  # config: ledger.batch_size_max
HOLD_EXPIRY_SECONDS_MAX = 86_400  # config: ledger.hold_expiry_seconds_max
REF_LENGTH_MAX = 200
_INT_MAX = 2**31 - 1
_UUID = uuid.UUID


class TransferKind(enum.IntEnum):
    SINGLE = 1  # posted at once
    HOLD = 2  # pending: reserves the amount until posted, voided or expired
    POST = 3  # posts all or part of a hold; the rest is released
    VOID = 4  # releases a hold
    EXPIRE = 5  # releases a hold past its expiry (the sweeper makes these)


class TransferCode(enum.StrEnum):
    """What the money is for, shown on statements and revenue reports."""

    OTHER = "other"
    DEPOSIT = "deposit"  # family or inmate funding
    CALL_CHARGE = "call_charge"  # a call period: held, then posted to call clearing
    CALL_REVENUE = "call_revenue"  # call clearing to revenue
    TAX = "tax"  # call clearing to tax payable
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    FEE = "fee"


@dataclass(frozen=True)
class Transfer:
    """One money movement. ``id`` is the client's idempotency key.

    single and hold: ``debit``, ``credit`` and ``amount`` (> 0) are required; a hold also needs
    ``expires_in`` seconds. post, void and expire: ``hold`` names the hold; ``debit``, ``credit``,
    ``code`` and ``ref`` may be None (the hold's); ``amount`` None or 0 means the whole hold (a post
    of less releases the rest). ``linked`` chains this transfer to the next one: the chain applies
    whole or not at all. ``code`` None is "other" (or the hold's)."""

    id: uuid.UUID
    kind: TransferKind
    debit: str | None = None
    credit: str | None = None
    amount: int | None = None
    hold: uuid.UUID | None = None
    expires_in: int | None = None
    linked: bool = False
    code: TransferCode | None = None
    ref: str | None = None

    def __post_init__(self) -> None:
        # Every transfer is checked, the core's own included; the common case (exact types)
        # is tested first so that a Continue's several transfers stay cheap to make.
        if type(self.id) is not _UUID and not isinstance(self.id, _UUID):
            raise InvalidTransfer("id", self.id, "must be a UUID")
        if type(self.kind) is not TransferKind:
            try:
                object.__setattr__(self, "kind", TransferKind(self.kind))
            except ValueError:
                raise InvalidTransfer("kind", self.kind, "must be a TransferKind") from None
        debit, credit, amount, expires_in = self.debit, self.credit, self.amount, self.expires_in
        if debit is not None and type(debit) is not str and not isinstance(debit, str):
            raise InvalidTransfer("debit", debit, "must be an account id (a string)")
        if credit is not None and type(credit) is not str and not isinstance(credit, str):
            raise InvalidTransfer("credit", credit, "must be an account id (a string)")
        if (
            amount is not None
            and type(amount) is not int
            and (isinstance(amount, bool) or not isinstance(amount, int))
        ):
            raise InvalidTransfer("amount", amount, "must be an integer")
        if (
            expires_in is not None
            and type(expires_in) is not int
            and (isinstance(expires_in, bool) or not isinstance(expires_in, int))
        ):
            raise InvalidTransfer("expires_in", expires_in, "must be an integer")
        hold = self.hold
        if hold is not None and type(hold) is not _UUID and not isinstance(hold, _UUID):
            raise InvalidTransfer("hold", hold, "must be a UUID")
        if self.linked is not True and self.linked is not False:
            raise InvalidTransfer("linked", self.linked, "must be true or false")
        code = self.code
        if code is not None and type(code) is not TransferCode:
            try:
                object.__setattr__(self, "code", TransferCode(code))
            except ValueError:
                raise InvalidTransfer(
                    "code", code, "must be one of " + ", ".join(c.value for c in TransferCode)
                ) from None
        ref = self.ref
        if ref is not None and (
            (type(ref) is not str and not isinstance(ref, str)) or len(ref) > REF_LENGTH_MAX
        ):
            raise InvalidTransfer(
                "ref", ref, f"must be text of at most {REF_LENGTH_MAX} characters"
            )

    def relinked(self, linked: bool) -> Transfer:
        """This transfer with ``linked`` changed (to close or extend a chain): the other fields
        were checked when it was made, so only the flag is."""
        if linked is not True and linked is not False:
            raise InvalidTransfer("linked", linked, "must be true or false")
        if linked is self.linked:
            return self
        copy = object.__new__(Transfer)
        copy.__dict__.update(self.__dict__)
        copy.__dict__["linked"] = linked
        return copy


@dataclass(frozen=True)
class Result:
    id: uuid.UUID
    result: TransferResult

    @property
    def succeeded(self) -> bool:
        return self.result.succeeded


def expiry_id(hold: uuid.UUID) -> uuid.UUID:
    """The id the sweeper gives the expire transfer of ``hold`` (same as SQL's md5 derivation)."""
    return uuid.UUID(hashlib.md5(f"expire:{hold}".encode()).hexdigest())


def _clamp(value: int | None, top: int) -> int | None:
    # Out-of-range numbers still get their result code: the server sees top+1 or -1 instead.
    if value is None:
        return None
    if value > top:
        return top + 1
    if value < -top:
        return -1
    return value


def batch_args(
    transfers: list[Transfer],
    *,
    now: dt.datetime | None = None,
    hold_expiry_seconds_max: int = HOLD_EXPIRY_SECONDS_MAX,
) -> tuple[object, ...]:
    """The 12 arguments of ``ledger_submit`` for a batch, for callers that invoke it from their
    own SQL function (e.g. to advance a call and move its money in one statement)."""
    if len(transfers) > BATCH_SIZE_MAX:
        raise BatchTooLarge(len(transfers), BATCH_SIZE_MAX)
    return (
        [t.id for t in transfers],
        [int(t.kind) for t in transfers],
        [t.debit for t in transfers],
        [t.credit for t in transfers],
        [_clamp(t.amount, AMOUNT_MAX) for t in transfers],
        [t.hold for t in transfers],
        [_clamp(t.expires_in, _INT_MAX - 1) for t in transfers],
        [t.linked for t in transfers],
        [None if t.code is None else t.code.value for t in transfers],
        [t.ref for t in transfers],
        now,
        hold_expiry_seconds_max,
    )
