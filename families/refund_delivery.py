"""Refund delivery: each refund line owed (in refunds payable) is sent to the provider until it
takes it, with back-off, always under the line's own id as the idempotency key.

A line is written `pending` in the transaction that moves its money (families.refunds); the
first attempt follows the commit at once. A provider failure leaves it `pending` with the next
attempt `backoff(attempts)` later (the node's family sweep sends what is due); after
`ATTEMPTS_MAX` failures it is `held` for an operator, who sends it again with
`ics family refunds retry`. Sending twice is safe: the provider takes one refund per key (R1).
The money never moves again here: it left the prepaid account when the line was written.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from families import audit
from families.providers import PaymentProvider, ProviderError

__all__ = ["RefundDelivery", "DeliveryOutcome", "backoff", "deliver", "undelivered",
           "release_held", "ATTEMPTS_MAX", "BACKOFF_FIRST", "BACKOFF_MAX", "BATCH_MAX"]

log = logging.getLogger("ics.family")

ATTEMPTS_MAX = 12                                # failures before a line waits for an operator
BACKOFF_FIRST = dt.timedelta(seconds=30)         # after the first failure
BACKOFF_MAX = dt.timedelta(hours=6)              # the longest wait between two attempts
BATCH_MAX = 100                                  # lines one sweep sends, oldest due first

DeliveryOutcome = Literal["sent", "retry", "held"]


@dataclass(frozen=True)
class RefundDelivery:
    id: uuid.UUID
    payment_id: uuid.UUID
    provider_ref: str
    amount: int
    state: Literal["pending", "sent", "held"]
    attempts: int
    next_attempt_at: dt.datetime | None
    last_error: str
    created_at: dt.datetime
    sent_at: dt.datetime | None


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failure: doubling from BACKOFF_FIRST, at most BACKOFF_MAX."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    # Doubling stops once past the cap (no huge powers of two).
    wait: dt.timedelta = BACKOFF_FIRST * (2 ** min(attempts - 1, 20))
    return wait if wait < BACKOFF_MAX else BACKOFF_MAX


def _row(r: asyncpg.Record) -> RefundDelivery:
    return RefundDelivery(**{k: r[k] for k in RefundDelivery.__dataclass_fields__})


_COLUMNS = ("id, payment_id, provider_ref, amount, state, attempts, next_attempt_at, last_error, "
            "created_at, sent_at")


async def undelivered(conn: asyncpg.Connection, *, limit: int = 1000) -> list[RefundDelivery]:
    """Refund lines the provider has not taken yet (pending or held), oldest first."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM family_refund WHERE state <> 'sent' "
                            "ORDER BY created_at, id LIMIT $1", limit)
    return [_row(r) for r in rows]


async def release_held(conn: asyncpg.Connection, ids: list[uuid.UUID] | None, *, now: dt.datetime,
                       actor: str) -> int:
    """Make held lines (all, or those named) due now: an operator's retry. Returns how many."""
    async with conn.transaction():
        rows = await conn.fetch(
            "UPDATE family_refund SET state = 'pending', next_attempt_at = $2 WHERE state <> "
            "'sent' AND ($1::uuid[] IS NULL OR id = ANY($1)) RETURNING id", ids, now)
        for r in rows:
            await audit.record(conn, at=now, actor=actor, action="refund.retry",
                               target=f"refund:{r['id']}")
    return len(rows)


async def _attempt(pool: asyncpg.Pool, provider: PaymentProvider, line: RefundDelivery, *,
                   now: dt.datetime) -> DeliveryOutcome:
    try:
        await provider.refund(ref=line.provider_ref, amount=line.amount, idem_key=str(line.id))
    except ProviderError as e:
        attempts = line.attempts + 1
        held = attempts >= ATTEMPTS_MAX
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE family_refund SET attempts = $2, last_error = $3, state = $4, "
                "next_attempt_at = $5 WHERE id = $1 AND state = 'pending'", line.id, attempts,
                str(e)[:500], "held" if held else "pending",
                None if held else now + backoff(attempts))
        log.warning("refund %s of %s to %s not taken by the provider (attempt %d%s): %s",
                    line.id, line.amount, line.provider_ref, attempts,
                    ", held for an operator" if held else "", e)
        return "held" if held else "retry"
    async with pool.acquire() as conn:
        await conn.execute("UPDATE family_refund SET attempts = attempts + 1, state = 'sent', "
                           "sent_at = $2, next_attempt_at = NULL, last_error = '' WHERE id = $1",
                           line.id, now)
    return "sent"


async def deliver(pool: asyncpg.Pool, provider: PaymentProvider, *, now: dt.datetime,
                  ids: list[uuid.UUID] | None = None,
                  observe: Callable[[str, str], None] | None = None
                  ) -> dict[uuid.UUID, DeliveryOutcome]:
    """Send the pending lines that are due (or the pending lines named by `ids`, due or not) to
    the provider; each answer is recorded on its line."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM family_refund WHERE state = 'pending' AND "
            "($1::uuid[] IS NOT NULL AND id = ANY($1) OR $1::uuid[] IS NULL AND "
            "next_attempt_at <= $2) ORDER BY next_attempt_at, id LIMIT $3",
            ids, now, BATCH_MAX)
    out: dict[uuid.UUID, DeliveryOutcome] = {}
    for r in rows:
        line = _row(r)
        out[line.id] = await _attempt(pool, provider, line, now=now)
        if observe is not None:
            observe("refund_delivery", out[line.id])
    return out
