"""Balances: an account's four counters summed over its shards, and what they mean."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ledger.errors import AccountNotFound

__all__ = ["Balance", "balance", "balances"]


@dataclass(frozen=True)
class Balance:
    """Counters in micro-units, and the balances read from them (credits minus debits).

    ``posted``: what the account holds. ``pending``: the net of its open holds (negative when
    money is held against it). ``available``: what it may still spend, posted minus held debits."""

    account_id: str
    kind: str
    currency: str
    no_overdraft: bool
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def pending(self) -> int:
        return self.credits_pending - self.debits_pending

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.account_id,
            "kind": self.kind,
            "currency": self.currency,
            "no_overdraft": self.no_overdraft,
            "posted": self.posted,
            "pending": self.pending,
            "available": self.available,
            "debits_pending": self.debits_pending,
            "debits_posted": self.debits_posted,
            "credits_pending": self.credits_pending,
            "credits_posted": self.credits_posted,
        }


_SELECT = (
    "SELECT id, kind, currency, no_overdraft, debits_pending, debits_posted, "
    "credits_pending, credits_posted FROM ledger_account_balance"
)


def _balance(row: asyncpg.Record) -> Balance:
    return Balance(
        row["id"],
        row["kind"],
        row["currency"],
        row["no_overdraft"],
        int(row["debits_pending"]),
        int(row["debits_posted"]),
        int(row["credits_pending"]),
        int(row["credits_posted"]),
    )


async def balance(conn: asyncpg.Connection, account_id: str) -> Balance:
    row = await conn.fetchrow(_SELECT + " WHERE id = $1", account_id)
    if row is None:
        raise AccountNotFound(account_id)
    return _balance(row)


async def balances(conn: asyncpg.Connection, *, kind: str | None = None) -> list[Balance]:
    """Every account (or every account of one kind), by id."""
    rows = await conn.fetch(_SELECT + " WHERE $1::text IS NULL OR kind = $1 ORDER BY id", kind)
    return [_balance(r) for r in rows]
