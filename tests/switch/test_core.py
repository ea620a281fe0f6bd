"""The core over a real AMP connection against real PostgreSQL: decisions, the grant-and-charge
loop, CDRs. Every test ends with the ledger's verify (invariants 1-7)."""
import asyncio
import dataclasses
import json
from datetime import datetime, timezone

import pytest

from switch.wire import protocol as wire
from switch.settings import CoreSettings
from switch.provisioning.directory import fund_phone_account, phone_account_id, add_phone_account, inmate_account_id

from rig import RATE, TAX_PPM, close_rig, flat_tariff, make_rig

MOM = "+19515550101"          # approved, prepaid account with 20.00
FRIEND = "+12125550123"       # approved, no prepaid account: the inmate's debit (5.00) pays
LAWYER = "+13105550199"       # privileged
COUSIN = "+19515550177"       # requested, not approved


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn)
    yield r
    await r.verify()
    await close_rig(r)


async def authorize(rig, number, kiosk="kiosk-a1", inmate="10001"):
    return await rig.call(wire.Authorize, kiosk=kiosk, inmate_id=inmate, number=number)


def with_tax(call_micros):
    return call_micros + call_micros * TAX_PPM // 1_000_000


async def test_an_approved_number_is_allowed_with_price_funding_and_called_party_details(rig):
    a = await authorize(rig, "(951) 555-0101")
    assert a["allow"] and a["e164"] == MOM
    assert a["rate_micros_per_minute"] == RATE and a["funding"] == phone_account_id(MOM)
    assert a["record"] and not a["privileged"] and a["max_seconds"] == 900
    assert (a["inmate_name"], a["facility_name"]) == ("John Doe", "Riverside County Jail")
    assert a["trunks"] == [f"sip:{MOM}@127.0.0.1:5090"]


@pytest.mark.parametrize("number,kiosk,inmate,setup,reason", [
    (MOM, "kiosk-zz", "10001", None, "kiosk_unknown"),
    (MOM, "kiosk-a1", "10001", "UPDATE inmate SET status = 'suspended' WHERE id = '10001'",
     "inmate_suspended"),
    ("12", "kiosk-a1", "10001", None, "invalid_number"),
    ("911", "kiosk-a1", "10001", None, "refused_number_class"),
    ("1-900-555-0100", "kiosk-a1", "10001", None, "refused_number_class"),
    (MOM, "kiosk-a1", "10001", "INSERT INTO block (pattern, scope, requested_by) "
     "VALUES ('+1951555', 'global', 'staff'); UPDATE block SET is_prefix = true", "blocked"),
    (COUSIN, "kiosk-a1", "10001", None, "not_approved"),
    ("+12125559999", "kiosk-a1", "10001", None, "not_approved"),
    (MOM, "kiosk-seg", "10001", "UPDATE inmate SET unit = 'SEG' WHERE id = '10001'",
     "outside_calling_hours"),
    (MOM, "kiosk-a1", "10002", "UPDATE inmate SET calls_per_day = 0 WHERE id = '10002'",
     "quota_used"),
    (FRIEND, "kiosk-a1", "10001", "UPDATE inmate SET facility_id = facility_id",
     None),   # control row: allowed
])
async def test_each_deny_reason_reaches_the_worker(rig, number, kiosk, inmate, setup, reason):
    if setup:
        async with rig.pool.acquire() as c:
            await c.execute(setup)
    if reason == "outside_calling_hours":
        # SEG calls mon-fri 09:00-11:00 Los Angeles; move the clock to 08:59 local.
        rig.clock.now = datetime(2026, 11, 25, 16, 59, tzinfo=timezone.utc)
    a = await authorize(rig, number, kiosk, inmate)
    assert a["allow"] is (reason is None)
    assert a.get("reason") == reason


