"""Ends by group commit (call_end_batch) on the real core and PostgreSQL: a batched End writes the
call row, the CDR and the ledger effect the careful path writes, and every case the batch cannot
carry out (a stale row, a failed batch, a resend, a racing Continue) falls back to the careful
path and still gives one CDR and the price of the measured talk."""
import asyncio
import contextlib
import dataclasses
import json
import uuid

import pytest

from switch.control import group_commit
from switch.wire import protocol as wire

from rig import another_core, close_rig, flat_tariff, make_rig
from test_core_charging import PER_SECOND, call_to, cdr_of, spent, with_tax

ATTORNEY = "+13105550199"     # privileged: free and never recorded


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=flat_tariff(increment=1))
    r.ends = []                # (disposition, billed) of each call end the core observed
    r.careful = []             # call ids settled by the careful path
    r.failed = []              # batches that failed

    def observe(what, outcome, **kw):
        if what == "call_end":
            r.ends.append((outcome, kw["billed_seconds"]))
        elif (what, outcome) == ("charging", "group_commit_failed"):
            r.failed.append(outcome)
    r.core.observer = observe
    settle = r.core._settle

    async def counted(cid, *a, **kw):
        r.careful.append(str(cid))
        return await settle(cid, *a, **kw)
    r.core._settle = counted
    yield r
    await r.verify()
    await close_rig(r)


class _GatedPool:
    """A batch's pool that hands out a connection only once `gate` is set: the batch has left
    the queue (it runs) and waits there."""

    def __init__(self, pool) -> None:
        self.pool, self.gate, self.waiting = pool, asyncio.Event(), 0

    @contextlib.asynccontextmanager
    async def acquire(self):
        self.waiting += 1
        await self.gate.wait()
        async with self.pool.acquire() as conn:
            yield conn


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def end(rig, cid, talk, **kw):
    return await rig.call(wire.End, call_id=cid, talk_seconds=talk,
                          disposition=kw.pop("disposition", "completed"), **kw)


async def count_cdrs(rig, cid) -> int:
    async with rig.pool.acquire() as c:
        return await c.fetchval("SELECT count(*) FROM cdr WHERE call_id = $1::uuid", cid)


async def ledger_effect(rig, cid) -> list[tuple]:
    """The call's transfers as the ledger holds them, without their ids (which name the call)."""
    async with rig.pool.acquire() as c:
        rows = await c.fetch(
            """SELECT t.kind, t.debit_account_id, t.credit_account_id, t.amount, t.expires_in,
                      t.code, h.kind AS resolves
               FROM call CROSS JOIN LATERAL unnest(call.transfer_ids) WITH ORDINALITY x(id, n)
               JOIN ledger_transfer t ON t.id = x.id
               LEFT JOIN ledger_transfer h ON h.id = t.pending_id
               WHERE call.id = $1::uuid ORDER BY x.n""", cid)
        pending = await c.fetchval(
            """SELECT count(*) FROM ledger_hold_open o JOIN call ON o.id = ANY (call.transfer_ids)
               WHERE call.id = $1::uuid""", cid)
    return [tuple(r) for r in rows] + [("open holds", pending)]


async def call_row(rig, cid) -> dict:
    async with rig.pool.acquire() as c:
        row = dict(await c.fetchrow("SELECT * FROM call WHERE id = $1::uuid", cid))
    row["transfer_ids"] = len(row["transfer_ids"])
    return {k: v for k, v in row.items() if k not in ("id", "hold_call", "hold_tax")} | {
        "open hold": (row["hold_call"], row["hold_tax"]) != (None, None)}


async def cdr_fields(rig, cid) -> dict:
    row = dict(await cdr_of(rig, cid))
    async with rig.pool.acquire() as c:
        ids = await c.fetchval("SELECT transfer_ids FROM call WHERE id = $1::uuid", cid)
    assert row.pop("transfer_ids") == ids          # every transfer of the call, in order
    row["charges"] = json.loads(row["charges"])
    del row["call_id"]
    return row


# Hang-up offsets: the Continues sent before the End (their talk seconds) and the End's talk.
OFFSETS = [
    ((), 0), ((), 1), ((), 30), ((), 54),           # inside period 1, before its Continue
    ((55,), 55), ((55,), 57), ((55,), 60),          # inside the Continue lead
    ((55,), 61), ((55,), 90),                       # inside period 2
    ((55, 115), 118),                               # inside period 2's Continue lead
]


