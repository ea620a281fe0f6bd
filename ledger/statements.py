"""Statements: an account's transfers in order, each with its effect and the running balance."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from ledger.balances import Balance, balance
from ledger.transfers import TransferKind

__all__ = ["StatementLine", "Statement", "statement", "STATEMENT_LINES_MAX"]

STATEMENT_LINES_MAX = 10_000


@dataclass(frozen=True)
class StatementLine:
    """One transfer as the account sees it. Changes are signed: credits add, debits subtract.

    ``posted_change`` moves the posted balance (single, post); ``pending_change`` moves the net
    pending balance (a hold, and its release by post, void or expire). ``balance`` and
    ``available`` are the running posted and available balances after this line."""

    seq: int
    at: dt.datetime
    transfer_id: uuid.UUID
    kind: TransferKind
    code: str
    ref: str
    counterparty: str
    hold_id: uuid.UUID | None
    posted_change: int
    pending_change: int
    balance: int
    available: int

    def as_dict(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "id": str(self.transfer_id),
            "kind": self.kind.name.lower(),
            "code": self.code,
            "ref": self.ref,
            "counterparty": self.counterparty,
            "hold": None if self.hold_id is None else str(self.hold_id),
            "posted_change": self.posted_change,
            "pending_change": self.pending_change,
            "balance": self.balance,
            "available": self.available,
        }


@dataclass(frozen=True)
class Statement:
    account: Balance
    lines: list[StatementLine]  # the latest ones, oldest first
    earlier: int  # how many older lines were left out


# Per line: the change to posted, to net pending, and to held debits (which lower available).
_LINES = """
WITH lines AS (
    SELECT t.seq, t.created_at, t.id, t.kind, t.code, t.ref, t.pending_id,
           CASE WHEN t.debit_account_id = $1 THEN t.credit_account_id ELSE t.debit_account_id END
               AS counterparty,
           CASE WHEN t.debit_account_id = $1 THEN -1 ELSE 1 END AS side,
           CASE WHEN t.kind IN (1, 3) THEN t.amount ELSE 0 END AS posted,
           CASE t.kind WHEN 2 THEN t.amount WHEN 1 THEN 0 ELSE -h.amount END AS pending
    FROM ledger_transfer t
    LEFT JOIN ledger_transfer h ON h.id = t.pending_id
    WHERE t.debit_account_id = $1 OR t.credit_account_id = $1
), running AS (
    SELECT *, side * posted AS posted_change, side * pending AS pending_change,
           sum(side * posted) OVER w AS balance,
           sum(CASE WHEN side < 0 THEN pending ELSE 0 END) OVER w AS held,
           count(*) OVER () AS total
    FROM lines
    WINDOW w AS (ORDER BY seq)
)
SELECT * FROM running ORDER BY seq DESC LIMIT $2
"""


async def statement(conn: asyncpg.Connection, account_id: str, *, limit: int = 100) -> Statement:
    """The account's latest ``limit`` lines, oldest first, with running balances from the start."""
    limit = max(1, min(limit, STATEMENT_LINES_MAX))
    if conn.is_in_transaction():
        account = await balance(conn, account_id)
        rows = await conn.fetch(_LINES, account_id, limit)
    else:
        # One snapshot, so the lines add up to the balance shown with them.
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            account = await balance(conn, account_id)
            rows = await conn.fetch(_LINES, account_id, limit)
    lines = [
        StatementLine(
            r["seq"],
            r["created_at"],
            r["id"],
            TransferKind(r["kind"]),
            r["code"],
            r["ref"],
            r["counterparty"],
            r["pending_id"],
            int(r["posted_change"]),
            int(r["pending_change"]),
            int(r["balance"]),
            int(r["balance"]) - int(r["held"]),
        )
        for r in reversed(rows)
    ]
    total = rows[0]["total"] if rows else 0
    return Statement(account, lines, total - len(lines))