async def test_insufficient_funds_refuses_up_front(rig):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, "+12125550123", "Sam Roe")
        await fund_phone_account(c, "+12125550123", 10_000, "tiny")   # 0.01: less than a minute
        await c.execute("UPDATE inmate SET debit_account = 'inmate:10002' WHERE id = '10001'")
    a = await authorize(rig, FRIEND)
    assert (a["allow"], a["reason"]) == (False, "insufficient_funds")


async def test_schedule_ending_soon_limits_the_call_across_a_time_zone(rig):
    async with rig.pool.acquire() as c:
        await c.execute("UPDATE inmate SET unit = 'SEG' WHERE id = '10001'")
    rig.clock.now = datetime(2026, 11, 25, 18, 55, tzinfo=timezone.utc)   # 10:55 in LA
    a = await authorize(rig, MOM, kiosk="kiosk-seg")
    assert a["allow"] and a["max_seconds"] == 300


async def test_a_daily_minutes_quota_limits_then_refuses(rig):
    async with rig.pool.acquire() as c:
        await c.execute("UPDATE inmate SET minutes_per_day = 3 WHERE id = '10001'")
    a = await authorize(rig, MOM)
    assert a["max_seconds"] == 180
    await rig.call(wire.Accept, call_id=a["call_id"])
    for k in (1, 2):
        rig.clock.advance(60)
        await rig.call(wire.Continue, call_id=a["call_id"], period=k, talk_seconds=60 * k)
    rig.clock.advance(60)
    await rig.call(wire.End, call_id=a["call_id"], talk_seconds=180, disposition="grant_exhausted")
    again = await authorize(rig, MOM)
    assert (again["allow"], again["reason"]) == (False, "quota_used")


async def test_three_minutes_twenty_seconds_at_six_cents_is_four_minutes_plus_tax(rig):
    before = await rig.balance(phone_account_id(MOM))
    a = await authorize(rig, MOM)
    g = await rig.call(wire.Accept, call_id=a["call_id"])
    assert (g["grant_until"], g["last"]) == (60, False)
    for k in (1, 2, 3):
        rig.clock.advance(60)
        g = await rig.call(wire.Continue, call_id=a["call_id"], period=k, talk_seconds=60 * k)
        assert g["grant_until"] == 60 * (k + 1)
        held = before.available - (await rig.balance(phone_account_id(MOM))).available
        assert held == with_tax(RATE) * (k + 1)     # k periods posted, one held
    rig.clock.advance(20)
    e = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=200, disposition="completed")
    assert e["billed_seconds"] == 240 and e["charged_micros"] == with_tax(4 * RATE)
    after = await rig.balance(phone_account_id(MOM))
    assert before.available - after.available == with_tax(4 * RATE) and after.pending == 0
    async with rig.pool.acquire() as c:
        cdr = await c.fetchrow("SELECT * FROM cdr WHERE call_id = $1::uuid", a["call_id"])
    charges = json.loads(cdr["charges"])
    assert (cdr["talk_seconds"], cdr["call_micros"], cdr["tax_micros"]) == (200, 4 * RATE, 4 * RATE * TAX_PPM // 10**6)
    assert cdr["disposition"] == "completed" and len(cdr["transfer_ids"]) == 16
    assert charges["surcharges"][0]["name"] == "state tax"


async def test_an_underfunded_call_gets_a_last_grant_and_ends_at_the_funded_minute(rig):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
        await fund_phone_account(c, FRIEND, 2 * with_tax(RATE) + 10_000, "two-minutes")
    a = await authorize(rig, FRIEND)
    assert a["allow"] and a["max_seconds"] == 120 and a["funding"] == phone_account_id(FRIEND)
    g = await rig.call(wire.Accept, call_id=a["call_id"])
    assert (g["grant_until"], g["last"]) == (60, False)
    rig.clock.advance(60)
    g = await rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60)
    assert (g["grant_until"], g["last"], g["warn_at"]) == (120, True, 60)
    rig.clock.advance(60)
    # the worker hangs up at grant_until and reports; talk past the grant is never charged
    e = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=125, disposition="grant_exhausted")
    assert e["billed_seconds"] == 120 and e["charged_micros"] == 2 * with_tax(RATE)
    assert (await rig.balance(phone_account_id(FRIEND))).available == 10_000


