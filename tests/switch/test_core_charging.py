"""The charging loop on the real core and PostgreSQL: each failure reproduced in issue 9 (a hold
that expires before its period is settled, a tariff version taking effect mid-call, a hang-up
inside the Continue lead, a shortened last period, half-committed fast-path steps, deposit
references, house-account shards, hold expiry). Every test ends with the ledger's verify."""
import dataclasses
import json
import uuid
from datetime import timedelta

import pytest

import ledger
from switch.wire import protocol as wire
from switch.provisioning.directory import (Invalid, add_phone_account, ensure_house_accounts,
                              fund_phone_account, phone_account_id)

from rig import (RATE, TAX_PPM, WEDNESDAY_10AM, WORKER_ID, another_core, close_rig, flat_tariff,
                 make_rig)

MOM = "+19515550101"          # approved, prepaid account with 20.00
FRIEND = "+12125550123"       # approved, no prepaid account yet
PER_SECOND = RATE // 60       # the flat tariff billed by the second: 1,000 µ a second


def with_tax(call_micros):
    return call_micros + call_micros * TAX_PPM // 1_000_000


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=flat_tariff(increment=1))
    yield r
    await r.verify()
    await close_rig(r)


async def call_to(rig, number=MOM):
    a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=number)
    assert a["allow"], a
    return a["call_id"]


async def cdr_of(rig, call_id):
    async with rig.pool.acquire() as c:
        return await c.fetchrow("SELECT * FROM cdr WHERE call_id = $1::uuid", call_id)


async def spent(rig, account=None):
    bal = await rig.balance(account or phone_account_id(MOM))
    return 20_000_000 - bal.available, bal.pending


async def fund_friend(rig, micros):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
        await fund_phone_account(c, FRIEND, micros, f"friend-{micros}")


# -- 3. exact charges: hanging up inside the Continue lead -------------------------------------

@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("end_first", [False, True])
async def test_hanging_up_inside_the_continue_lead_pays_the_measured_seconds_raced_or_not(
        rig, end_first, grouped):
    if not grouped:
        rig.core.group = None          # each fast Continue commits alone (call_advance)
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    if not end_first:     # the Continue sent 5 s before the period's end wins the race
        g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
        assert (g["grant_until"], g["last"]) == (120, False)
    rig.clock.advance(2)
    e = await rig.call(wire.End, call_id=cid, talk_seconds=57, disposition="completed")
    if end_first:
        with pytest.raises(wire.CallAlreadyEnded):
            await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
    assert (e["billed_seconds"], e["charged_micros"]) == (57, with_tax(57 * PER_SECOND))
    assert await spent(rig) == (with_tax(57 * PER_SECOND), 0)
    cdr = await cdr_of(rig, cid)
    assert (cdr["talk_seconds"], cdr["total_micros"]) == (57, with_tax(57 * PER_SECOND))


