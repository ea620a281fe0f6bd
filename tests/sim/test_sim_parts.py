"""The simulator's own parts against a real PostgreSQL: the database clock it injects and the
core's database link under an injected crash or outage."""
from __future__ import annotations

import uuid
import asyncpg
import pytest

import ledger
from switch.provisioning.directory import ensure_house_accounts

from .clock import CORE_SEARCH_PATH, SimClock
from .storage import CoreCrashed, DatabaseOut, FaultyPool


async def _core_pool(dsn):
    return await asyncpg.create_pool(dsn, min_size=1, max_size=2,
                                     server_settings={"search_path": CORE_SEARCH_PATH})


async def _hold(conn, account="acct"):
    await ledger.create_accounts(conn, [ledger.Account(account, "prepaid_phone", "USD",
                                                       no_overdraft=False)])
    [r] = await ledger.submit(conn, [ledger.Transfer(
        uuid.uuid4(), ledger.TransferKind.HOLD, debit=account, credit="revenue",
        amount=1_000, expires_in=90)])
    assert r.succeeded


async def test_the_ledgers_hold_expiry_runs_on_the_simulated_clock(pg_dsn, conn):
    clock = SimClock()
    await clock.install(conn)
    await ensure_house_accounts(conn)
    pool = await _core_pool(pg_dsn)
    try:
        async with pool.acquire() as core_conn:
            assert await core_conn.fetchval("SELECT now()") == clock()
            await _hold(core_conn)
            clock.advance_to(89_000)
            await clock.sync(conn)
            assert await ledger.sweep_expired(core_conn) == 0
            clock.advance_to(90_000)
            await clock.sync(conn)
            assert await ledger.sweep_expired(core_conn) == 1
        # A connection without the simulated search path keeps the server's clock.
        assert await conn.fetchval("SELECT now()") != clock()
    finally:
        await pool.close()


async def test_a_crash_kills_the_nth_statement_and_rolls_back_the_open_transaction(pg_dsn, conn):
    await conn.execute("CREATE TABLE marks (n int)")
    pool = FaultyPool(await _core_pool(pg_dsn))
    try:
        pool.arm_crash(2)
        with pytest.raises(CoreCrashed):
            async with pool.acquire() as c, c.transaction():
                await c.execute("INSERT INTO marks VALUES (1)")
                await c.execute("INSERT INTO marks VALUES (2)")
                await c.execute("INSERT INTO marks VALUES (3)")     # the third dies
        assert pool.crashed and pool.died.is_set()
        assert await conn.fetchval("SELECT count(*) FROM marks") == 0
        with pytest.raises(CoreCrashed):
            async with pool.acquire():
                pass                                               # dead stays dead
    finally:
        pool.terminate()


async def test_an_outage_refuses_connections_as_a_missing_database_does(pg_dsn):
    pool = FaultyPool(await _core_pool(pg_dsn))
    try:
        pool.out = True
        with pytest.raises(OSError):
            async with pool.acquire():
                pass
        with pytest.raises(DatabaseOut):
            async with pool.acquire():
                pass
        pool.out = False
        async with pool.acquire() as c:
            assert await c.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