async def test_money_running_out_mid_call_cuts_the_grant_when_another_call_spent_it(rig):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
        await fund_phone_account(c, FRIEND, 3 * with_tax(RATE), "three-minutes")
        await c.execute("UPDATE contact SET status = 'approved' WHERE e164 = $1", COUSIN)
    a = await authorize(rig, FRIEND)
    b = await authorize(rig, FRIEND, inmate="10001")
    assert a["allow"] and b["allow"]
    ga, gb = await asyncio.gather(rig.call(wire.Accept, call_id=a["call_id"]),
                                  rig.call(wire.Accept, call_id=b["call_id"]))
    assert ga["grant_until"] == gb["grant_until"] == 60
    rig.clock.advance(60)
    ra, rb = await asyncio.gather(
        rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60),
        rig.call(wire.Continue, call_id=b["call_id"], period=1, talk_seconds=60))
    # three minutes of money: two were spent, one more can be held by exactly one call
    assert sorted([ra["last"], rb["last"]]) == [False, True]
    assert ra["grant_until"] + rb["grant_until"] == 180
    bal = await rig.balance(phone_account_id(FRIEND))
    assert bal.available == 0 and bal.posted >= 0


async def test_many_simultaneous_calls_on_one_account_never_overdraw(rig):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
        await fund_phone_account(c, FRIEND, 5 * with_tax(RATE), "five-minutes")
    calls = [await authorize(rig, FRIEND) for _ in range(8)]
    assert all(a["allow"] for a in calls)
    results = await asyncio.gather(*(rig.call(wire.Accept, call_id=a["call_id"]) for a in calls),
                                   return_exceptions=True)
    granted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, wire.InsufficientFunds)]
    assert len(granted) == 5 and len(refused) == 3
    bal = await rig.balance(phone_account_id(FRIEND))
    assert bal.available == 0


async def test_a_repeated_end_is_answered_from_the_first_and_charges_once(rig):
    a = await authorize(rig, MOM)
    await rig.call(wire.Accept, call_id=a["call_id"])
    rig.clock.advance(30)
    first = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=30, disposition="completed")
    second = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=45, disposition="completed")
    assert first == second and first["charged_micros"] == with_tax(RATE)
    assert 20_000_000 - (await rig.balance(phone_account_id(MOM))).available == with_tax(RATE)


async def test_a_resent_accept_or_continue_gets_the_same_answer_and_moves_no_money(rig):
    a = await authorize(rig, MOM)
    g1 = await rig.call(wire.Accept, call_id=a["call_id"])
    g2 = await rig.call(wire.Accept, call_id=a["call_id"])
    assert g1 == g2
    rig.clock.advance(60)
    c1 = await rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60)
    bal = await rig.balance(phone_account_id(MOM))
    c2 = await rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60)
    assert c1 == c2 and await rig.balance(phone_account_id(MOM)) == bal
    with pytest.raises(wire.BadRequest):
        await rig.call(wire.Continue, call_id=a["call_id"], period=5, talk_seconds=300)


async def test_a_refused_call_costs_nothing_and_has_a_cdr(rig):
    a = await authorize(rig, MOM)
    e = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="refused")
    assert (e["billed_seconds"], e["charged_micros"]) == (0, 0)
    assert (await rig.balance(phone_account_id(MOM))).available == 20_000_000
    with pytest.raises(wire.CallAlreadyEnded):
        await rig.call(wire.Accept, call_id=a["call_id"])


async def test_a_privileged_call_is_free_and_not_recorded(rig):
    a = await authorize(rig, LAWYER)
    assert a["allow"] and a["privileged"] and not a["record"] and a["passive_accept"]
    assert a["rate_micros_per_minute"] == 0
    g = await rig.call(wire.Accept, call_id=a["call_id"])
    assert (g["grant_until"], g["last"]) == (60, False)   # periods still prove the worker alive
    rig.clock.advance(60)
    g = await rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60)
    assert g["grant_until"] == 120
    e = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=100, disposition="completed",
                       recording="/should/not/be/kept.wav")
    assert e["charged_micros"] == 0
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT recording FROM cdr WHERE call_id = $1::uuid",
                                a["call_id"]) is None


