"""The charging loop's lock order on the real core and PostgreSQL: a careful step that submits
more than one ledger batch never waits for a ledger row while holding one that sorts after it,
so it cannot close a lock cycle with group commit, the sweeper or another step (each of which
locks open holds by id, then balance rows by account and shard)."""
import asyncio

import asyncpg
import pytest

from switch.control.core import Core
from switch.settings import CoreSettings
from switch.control.tariffs import Pricing

from rig import close_rig, flat_tariff, make_rig
from test_core_charging import PER_SECOND, call_to, spent, with_tax

WAIT_SECONDS_MAX = 10.0


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=flat_tariff(increment=1))
    yield r
    await r.verify()
    await close_rig(r)


async def _one_connection_core(rig, pg_dsn, tariff) -> tuple[Core, int]:
    """A core whose every step runs on one backend (so on one shard of revenue and tax)."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)

    async def load_tariff(conn, facility_id):
        return tariff
    core = Core(pool, Pricing(load_tariff), CoreSettings(group_commit_window_seconds=0),
                clock=rig.clock)
    async with pool.acquire() as c:
        return core, await c.fetchval("SELECT pg_backend_pid()")


async def _waiting_for_a_lock(conn, pid: int) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
    while await conn.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                              pid) != "Lock":
        assert asyncio.get_running_loop().time() < deadline, "the End never waited for a lock"
        await asyncio.sleep(0.01)


async def test_an_end_that_collects_after_an_expired_hold_never_closes_a_lock_cycle(rig, pg_dsn):
    """The End of a call whose hold expired submits three batches (the refused post, the
    release, the collection). The hold's rows are the shards of the connection that made it,
    the collection's those of the connection settling; before the lock order, the End held
    revenue shard `made` while it waited for shard `settling` < `made`, and a batch holding
    `settling` and asking for `made` (as group commit does, in order) closed a cycle."""
    tariff = flat_tariff(increment=1)
    async with rig.pool.acquire() as c:
        shards = await c.fetchval("SELECT shards FROM ledger_account WHERE id = 'revenue'")
    assert shards > 1, "the house accounts must be sharded for this test to mean anything"
    cores = []
    try:
        while len({pid % shards for _, pid in cores}) < 2:     # two backends on two shards
            cores.append(await _one_connection_core(rig, pg_dsn, tariff))
        cores.sort(key=lambda cp: cp[1] % shards)
        (settler, settling_pid), (accepter, making_pid) = cores[0], cores[-1]
        settling, made = settling_pid % shards, making_pid % shards
        assert settling < made

        cid = await call_to(rig)
        await accepter.accept(cid)            # the hold lives on shard `made`
        rig.clock.advance(40 + 300)           # an outage: the End comes after the hold expired
        retried = []
        settler.observer = lambda what, outcome, **kw: (
            retried.append(outcome) if outcome == "transaction_retried" else None)

        batch = await asyncpg.connect(pg_dsn)          # stands for a batch of group commit
        try:
            tx = batch.transaction()
            await tx.start()
            await batch.execute("SELECT 1 FROM ledger_balance WHERE account_id = 'revenue' "
                                "AND shard = $1 FOR UPDATE", settling)
            end = asyncio.ensure_future(settler.end(cid, 40, "completed"))
            await _waiting_for_a_lock(batch, settling_pid)
            # The batch goes on, in the ledger's order, to the next shard it needs.
            await asyncio.wait_for(batch.execute(
                "SELECT 1 FROM ledger_balance WHERE account_id = 'revenue' AND shard = $1 "
                "FOR UPDATE", made), WAIT_SECONDS_MAX)
            await tx.commit()
        finally:
            await batch.close()
        answer = await asyncio.wait_for(end, WAIT_SECONDS_MAX)
        assert retried == []                  # nobody was aborted to break a cycle
        assert answer.charged_micros == with_tax(40 * PER_SECOND)
        assert await spent(rig) == (with_tax(40 * PER_SECOND), 0)
    finally:
        for core, _ in cores:
            await core.pool.close()
