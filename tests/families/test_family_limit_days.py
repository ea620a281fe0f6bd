"""Deposit limits count days and months in the facility's time zone (pure day/month boundaries,
with hypothesis, and the limits on the real database around a New York midnight)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from families import payments
from families.errors import Refused
from families.payments import local_day_start, local_month_start
from families.settings import FamilySettings
from tests.families.test_family_payments import NUMBER, M, holder_with_number, pay

UTC = dt.timezone.utc
ZONES = ("America/New_York", "America/Los_Angeles", "America/Chicago", "Pacific/Honolulu",
         "UTC", "America/Havana")          # Havana moved its clocks at midnight


@pytest.mark.parametrize("now,zone,want", [
    # 03:30 UTC on 2 March is 22:30 on 1 March in New York: the day began 1 March 05:00 UTC.
    (dt.datetime(2026, 3, 2, 3, 30, tzinfo=UTC), "America/New_York",
     dt.datetime(2026, 3, 1, 5, 0, tzinfo=UTC)),
    (dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC), "America/New_York",
     dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC)),
    # The day after the spring change starts at 04:00 UTC (EDT).
    (dt.datetime(2026, 3, 9, 12, 0, tzinfo=UTC), "America/New_York",
     dt.datetime(2026, 3, 9, 4, 0, tzinfo=UTC)),
    (dt.datetime(2026, 3, 2, 3, 30, tzinfo=UTC), "UTC", dt.datetime(2026, 3, 2, tzinfo=UTC)),
])
def test_the_day_begins_at_the_facilitys_midnight(now, zone, want):
    assert local_day_start(now, zone) == want


def test_the_month_begins_at_the_facilitys_first_midnight():
    # 1 April 02:00 UTC is still 31 March in Los Angeles: March's month is the one counted.
    now = dt.datetime(2026, 4, 1, 2, 0, tzinfo=UTC)
    assert local_month_start(now, "America/Los_Angeles") == dt.datetime(2026, 3, 1, 8, 0,
                                                                        tzinfo=UTC)
    assert local_month_start(now, "UTC") == dt.datetime(2026, 4, 1, tzinfo=UTC)


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1),
                    timezones=st.just(UTC)), st.sampled_from(ZONES))
def test_the_day_and_month_start_contain_now_and_fall_on_the_local_date(now, zone):
    day, month = local_day_start(now, zone), local_month_start(now, zone)
    assert month <= day <= now
    assert now - day < dt.timedelta(hours=25)
    local_now, local_day = now.astimezone(ZoneInfo(zone)), day.astimezone(ZoneInfo(zone))
    assert local_day.date() == local_now.date()
    assert (local_day.hour, local_day.minute) <= (1, 0)       # midnight, or the first hour
    assert month.astimezone(ZoneInfo(zone)).day == 1


async def test_the_daily_limit_resets_at_the_facilitys_midnight_not_utcs(pool, world, clock,
                                                                         provider):
    fees = payments.Fees(FamilySettings(deposit_max=50 * M, deposit_daily_max=60 * M))
    async with pool.acquire() as conn:
        # The number is a contact at the fcc-2024 facility (America/New_York).
        hid = await holder_with_number(conn, clock, world["fcc-2024"][1])
        assert await payments.deposit_time_zone(conn, "prepaid", NUMBER) == "America/New_York"
    clock.at = dt.datetime(2026, 3, 2, 3, 0, tzinfo=UTC)         # 22:00 on 1 March in New York
    await pay(pool, fees, provider, clock, hid, 50 * M, "ny-1")
    clock.at = dt.datetime(2026, 3, 2, 4, 30, tzinfo=UTC)        # a new UTC day, same NY day
    with pytest.raises(Refused, match="daily deposit limit"):
        await pay(pool, fees, provider, clock, hid, 20 * M, "ny-2")
    clock.at = dt.datetime(2026, 3, 2, 5, 0, tzinfo=UTC)         # New York's midnight
    assert (await pay(pool, fees, provider, clock, hid, 20 * M, "ny-2")).state == "confirmed"


async def test_an_inmates_month_is_the_facilitys_month(pool, world, clock, provider):
    fees = payments.Fees(FamilySettings())
    facility, inmate = world["fcc-2024"]
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, inmate)
        await conn.execute("INSERT INTO family_facility_policy (facility_id, "
                           "debit_monthly_max) VALUES ($1, $2)", facility, 30 * M)
    clock.at = dt.datetime(2026, 4, 1, 2, 0, tzinfo=UTC)         # 31 March, 22:00 in New York
    await payments.pay(pool, fees, provider, holder_id=hid, purpose="inmate", target=inmate,
                       amount=30 * M, idem_key="m-1", token="tok_approve", now=clock())
    clock.at = dt.datetime(2026, 4, 1, 3, 59, tzinfo=UTC)        # April in UTC, March in NY
    with pytest.raises(Refused, match="a month"):
        await payments.pay(pool, fees, provider, holder_id=hid, purpose="inmate",
                           target=inmate, amount=1 * M, idem_key="m-2", token="tok_approve",
                           now=clock())
    clock.at = dt.datetime(2026, 4, 1, 4, 0, tzinfo=UTC)         # April in New York
    p = await payments.pay(pool, fees, provider, holder_id=hid, purpose="inmate", target=inmate,
                           amount=1 * M, idem_key="m-2", token="tok_approve", now=clock())
    assert p.state == "confirmed"