async def test_block_key_blocks_the_number_for_the_facility(rig):
    a = await authorize(rig, MOM)
    assert (await rig.call(wire.Block, call_id=a["call_id"], scope="facility"))["blocked"]
    await rig.call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="blocked")
    again = await authorize(rig, MOM, inmate="10002")
    assert (again["allow"], again["reason"]) == (False, "blocked")


async def test_a_silent_worker_s_call_is_closed_and_its_unconfirmed_period_is_not_charged(rig):
    rig.core.s = dataclasses.replace(rig.core.s, call_silence_seconds=30)
    a = await authorize(rig, MOM)
    await rig.call(wire.Accept, call_id=a["call_id"])
    rig.clock.advance(60)
    await rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60)
    rig.clock.advance(20)
    hb = await rig.call(wire.Heartbeat, worker_id="w1", active_calls=[a["call_id"], "nonsense"])
    assert hb["unknown_calls"] == ["nonsense"]
    rig.clock.advance(25)
    assert await rig.core.close_silent_calls() == []          # heard of 25 s ago
    rig.clock.advance(10)
    closed = await rig.core.close_silent_calls()
    assert [str(c) for c in closed] == [a["call_id"]]
    async with rig.pool.acquire() as c:
        cdr = await c.fetchrow("SELECT * FROM cdr WHERE call_id = $1::uuid", a["call_id"])
    assert (cdr["disposition"], cdr["talk_seconds"]) == ("worker_lost", 60)
    assert cdr["total_micros"] == with_tax(RATE)
    bal = await rig.balance(phone_account_id(MOM))
    assert bal.pending == 0 and 20_000_000 - bal.available == with_tax(RATE)
    with pytest.raises(wire.CallAlreadyEnded):
        await rig.call(wire.Continue, call_id=a["call_id"], period=2, talk_seconds=120)


async def test_unknown_call_and_bad_arguments_get_declared_errors(rig):
    with pytest.raises(wire.UnknownCall):
        await rig.call(wire.Accept, call_id="not-a-uuid")
    with pytest.raises(wire.UnknownCall):
        await rig.call(wire.Accept, call_id="6f2a3b4c-0000-4000-8000-000000000000")
    with pytest.raises(wire.BadRequest):
        await rig.call(wire.End, call_id="6f2a3b4c-0000-4000-8000-000000000000", talk_seconds=0,
                       disposition="exploded")


async def test_pin_locks_after_three_failures_and_every_attempt_is_audited(rig):
    ok = await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin="100011234")
    assert ok["ok"] and ok["inmate_id"] == "10001" and ok["language"] == "en"
    answers = [await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin="100019999") for _ in range(3)]
    assert [(a["ok"], a["attempts_left"], a["locked"]) for a in answers] == [
        (False, 2, False), (False, 1, False), (False, 0, True)]
    locked = await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin="100011234")
    assert (locked["ok"], locked["locked"]) == (False, True)
    rig.clock.advance(16 * 60)          # the window passes: the PIN works again
    assert (await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin="100011234"))["ok"]
    async with rig.pool.acquire() as c:
        outcomes = [r["outcome"] for r in await c.fetch("SELECT outcome FROM pin_attempt ORDER BY id")]
    assert outcomes == ["ok", "wrong_secret", "wrong_secret", "wrong_secret", "locked", "ok"]


async def test_pin_of_another_facility_s_inmate_or_garbage_is_refused(rig):
    for pin in ("99999" + "1234", "12", "abcd12345"):
        a = await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin=pin)
        assert not a["ok"] and not a["locked"]
    with pytest.raises(wire.KioskUnknown):
        await rig.call(wire.CheckPin, kiosk="nope", pin="100011234")
