"""The tariff's own limits at the core, over AMP against real PostgreSQL: a spending ceiling that
stops the call becomes the call's maximum and the grant loop ends it there; a closed band refuses
the call with a reason the IVR speaks, and one about to close is limited to the time left."""
from datetime import datetime, timezone

import pytest

from rating.tariff import ALL_DAYS, Band, CapAction, Line, PaymentType, RateGroup, Surcharge, \
    SurchargeKind, Tariff, TariffVersion
from switch.wire import protocol as wire
from switch.provisioning.directory import phone_account_id

from rig import RATE, TAX_PPM, close_rig, make_rig

MOM = "+19515550101"          # local; approved, prepaid account with 20.00
FRIEND = "+12125550123"       # interstate; approved, the inmate's debit (5.00) pays
CEILING = 150_000             # 0.15: two whole minutes at 0.06, not three


def tariff(cap_action: CapAction = CapAction.STOP) -> Tariff:
    def line(name, dest, band=Band(), **kw):
        return Line(name, dest, PaymentType.ANY, band, (RateGroup(0, RATE, 60, 60),), **kw)
    lines = (
        line("local", "local", cost_cap_micros=CEILING, cap_action=cap_action),
        line("intrastate", "intrastate"),
        line("interstate", "interstate"),
        Line("interstate-closed", "interstate", PaymentType.ANY,
             Band(0b11111, 10 * 3600 + 5 * 60, 0), (), closed=True),          # 10:05 weekdays
        line("interstate-reopened", "interstate", Band(0b11111, 11 * 3600, 0)),
        line("international", "international"))
    version = TariffVersion(1, datetime(2020, 1, 1, tzinfo=timezone.utc), lines,
                            (Surcharge(SurchargeKind.TAX, "state tax", percent_ppm=TAX_PPM),),
                            facility_id="riverside")
    return Tariff("riverside", "America/Los_Angeles", (version,))


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=tariff())      # Wednesday 10:00 in Los Angeles
    yield r
    await r.verify()
    await close_rig(r)


async def authorize(rig, number):
    return await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=number)


def with_tax(call_micros):
    return call_micros + call_micros * TAX_PPM // 1_000_000


async def test_a_stop_ceiling_is_the_call_s_maximum_and_the_grant_loop_ends_it_there(rig):
    a = await authorize(rig, MOM)
    assert a["allow"] and a["max_seconds"] == 120
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT limited_by FROM call WHERE id = $1::uuid",
                                a["call_id"]) == "ceiling"
    g = await rig.call(wire.Accept, call_id=a["call_id"])
    assert (g["grant_until"], g["last"]) == (60, False)
    rig.clock.advance(60)
    g = await rig.call(wire.Continue, call_id=a["call_id"], period=1, talk_seconds=60)
    assert (g["grant_until"], g["last"]) == (120, True)
    rig.clock.advance(65)
    before = await rig.balance(phone_account_id(MOM))
    e = await rig.call(wire.End, call_id=a["call_id"], talk_seconds=125,
                       disposition="grant_exhausted")
    assert e["billed_seconds"] == 120 and e["charged_micros"] == with_tax(2 * RATE)
    assert (await rig.balance(phone_account_id(MOM))).available == before.available


async def test_a_free_ceiling_does_not_limit_the_call(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=tariff(CapAction.FREE))
    try:
        a = await authorize(r, MOM)
        assert a["allow"] and a["max_seconds"] == 900
    finally:
        await close_rig(r)


async def test_a_destination_about_to_close_is_limited_to_the_time_left(rig):
    a = await authorize(rig, FRIEND)                               # 10:00, closes at 10:05
    assert a["allow"] and a["max_seconds"] == 300
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT limited_by FROM call WHERE id = $1::uuid",
                                a["call_id"]) == "closure"
    await rig.call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="no_answer")


async def test_a_closed_destination_is_refused_with_a_reason_the_ivr_speaks(rig):
    rig.clock.now = datetime(2026, 11, 25, 18, 30, tzinfo=timezone.utc)      # 10:30 in LA
    a = await authorize(rig, FRIEND)
    assert (a["allow"], a["reason"]) == (False, "destination_closed")
    assert "destination_closed" in wire.DENY_REASONS
    rig.clock.now = datetime(2026, 11, 25, 19, 0, tzinfo=timezone.utc)       # 11:00: open again
    assert (await authorize(rig, FRIEND))["allow"]
    m = await authorize(rig, MOM)                        # other destinations are not affected
    assert m["allow"]