@pytest.mark.parametrize("number", ["mom", "attorney"])
@pytest.mark.parametrize("continues, talk", OFFSETS)
async def test_a_batched_end_writes_what_the_careful_path_writes(rig, continues, talk, number):
    """Guard: call_end_batch writes the careful path's row, CDR (field by field: itemized
    charges, billed seconds, tariff version, the recording only of a recorded call, worker,
    trunk, SIP code, shortfall) and ledger effect."""
    to = ATTORNEY if number == "attorney" else "+19515550101"
    batched, careful = await call_to(rig, to), await call_to(rig, to)
    for cid in (batched, careful):
        await rig.call(wire.Accept, call_id=cid)
    at = 0
    for k, t in enumerate(continues, 1):
        rig.clock.advance(t - at)
        at = t
        for cid in (batched, careful):
            await rig.call(wire.Continue, call_id=cid, period=k, talk_seconds=t)
    rig.clock.advance(talk - at)
    facts = dict(recording="rec/x.wav", trunk="sip:+19515550101@127.0.0.1:5090", sip_code=200)
    e1 = await end(rig, batched, talk, **facts)
    assert rig.careful == []                        # carried out by group commit
    group, rig.core.group_ends = rig.core.group_ends, None
    e2 = await end(rig, careful, talk, **facts)
    rig.core.group_ends = group
    assert rig.careful == [careful]
    assert {k: v for k, v in e1.items() if k != "cdr_id"} == \
        {k: v for k, v in e2.items() if k != "cdr_id"}
    assert await cdr_fields(rig, batched) == await cdr_fields(rig, careful)
    assert await call_row(rig, batched) == await call_row(rig, careful)
    assert await ledger_effect(rig, batched) == await ledger_effect(rig, careful)
    cdr = await cdr_of(rig, batched)
    if number == "attorney":
        assert (cdr["total_micros"], cdr["recording"]) == (0, None)
    else:
        assert cdr["total_micros"] == with_tax(talk * PER_SECOND)
        assert (cdr["recording"], cdr["talk_seconds"]) == ("rec/x.wav", talk)
        assert await spent(rig) == (2 * with_tax(talk * PER_SECOND), 0)
    assert [e[0] for e in rig.ends] == ["completed"] * 2       # observed once each


async def test_an_end_decided_from_a_stale_row_falls_back_and_gives_one_cdr(rig, pg_dsn):
    """Guard: an End whose batch did not apply is answered by the careful path, never from its
    step. Another core's Continue (talk 55) moves the call; this core's End, decided from its
    cached row, posts the first hold as that Continue did (the ledger refuses it: the chain's
    flags differ, and the row check finds the call moved on)."""
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    assert uuid.UUID(cid) in rig.core._rows
    async with another_core(pg_dsn, rig.clock) as other:
        rig.clock.advance(55)
        assert (await other.continue_(cid, 1, 55)).grant_until == 120
        e = await end(rig, cid, 55)
    assert rig.careful == [cid]                     # the batch found the call moved on
    assert e["charged_micros"] == with_tax(55 * PER_SECOND)
    assert await spent(rig) == (with_tax(55 * PER_SECOND), 0)
    assert await count_cdrs(rig, cid) == 1 and len(rig.ends) == 1


async def test_a_call_another_core_ended_leaves_its_batch_to_end_the_others(rig, pg_dsn):
    """Guard: call_end_batch's row check. Another core ended X with the same talk, so X's chain
    in this core's batch is all `exists` to the ledger: only the row check keeps the batch from
    ending X again (its second CDR would fail the whole batch, Y's End with it)."""
    x, y = await call_to(rig), await call_to(rig)
    for cid in (x, y):
        await rig.call(wire.Accept, call_id=cid)
    rig.core.group_ends.window_seconds = 0.2        # both Ends in one batch
    async with another_core(pg_dsn, rig.clock) as other:
        rig.clock.advance(40)
        before = await other.end(x, 40, "completed")
        ex, ey = await asyncio.wait_for(asyncio.gather(end(rig, x, 40), end(rig, y, 40)), 20)
    assert rig.careful == [x]                       # X answered from its CDR; Y batched
    assert ex["charged_micros"] == ey["charged_micros"] == before.charged_micros
    assert await spent(rig) == (2 * with_tax(40 * PER_SECOND), 0)
    for cid in (x, y):
        assert await count_cdrs(rig, cid) == 1
    assert len(rig.ends) == 1                       # Y's (X's end was the other core's)