async def test_a_hold_expires_the_configured_slack_after_the_talk_it_covers(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
    async with rig.pool.acquire() as c:
        holds = await c.fetch("SELECT expires_in, expires_at, created_at FROM ledger_transfer "
                              "WHERE kind = 2 AND ref = $1 ORDER BY seq", cid)
    assert [h["expires_in"] for h in holds] == [90, 90, 95, 95]
    period_2_end = WEDNESDAY_10AM + timedelta(seconds=120)
    assert {h["expires_at"] for h in holds[2:]} == {period_2_end + timedelta(seconds=30)}
    await rig.call(wire.End, call_id=cid, talk_seconds=60, disposition="completed")


# -- 1. every ledger answer has an outcome: a hold that expired ---------------------------------

async def test_an_end_after_the_hold_expired_collects_the_talk_and_writes_the_cdr(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(40 + 300)           # a 5-minute outage: End arrives long after expiry
    async with rig.pool.acquire() as c:   # and the sweeper has released the hold meanwhile
        assert await ledger.sweep_expired(c, rig.clock.now) == 2
    e = await rig.call(wire.End, call_id=cid, talk_seconds=40, disposition="completed")
    assert e["charged_micros"] == with_tax(40 * PER_SECOND)
    assert await spent(rig) == (with_tax(40 * PER_SECOND), 0)     # collected from the account
    cdr = await cdr_of(rig, cid)
    assert (cdr["talk_seconds"], cdr["shortfall_micros"]) == (40, 0)


async def test_a_late_continue_over_an_expired_hold_on_an_empty_account_books_a_shortfall(rig):
    await fund_friend(rig, with_tax(60 * PER_SECOND) + 5_000)
    cid = await call_to(rig, FRIEND)
    await rig.call(wire.Accept, call_id=cid)
    async with rig.pool.acquire() as c:   # another call spends the money the hold released
        rig.clock.advance(200)
        assert await ledger.sweep_expired(c, rig.clock.now) == 2
        [r] = await ledger.submit(c, [ledger.Transfer(
            uuid.uuid4(), ledger.TransferKind.SINGLE, debit=phone_account_id(FRIEND),
            credit="revenue", amount=with_tax(60 * PER_SECOND))], now=rig.clock.now)
        assert r.succeeded
    g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
    assert (g["grant_until"], g["last"]) == (60, True)         # no more grant; nothing raised
    e = await rig.call(wire.End, call_id=cid, talk_seconds=60, disposition="grant_exhausted")
    assert e["charged_micros"] == with_tax(60 * PER_SECOND)
    cdr = await cdr_of(rig, cid)
    assert cdr["total_micros"] == with_tax(60 * PER_SECOND)
    # 5,000 µ was still there: collected; the rest is the shortfall, on its named account
    assert cdr["shortfall_micros"] == with_tax(60 * PER_SECOND) - 5_000
    assert (await rig.balance(phone_account_id(FRIEND))).available == 0
    short = await rig.balance("call_shortfall")
    assert short.posted == -cdr["shortfall_micros"]
    async with rig.pool.acquire() as c:
        lines = (await ledger.statement(c, "call_shortfall")).lines
    assert (await rig.verify()).counts["shortfall_micros"] == cdr["shortfall_micros"]
    # at Continue: 55 s less the 5,000 µ collected, and its tax; at End: the last 5 s and tax
    assert [(line.ref, line.counterparty, line.posted_change) for line in lines] == [
        (cid, "revenue", -50_000), (cid, "tax_payable", -2_750),
        (cid, "revenue", -5_000), (cid, "tax_payable", -250)]


async def test_a_worker_lost_after_an_outage_still_gets_its_call_closed_and_the_sweep_goes_on(rig):
    rig.core.s = dataclasses.replace(rig.core.s, call_silence_seconds=30)
    ids = [await call_to(rig) for _ in range(3)]
    for cid in ids:
        await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    for cid in ids:
        await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
    async with rig.pool.acquire() as c:   # one call cannot be priced any more (a broken row)
        await c.execute("UPDATE call SET tariff_version = 99 WHERE id = $1::uuid", ids[1])
    rig.clock.advance(500)                # every hold has expired meanwhile
    seen = []
    rig.core.observer = lambda what, outcome, **kw: seen.append((what, outcome))
    closed = await rig.core.close_silent_calls()
    assert sorted(map(str, closed)) == sorted([ids[0], ids[2]])
    assert ("charging", "close_failed") in seen
    for cid in (ids[0], ids[2]):
        cdr = await cdr_of(rig, cid)
        assert (cdr["disposition"], cdr["talk_seconds"]) == ("worker_lost", 55)
        assert cdr["total_micros"] == with_tax(55 * PER_SECOND)
    async with rig.pool.acquire() as c:   # the broken call is fixed; the next sweep closes it
        await c.execute("UPDATE call SET tariff_version = 1 WHERE id = $1::uuid", ids[1])
        assert await ledger.sweep_expired(c, rig.clock.now) >= 0
    assert [str(x) for x in await rig.core.close_silent_calls()] == [ids[1]]
    assert await spent(rig) == (3 * with_tax(55 * PER_SECOND), 0)


# -- the silence rule counts the worker's silence, not the core's absence ----------------------

class _DatabaseOut:
    """Where the core's pool stands while the database cannot be reached."""

    def acquire(self):
        raise ConnectionRefusedError("database unreachable")


async def test_a_restarted_core_gives_every_worker_its_whole_grace_before_closing_its_calls(rig):
    from switch.control.core import Core
    rig.core.s = dataclasses.replace(rig.core.s, call_silence_seconds=30)
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(100)                # the core was down 100 s: nobody could be heard
    fresh = Core(rig.pool, rig.core.pricing, rig.core.s, clock=rig.clock)
    assert await fresh.close_silent_calls() == []
    rig.clock.advance(20)                 # the worker reconnects and its heartbeat is heard
    assert await fresh.touch([cid], WORKER_ID) == []
    rig.clock.advance(29)
    assert await fresh.close_silent_calls() == []
    rig.clock.advance(2)                  # now it really has been silent 31 s
    assert [str(c) for c in await fresh.close_silent_calls()] == [cid]


async def test_a_database_outage_restarts_the_silence_clock_when_the_database_is_back(rig):
    rig.core.s = dataclasses.replace(rig.core.s, call_silence_seconds=30)
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    pool, rig.core.pool = rig.core.pool, _DatabaseOut()
    rig.clock.advance(10)
    with pytest.raises(OSError):          # the sweep fails: the core cannot hear anyone
        await rig.core.close_silent_calls()
    rig.clock.advance(80)
    rig.core.pool = pool
    assert await rig.core.close_silent_calls() == []       # back: 30 s of grace from now
    rig.clock.advance(29)
    assert await rig.core.close_silent_calls() == []
    rig.clock.advance(2)
    assert [str(c) for c in await rig.core.close_silent_calls()] == [cid]


async def test_a_heartbeat_the_database_could_not_record_restarts_the_silence_clock(rig):
    rig.core.s = dataclasses.replace(rig.core.s, call_silence_seconds=30)
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(25)
    pool, rig.core.pool = rig.core.pool, _DatabaseOut()
    with pytest.raises(OSError):
        await rig.core.touch([cid], WORKER_ID)
    rig.core.pool = pool
    rig.clock.advance(10)
    assert await rig.core.close_silent_calls() == []


async def test_a_late_end_after_a_worker_lost_close_charges_the_measured_talk_exactly_once(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
    rig.clock.advance(40)
    await rig.core.close_lost(uuid.UUID(cid))          # charged the confirmed 55 s only
    assert await spent(rig) == (with_tax(55 * PER_SECOND), 0)
    # The worker's End, queued behind the core's absence, arrives: 100 s measured, under grant.
    e = await rig.call(wire.End, call_id=cid, talk_seconds=100, disposition="completed")
    assert (e["billed_seconds"], e["charged_micros"]) == (100, with_tax(100 * PER_SECOND))
    assert await spent(rig) == (with_tax(100 * PER_SECOND), 0)
    cdr = await cdr_of(rig, cid)
    assert (cdr["talk_seconds"], cdr["billed_seconds"], cdr["disposition"]) == \
        (100, 100, "completed")
    assert cdr["total_micros"] == with_tax(100 * PER_SECOND)
    assert cdr["late_end_at"] == rig.clock.now
    assert json.loads(cdr["charges"]) and len(cdr["transfer_ids"]) > 4
    # Resent, or resent with another figure: it was settled once; nothing more moves.
    for talk in (100, 118):
        again = await rig.call(wire.End, call_id=cid, talk_seconds=talk, disposition="completed")
        assert again["charged_micros"] == with_tax(100 * PER_SECOND)
    assert await spent(rig) == (with_tax(100 * PER_SECOND), 0)
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM cdr WHERE call_id = $1::uuid", cid) == 1


async def test_a_late_end_never_charges_past_the_grant_the_worker_held(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(300)
    await rig.core.close_lost(uuid.UUID(cid))          # nothing confirmed: costs nothing yet
    assert await spent(rig) == (0, 0)
    e = await rig.call(wire.End, call_id=cid, talk_seconds=5_000, disposition="completed")
    assert e["charged_micros"] == with_tax(60 * PER_SECOND)
    assert await spent(rig) == (with_tax(60 * PER_SECOND), 0)


async def test_a_late_end_on_an_account_spent_meanwhile_books_the_rest_as_shortfall(rig):
    await fund_friend(rig, with_tax(60 * PER_SECOND))
    cid = await call_to(rig, FRIEND)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(50)
    await rig.core.close_lost(uuid.UUID(cid))
    async with rig.pool.acquire() as c:                # the released money is spent elsewhere
        [r] = await ledger.submit(c, [ledger.Transfer(
            uuid.uuid4(), ledger.TransferKind.SINGLE, debit=phone_account_id(FRIEND),
            credit="revenue", amount=with_tax(60 * PER_SECOND) - 1_000)], now=rig.clock.now)
        assert r.succeeded
    e = await rig.call(wire.End, call_id=cid, talk_seconds=50, disposition="completed")
    assert e["charged_micros"] == with_tax(50 * PER_SECOND)
    cdr = await cdr_of(rig, cid)
    assert cdr["shortfall_micros"] == with_tax(50 * PER_SECOND) - 1_000
    assert (await rig.balance("call_shortfall")).posted == -cdr["shortfall_micros"]


# -- upgrades ------------------------------------------------------------------------------------

async def _upgrade(rig, migration: str, cid: str) -> None:
    """Leave the call's row as a row written before 0003_charging (no hold named, no pinned
    tariff), then apply `migration` as the upgrade does."""
    from pathlib import Path
    import switch
    sql = (Path(switch.__file__).parent / "migrations" / migration).read_text()
    async with rig.pool.acquire() as c, c.transaction():
        await c.execute("UPDATE call SET hold_call = NULL, hold_tax = NULL, tariff_version = NULL "
                        "WHERE id = $1::uuid", cid)
        await c.execute(sql)


@pytest.mark.parametrize("then", ["end", "continue"])
async def test_a_call_in_progress_at_the_upgrade_settles_out_of_the_hold_it_already_has(rig, then):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    async with rig.pool.acquire() as c:
        held = await c.fetchrow("SELECT hold_call, hold_tax FROM call WHERE id = $1::uuid", cid)
    await _upgrade(rig, "0006_open_calls_name_their_holds.sql", cid)
    async with rig.pool.acquire() as c:
        assert await c.fetchrow("SELECT hold_call, hold_tax FROM call WHERE id = $1::uuid",
                                cid) == held
    rig.clock.advance(55)
    if then == "continue":       # the next period is held as usual, the first posted from its hold
        g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
        assert (g["grant_until"], g["last"]) == (120, False)
        rig.clock.advance(30)
    talk = 85 if then == "continue" else 40
    e = await rig.call(wire.End, call_id=cid, talk_seconds=talk, disposition="completed")
    assert e["charged_micros"] == with_tax(talk * PER_SECOND)
    assert await spent(rig) == (with_tax(talk * PER_SECOND), 0)   # nothing left held
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM ledger_hold_open") == 0


# -- 4. the shortened last period --------------------------------------------------------------

async def test_money_for_a_shorter_last_period_is_held_under_a_new_id_with_the_warning(rig):
    await fund_friend(rig, with_tax(100 * PER_SECOND))
    cid = await call_to(rig, FRIEND)
    g = await rig.call(wire.Accept, call_id=cid)
    assert (g["grant_until"], g["last"]) == (60, False)
    rig.clock.advance(55)
    g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)
    assert (g["grant_until"], g["last"], g["warn_at"]) == (100, True, 40)
    rig.clock.advance(45)
    e = await rig.call(wire.End, call_id=cid, talk_seconds=100, disposition="grant_exhausted")
    assert e["charged_micros"] == with_tax(100 * PER_SECOND)
    assert (await rig.balance(phone_account_id(FRIEND))).available == 0


async def test_accept_grants_a_shorter_first_period_instead_of_refusing(rig):
    await fund_friend(rig, with_tax(120 * PER_SECOND))
    first = await call_to(rig, FRIEND)
    second = await call_to(rig, FRIEND)      # both authorized while two minutes were there
    await rig.call(wire.Accept, call_id=first)
    rig.clock.advance(55)
    await rig.call(wire.Continue, call_id=first, period=1, talk_seconds=55)  # holds to 120 s
    async with rig.pool.acquire() as c:
        await fund_phone_account(c, FRIEND, with_tax(30 * PER_SECOND), "top-up")
    g = await rig.call(wire.Accept, call_id=second)
    assert (g["grant_until"], g["last"], g["warn_at"]) == (30, True, 1)
    rig.clock.advance(30)
    await rig.call(wire.End, call_id=second, talk_seconds=30, disposition="grant_exhausted")
    await rig.call(wire.End, call_id=first, talk_seconds=85, disposition="completed")
    assert (await rig.balance(phone_account_id(FRIEND))).available == with_tax(35 * PER_SECOND)


# -- 5. the fast path never commits half a step -------------------------------------------------

@pytest.mark.parametrize("grouped", [True, False])
async def test_a_fast_continue_whose_next_hold_is_refused_moves_nothing_and_the_row_stays(
        rig, grouped):
    if not grouped:
        rig.core.group = None
    await fund_friend(rig, with_tax(60 * PER_SECOND))
    cid = await call_to(rig, FRIEND)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    async with rig.pool.acquire() as c:
        before = await c.fetchrow("SELECT * FROM call WHERE id = $1::uuid", cid)
        n = await c.fetchval("SELECT count(*) FROM ledger_transfer")
        assert await rig.core._continue_fast(uuid.UUID(cid), 1, 55, rig.clock.now) is None
        after = await c.fetchrow("SELECT * FROM call WHERE id = $1::uuid", cid)
        assert dict(after) == dict(before)
        assert await c.fetchval("SELECT count(*) FROM ledger_transfer") == n   # no post applied
    g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)   # careful path
    assert (g["grant_until"], g["last"]) == (60, True)
    e = await rig.call(wire.End, call_id=cid, talk_seconds=58, disposition="completed")
    assert e["charged_micros"] == with_tax(58 * PER_SECOND)


# -- 2. one price per call ----------------------------------------------------------------------

@pytest.mark.parametrize("new_rate", [RATE // 2, RATE * 2])
async def test_a_tariff_version_taking_effect_mid_call_does_not_reprice_it(reactor, pg_dsn,
                                                                         new_rate):
    v1 = flat_tariff(increment=1)
    v2_from = WEDNESDAY_10AM + timedelta(seconds=90)
    v2 = flat_tariff(rate=new_rate, increment=1).versions[0]
    v2 = dataclasses.replace(v2, number=2, effective_from=v2_from)
    tariff = dataclasses.replace(v1, versions=v1.versions + (v2,))
    rig = await make_rig(reactor, pg_dsn, tariff=tariff)
    try:
        cid = await call_to(rig)
        await rig.call(wire.Accept, call_id=cid)
        for k in (1, 2, 3):
            rig.clock.advance(60)
            await rig.call(wire.Continue, call_id=cid, period=k, talk_seconds=60 * k)
        rig.clock.advance(30)
        e = await rig.call(wire.End, call_id=cid, talk_seconds=210, disposition="completed")
        price = with_tax(210 * PER_SECOND)             # all of it at version 1's rate
        assert e["charged_micros"] == price
        assert await spent(rig) == (price, 0)
        cdr = await cdr_of(rig, cid)
        assert (cdr["tariff_version"], cdr["total_micros"]) == ("1", price)
        assert json.loads(cdr["charges"])["version"] == 1
        # a call authorized after version 2 took effect is priced by version 2
        cid2 = await call_to(rig)
        await rig.call(wire.Accept, call_id=cid2)
        rig.clock.advance(10)
        e2 = await rig.call(wire.End, call_id=cid2, talk_seconds=10, disposition="completed")
        assert e2["charged_micros"] == with_tax(10 * new_rate // 60)
        await rig.verify()
    finally:
        await close_rig(rig)


# -- 6. deposits and house accounts -------------------------------------------------------------

async def test_a_deposit_reference_funds_once_whatever_its_case_or_blanks(rig):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
        first = await fund_phone_account(c, FRIEND, 1_000_000, "PAY-123 ")
        again = await fund_phone_account(c, FRIEND, 1_000_000, "  pay-123")
        assert (first.result, again.result) == ("ok", "exists")
        assert first.transfer_id == again.transfer_id
        with pytest.raises(Invalid, match="already used"):
            await fund_phone_account(c, FRIEND, 2_000_000, "Pay-123")
    assert (await rig.balance(phone_account_id(FRIEND))).available == 1_000_000


@pytest.mark.parametrize("ref,problem", [
    ("   ", "required"), ("PAY\x00123", "not printable"), ("PAY-\u202e321", "not printable"),
    ("X" * 101, "at most 100"),
])
async def test_a_hostile_deposit_reference_is_refused_and_funds_nothing(rig, ref, problem):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
        deposits = await c.fetchval("SELECT count(*) FROM funding_credit")
        with pytest.raises(Invalid, match=problem):
            await fund_phone_account(c, FRIEND, 1_000_000, ref)
        assert await c.fetchval("SELECT count(*) FROM funding_credit") == deposits
    assert (await rig.balance(phone_account_id(FRIEND))).available == 0


async def test_house_accounts_are_spread_over_the_configured_shards(pg_dsn):
    import asyncpg
    conn = await asyncpg.connect(pg_dsn)
    try:
        await ensure_house_accounts(conn, "EUR", shards=4)   # a fresh database each test
        rows = dict(await conn.fetch("SELECT id, shards FROM ledger_account WHERE id IN "
                                     "('revenue', 'tax_payable', 'call_shortfall')"))
        assert rows == {"revenue": 4, "tax_payable": 4, "call_shortfall": 1}
    finally:
        await conn.close()


# -- 7. group commit ----------------------------------------------------------------------------

async def test_concurrent_continues_are_carried_out_together_and_a_refused_one_alone(rig):
    import asyncio
    await fund_friend(rig, with_tax(80 * PER_SECOND))        # one call's next hold cannot be made
    batches = []
    rig.core.observer = lambda what, outcome, **kw: (
        batches.append(kw["size"]) if what == "group_commit" else None)
    moms = [await call_to(rig) for _ in range(12)]   # more than the pool's 8 connections
    poor = await call_to(rig, FRIEND)
    for cid in moms + [poor]:
        await rig.call(wire.Accept, call_id=cid)
    assert sum(batches) == 13           # Accepts go by group commit too (one at a time here)
    batches.clear()
    rig.clock.advance(55)
    answers = await asyncio.gather(*(
        rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55) for cid in moms + [poor]))
    assert [(g["grant_until"], g["last"]) for g in answers] == [(120, False)] * 12 + [(80, True)]
    assert max(batches) > 1 and sum(batches) == 13    # batched; the refused one then went alone
    rig.clock.advance(5)
    for cid in moms + [poor]:
        await rig.call(wire.End, call_id=cid, talk_seconds=60, disposition="completed")
    assert await spent(rig) == (12 * with_tax(60 * PER_SECOND), 0)
    assert (await rig.balance(phone_account_id(FRIEND))).available == with_tax(20 * PER_SECOND)


class _BrokenBatchPool:
    """The group commit's pool, failing in a way the batch code does not expect."""

    def __init__(self, error):
        self.error = error

    def acquire(self):
        raise self.error


@pytest.mark.parametrize("error", [KeyError("bug"), ZeroDivisionError(),
                                   __import__("asyncio").CancelledError()],
                         ids=["bug", "arithmetic", "cancelled"])
async def test_every_waiting_continue_is_answered_whatever_the_batch_raises(rig, error):
    import asyncio
    ids = [await call_to(rig) for _ in range(4)]
    for cid in ids:
        await rig.call(wire.Accept, call_id=cid)
    rig.core.group.pool = _BrokenBatchPool(error)
    rig.clock.advance(55)
    answers = await asyncio.wait_for(asyncio.gather(*(
        rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55) for cid in ids)), 20)
    # each went the careful path and got its grant: nobody waits on a batch that died
    assert [(g["grant_until"], g["last"]) for g in answers] == [(120, False)] * 4
    assert not rig.core.group._pending
    for cid in ids:
        await rig.call(wire.End, call_id=cid, talk_seconds=60, disposition="completed")
    assert await spent(rig) == (4 * with_tax(60 * PER_SECOND), 0)


async def test_hostile_talk_and_period_values_charge_nothing_past_the_grant(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    for period, talk in ((0, 30), (1, -1), (2, 60)):
        with pytest.raises(wire.BadRequest):
            await rig.call(wire.Continue, call_id=cid, period=period, talk_seconds=talk)
    held = with_tax(60 * PER_SECOND)
    assert await spent(rig) == (held, -held)        # the first hold, nothing else moved
    rig.clock.advance(55)
    g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=10**12)
    assert g["grant_until"] == 120                  # the talk counted is at most the grant
    assert await spent(rig) == (2 * held, -held)    # 60 s posted, (60, 120] held
    e = await rig.call(wire.End, call_id=cid, talk_seconds=2**62, disposition="completed")
    assert (e["billed_seconds"], e["charged_micros"]) == (120, with_tax(120 * PER_SECOND))
    with pytest.raises(wire.BadRequest):
        await rig.call(wire.End, call_id=cid, talk_seconds=-5, disposition="completed")


async def test_a_batch_never_waits_for_a_call_row_another_transaction_holds(rig):
    import asyncio
    x, y = await call_to(rig), await call_to(rig)
    for cid in (x, y):
        await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(55)
    async with rig.pool.acquire() as holder:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM call WHERE id = $1::uuid FOR UPDATE", x)
        cx = asyncio.ensure_future(rig.call(wire.Continue, call_id=x, period=1, talk_seconds=55))
        gy = await asyncio.wait_for(
            rig.call(wire.Continue, call_id=y, period=1, talk_seconds=55), 10)
        assert gy["grant_until"] == 120 and not cx.done()     # x waits on its careful path
        await tx.commit()
    assert (await cx)["grant_until"] == 120
    rig.clock.advance(5)
    for cid in (x, y):
        await rig.call(wire.End, call_id=cid, talk_seconds=60, disposition="completed")
    assert await spent(rig) == (2 * with_tax(60 * PER_SECOND), 0)


async def test_rerating_a_cdr_gives_what_the_ledger_took(rig, pg_dsn, tmp_path):
    import asyncio
    import csv
    from ops.cli import main
    from rating import store
    from switch.control.tariffs import Pricing
    v1 = flat_tariff(increment=6).versions[0]         # 6-second increments, taxed
    async with rig.pool.acquire() as c:
        await store.save_version(c, "riverside", v1.effective_from, v1.lines, v1.surcharges)
    rig.core.pricing = Pricing()                      # the tariff as stored, as `ics serve` does
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    for k in (1, 2):
        rig.clock.advance(55 if k == 1 else 60)
        await rig.call(wire.Continue, call_id=cid, period=k, talk_seconds=55 + 60 * (k - 1))
    rig.clock.advance(8)
    await rig.call(wire.End, call_id=cid, talk_seconds=123, disposition="completed")
    cdr = await cdr_of(rig, cid)
    took, _ = await spent(rig)
    calls = tmp_path / "calls.csv"
    calls.write_text("facility,to,start,seconds,payment\n"
                     f"{cdr['facility_id']},{cdr['e164']},{cdr['accepted_at'].isoformat()},"
                     f"{cdr['talk_seconds']},{cdr['payment_type']}\n")
    config = tmp_path / "ics.toml"
    config.write_text(f'[database]\nurl = "{pg_dsn}"\n[node]\ndata_dir = "{tmp_path}"\n')
    out = tmp_path / "out.csv"
    code = await asyncio.to_thread(main, ["--config", str(config), "rates", "rerate", str(calls),
                                          "--out", str(out), "--quiet"])
    (rerated,) = list(csv.DictReader(out.open()))
    assert code == 0 and int(rerated["billed_seconds"]) == cdr["billed_seconds"] == 126
    assert int(rerated["total_micros"]) == cdr["total_micros"] == took


async def test_a_step_decided_from_a_stale_cached_row_moves_nothing_and_the_call_stays_exact(
        rig, pg_dsn):
    """The fast path decides from the row as its core last committed it; another core (or a
    careful step) moving the call meanwhile makes that row stale. Its step must not apply: the
    batch finds the call moved on, and the careful path answers from the row as it is."""
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)          # the rig's core now holds the row
    assert uuid.UUID(cid) in rig.core._rows
    async with another_core(pg_dsn, rig.clock) as other:
        rig.clock.advance(55)
        assert (await other.continue_(cid, 1, 50)).grant_until == 120   # the call moves on
        g = await rig.call(wire.Continue, call_id=cid, period=1, talk_seconds=55)  # stale row
        assert (g["grant_until"], g["last"]) == (120, False)
        assert uuid.UUID(cid) not in rig.core._rows          # dropped, read again next time
        rig.clock.advance(5)
        e = await rig.call(wire.End, call_id=cid, talk_seconds=60, disposition="completed")
    assert e["charged_micros"] == with_tax(60 * PER_SECOND)
    assert await spent(rig) == (with_tax(60 * PER_SECOND), 0)
