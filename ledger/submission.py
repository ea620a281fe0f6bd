"""Submit a batch of transfers to the database in one round trip, inside one transaction.

A batch is one call of ``ledger_submit`` (see ``ledger/migrations``) inside one transaction, the
caller's if it has one, so a caller can write a call record and its charges atomically. What a
transfer is lives in `ledger.transfers` (no I/O); this is the one module that sends them.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from ledger.errors import ConcurrentSubmission
from ledger.results import TransferResult
from ledger.transfers import HOLD_EXPIRY_SECONDS_MAX, Result, Transfer, batch_args

__all__ = ["submit"]

_SUBMIT = (
    "SELECT ledger_submit($1::uuid[], $2::smallint[], $3::text[], $4::text[], $5::bigint[], "
    "$6::uuid[], $7::integer[], $8::boolean[], $9::text[], $10::text[], $11::timestamptz, "
    "$12::integer)"
)


async def submit(
    conn: asyncpg.Connection,
    transfers: list[Transfer],
    *,
    now: dt.datetime | None = None,
    hold_expiry_seconds_max: int = HOLD_EXPIRY_SECONDS_MAX,
) -> list[Result]:
    """Apply a batch in one round trip; results in input order.

    Runs in the caller's transaction when there is one (then a `ConcurrentSubmission` leaves that
    transaction aborted), otherwise in its own. ``now`` replaces the database clock (tests)."""
    if not transfers:
        return []
    args = batch_args(transfers, now=now, hold_expiry_seconds_max=hold_expiry_seconds_max)
    for attempt in (1, 2):
        try:
            codes = await conn.fetchval(_SUBMIT, *args)
            break
        except asyncpg.UniqueViolationError as e:
            # Another connection committed one of these ids (or resolved one of these holds)
            # between our reads and our insert. On its own transaction, a retry sees it.
            if attempt == 2 or conn.is_in_transaction():
                raise ConcurrentSubmission(str(e)) from e
    return [Result(t.id, TransferResult(c)) for t, c in zip(transfers, codes, strict=False)]