async def test_a_failed_end_batch_answers_every_end_and_the_careful_path_settles_them(rig):
    """Guard: a batch that fails (here PostgreSQL raises after call_end_batch did its work, so
    all of it rolls back) answers every waiting End None, and each is settled carefully."""
    ids = [await call_to(rig) for _ in range(4)]
    for cid in ids:
        await rig.call(wire.Accept, call_id=cid)
    sql = group_commit.ENDS.sql.replace("SELECT call_end_batch(",
                                        "SELECT cardinality(call_end_batch(", 1) + ") / 0"
    rig.core.group_ends.statement = dataclasses.replace(group_commit.ENDS, sql=sql)
    rig.clock.advance(30)
    answers = await asyncio.wait_for(asyncio.gather(
        *(end(rig, cid, 20 + k) for k, cid in enumerate(ids))), 20)
    assert [a["charged_micros"] for a in answers] == \
        [with_tax((20 + k) * PER_SECOND) for k in range(4)]
    assert sorted(rig.careful) == sorted(ids) and not rig.core.group_ends._pending
    for cid in ids:
        assert await count_cdrs(rig, cid) == 1
    assert await spent(rig) == (with_tax(86 * PER_SECOND), 0)
    assert len(rig.ends) == 4


async def test_an_end_resent_while_it_waits_for_its_batch_gives_one_cdr_and_one_answer(rig):
    """Guard: a resend of a call already queued is not queued again (it would strand the first
    waiter); it goes the careful path, and the original then answers from the one CDR."""
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(40)
    first, again = await asyncio.wait_for(asyncio.gather(end(rig, cid, 40), end(rig, cid, 40)), 20)
    assert first == again and first["charged_micros"] == with_tax(40 * PER_SECOND)
    assert await count_cdrs(rig, cid) == 1 and len(rig.ends) == 1
    assert await spent(rig) == (with_tax(40 * PER_SECOND), 0)


async def test_an_end_resent_while_its_batch_runs_gives_one_cdr_and_one_answer(rig):
    """Guard: call_end_batch's check of the row it locked. The resend's own batch runs after
    the first (a call's lane runs one batch at a time): it finds the call ended and leaves it
    alone (ending it again would fail the batch on the CDR's key), and the careful path answers
    from the one CDR."""
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(40)
    gated = rig.core.group_ends.pool = _GatedPool(rig.pool)
    first = asyncio.ensure_future(end(rig, cid, 40))
    await until(lambda: gated.waiting == 1)        # its batch has left the queue
    again = asyncio.ensure_future(end(rig, cid, 40))
    await until(lambda: uuid.UUID(cid) in rig.core.group_ends._pending)   # behind it
    gated.gate.set()
    a, b = await asyncio.wait_for(asyncio.gather(first, again), 20)
    assert a == b and a["charged_micros"] == with_tax(40 * PER_SECOND)
    assert await count_cdrs(rig, cid) == 1 and len(rig.ends) == 1 and rig.failed == []
    assert await spent(rig) == (with_tax(40 * PER_SECOND), 0)


@pytest.mark.parametrize("talk", [55, 57])
@pytest.mark.parametrize("first", ["continue", "end"])
async def test_an_end_racing_a_continue_gives_one_cdr_and_the_price_of_the_measured_talk(
        rig, first, talk):
    """Guard: an End whose batch did not apply is answered by the careful path, never from its
    step. The End's step is decided from period 1's row; the Continue (talk 55) commits while
    the End's batch waits (the End then settles carefully from the row as it is), or the End
    commits while the Continue's batch waits (the Continue then hears the call has ended)."""
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    later = rig.core.group_ends if first == "continue" else rig.core.group
    gated = later.pool = _GatedPool(rig.pool)
    if first == "continue":
        ending = asyncio.ensure_future(end(rig, cid, talk))
        await until(lambda: gated.waiting == 1)
        g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
        assert g["grant_until"] == 120
        gated.gate.set()
        e = await asyncio.wait_for(ending, 20)
        assert rig.careful == [cid]
    else:
        going = asyncio.ensure_future(
            rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55))
        await until(lambda: gated.waiting == 1)
        e = await end(rig, cid, talk)
        gated.gate.set()
        with pytest.raises(wire.CallAlreadyEnded):
            await asyncio.wait_for(going, 20)
        assert rig.careful == []
    assert e["charged_micros"] == with_tax(talk * PER_SECOND)
    assert await spent(rig) == (with_tax(talk * PER_SECOND), 0)
    cdr = await cdr_of(rig, cid)
    assert (cdr["talk_seconds"], cdr["total_micros"]) == (talk, with_tax(talk * PER_SECOND))
    assert await count_cdrs(rig, cid) == 1 and len(rig.ends) == 1
