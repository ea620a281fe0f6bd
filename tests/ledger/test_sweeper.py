"""Expired holds are released by the sweeper; hot accounts do not serialize concurrent batches."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg

from ledger import (Account, AccountKind, Transfer, TransferKind as K, TransferResult as R, balance,
                    create_accounts, expiry_id, submit, sweep_expired, verify)

T0 = dt.datetime(2031, 6, 1, tzinfo=dt.timezone.utc)


async def _family(conn) -> Transfer:
    await create_accounts(conn, [Account("fund", AccountKind.FUNDING_CLEARING),
                                 Account("fam", AccountKind.PREPAID_PHONE),
                                 Account("rev", AccountKind.REVENUE)])
    hold = Transfer(uuid.uuid4(), K.HOLD, "fam", "rev", 226_800, expires_in=90)
    await submit(conn, [Transfer(uuid.uuid4(), K.SINGLE, "fund", "fam", 1_000_000), hold], now=T0)
    return hold


async def test_a_call_that_crashed_is_never_charged_for_its_unconfirmed_minute(conn):
    hold = await _family(conn)
    assert (await balance(conn, "fam")).available == 1_000_000 - 226_800
    assert await sweep_expired(conn, T0 + dt.timedelta(seconds=89)) == 0   # not yet due
    assert await sweep_expired(conn, T0 + dt.timedelta(seconds=90)) == 1
    fam = await balance(conn, "fam")
    assert (fam.posted, fam.pending, fam.available) == (1_000_000, 0, 1_000_000)
    kind = await conn.fetchval("SELECT kind FROM ledger_transfer WHERE id = $1", expiry_id(hold.id))
    assert kind == K.EXPIRE
    # The core comes back and tries to post the minute: too late, nothing is charged.
    late = Transfer(uuid.uuid4(), K.POST, hold=hold.id)
    assert [r.result for r in await submit(conn, [late], now=T0 + dt.timedelta(seconds=95))] \
        == [R.HOLD_EXPIRED]
    assert await sweep_expired(conn, T0 + dt.timedelta(hours=1)) == 0
    assert (await balance(conn, "fam")).posted == 1_000_000
    assert (await verify(conn)).ok


async def test_two_sweepers_at_once_release_a_hold_once(conn, pg_dsn):
    await _family(conn)
    a, b = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        later = T0 + dt.timedelta(minutes=5)
        released = await asyncio.gather(sweep_expired(a, later), sweep_expired(b, later))
    finally:
        await a.close()
        await b.close()
    assert sorted(released) == [0, 1]
    assert (await balance(conn, "fam")).available == 1_000_000
    assert (await verify(conn)).ok


async def test_concurrent_batches_credit_revenue_without_waiting_for_each_other(conn, pg_dsn):
    await create_accounts(conn, [Account("f1", AccountKind.FUNDING_CLEARING),
                                 Account("f2", AccountKind.FUNDING_CLEARING),
                                 Account("rev", AccountKind.REVENUE)], default_shards=16)
    # Two connections that land on different shards of revenue.
    conns = [await asyncpg.connect(pg_dsn)]
    while True:
        c = await asyncpg.connect(pg_dsn)
        if c.get_server_pid() % 16 != conns[0].get_server_pid() % 16:
            conns.append(c)
            break
        await c.close()
    a, b = conns
    try:
        tx = a.transaction()
        await tx.start()
        (ra,) = await submit(a, [Transfer(uuid.uuid4(), K.SINGLE, "f1", "rev", 5)])
        # `a` still holds its rows; `b` must not need them.
        (rb,) = await asyncio.wait_for(submit(b, [Transfer(uuid.uuid4(), K.SINGLE, "f2", "rev", 7)]),
                                       timeout=5)
        assert (ra.result, rb.result) == (R.OK, R.OK)
        await tx.commit()
    finally:
        await a.close()
        await b.close()
    assert (await balance(conn, "rev")).posted == 12
    assert await conn.fetchval("SELECT count(*) FROM ledger_balance WHERE account_id = 'rev' "
                               "AND credits_posted > 0") == 2
    assert (await verify(conn)).ok
