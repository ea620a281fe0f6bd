"""The ledger's lock order, for a transaction that submits more than one batch.

`submit` locks what one batch touches in a fixed order: the open holds it resolves by id, then
the balance rows by (account, shard). Two batches in two transactions can therefore never wait
for each other in a cycle, but one transaction that submits twice can: its second batch may need
a row that sorts before one its first batch still holds (a hold made by another connection lives
on that connection's shard of revenue and tax). `lock` takes every row the transaction's batches
may touch, up front and in the same order, so each later batch only meets rows it already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

__all__ = ["lock"]


async def lock(
    conn: asyncpg.Connection, *, holds: Iterable[uuid.UUID], accounts: Iterable[str]
) -> int:
    """Lock, in the ledger's order, the open `holds` the transaction may resolve (with their
    balance rows) and this connection's rows of `accounts` its new transfers may name. Call it
    in a transaction, before its first `submit`; returns how many balance rows it locked."""
    if not conn.is_in_transaction():
        raise RuntimeError("ledger.lock outside a transaction locks nothing: open one first")
    locked: int = await conn.fetchval(
        "SELECT ledger_lock($1::uuid[], $2::text[])",
        sorted(set(holds)),
        sorted(set(accounts)),
    )
    return locked
