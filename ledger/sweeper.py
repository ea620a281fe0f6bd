"""The sweeper: releases holds past their expiry, so an unconfirmed period is never charged."""

from __future__ import annotations

import datetime as dt

import asyncpg

__all__ = ["sweep_expired", "SWEEP_BATCH_MAX"]

SWEEP_BATCH_MAX = 1_000


async def sweep_expired(
    conn: asyncpg.Connection, now: dt.datetime | None = None, *, limit: int = SWEEP_BATCH_MAX
) -> int:
    """Expire up to ``limit`` holds whose expiry is at or before ``now`` (default: the database's
    clock); returns how many were released. Each becomes an ``expire`` transfer whose id derives
    from the hold (`ledger.transfers.expiry_id`), so concurrent sweepers never release twice.
    Call it until it returns less than ``limit`` to drain a backlog."""
    released: int = await conn.fetchval(
        "SELECT ledger_sweep($1::timestamptz, $2::integer)", now, limit
    )
    return released
