"""Fees per regulatory profile, as a table (invariant F3): none under the 2024+ rules; under the
older profiles the operator's fee up to the cap, a third party's fee passed through exactly,
paper statements capped, electronic ones free. The last test runs it on the real database, through
the profile of the facility a number is a contact of."""
from __future__ import annotations

import dataclasses

import pytest

from families.fees import Channel, FeeError, fee_for, load_schedules
from families.payments import Fees, quote_prepaid
from families.settings import DEPOSIT_MAX_FLOOR_MICROS, FamilySettings, SettingsInvalid
from rating.profiles import load_profiles
from switch.provisioning import directory

M = 1_000_000
SCHEDULES = load_schedules(load_profiles())
HIGH = FamilySettings(automated_fee=9 * M, live_agent_fee=9 * M, paper_statement_fee=9 * M)
LOW = FamilySettings(automated_fee=1 * M, live_agent_fee=2 * M, paper_statement_fee=500_000)

# profile, channel, operator's settings, third party's fee -> the fee charged
TABLE = [
    ("fcc-2013", Channel.AUTOMATED, HIGH, None, 3_000_000),
    ("fcc-2013", Channel.LIVE_AGENT, HIGH, None, 5_950_000),
    ("fcc-2013", Channel.PAPER_STATEMENT, HIGH, None, 2_000_000),
    ("fcc-2013", Channel.ELECTRONIC_STATEMENT, HIGH, None, 0),
    ("fcc-2013", Channel.THIRD_PARTY, HIGH, 11_950_000, 11_950_000),
    ("fcc-2013", Channel.AUTOMATED, LOW, None, 1_000_000),
    ("fcc-2013", Channel.LIVE_AGENT, LOW, None, 2_000_000),
    ("fcc-2013", Channel.PAPER_STATEMENT, LOW, None, 500_000),
    ("fcc-2021", Channel.AUTOMATED, HIGH, None, 3_000_000),
    ("fcc-2021", Channel.LIVE_AGENT, HIGH, None, 5_950_000),
    ("fcc-2021", Channel.PAPER_STATEMENT, HIGH, None, 2_000_000),
    ("fcc-2021", Channel.ELECTRONIC_STATEMENT, HIGH, None, 0),
    ("fcc-2021", Channel.THIRD_PARTY, LOW, 4_990_000, 4_990_000),
    ("fcc-2024", Channel.AUTOMATED, HIGH, None, 0),
    ("fcc-2024", Channel.LIVE_AGENT, HIGH, None, 0),
    ("fcc-2024", Channel.PAPER_STATEMENT, HIGH, None, 0),
    ("fcc-2024", Channel.ELECTRONIC_STATEMENT, HIGH, None, 0),
    ("fcc-2024", Channel.THIRD_PARTY, HIGH, 0, 0),
    ("fcc-2025", Channel.AUTOMATED, HIGH, None, 0),
    ("fcc-2025", Channel.LIVE_AGENT, LOW, None, 0),
    ("fcc-2025", Channel.PAPER_STATEMENT, LOW, None, 0),
]


@pytest.mark.parametrize("profile,channel,settings,third,want", TABLE,
                         ids=[f"{r[0]}-{r[1].value}-{r[4]}" for r in TABLE])
def test_fee_per_profile_and_channel(profile, channel, settings, third, want):
    assert fee_for(SCHEDULES[profile], channel, settings, third_party_fee=third).amount == want


@pytest.mark.parametrize("profile", ["fcc-2024", "fcc-2025"])
def test_a_third_party_fee_cannot_be_passed_on_where_fees_are_prohibited(profile):
    with pytest.raises(FeeError) as e:
        fee_for(SCHEDULES[profile], Channel.THIRD_PARTY, HIGH, third_party_fee=1)
    assert e.value.field == "third_party_fee"


def test_a_third_party_payment_needs_the_third_partys_fee():
    with pytest.raises(FeeError, match="third party's own fee"):
        fee_for(SCHEDULES["fcc-2013"], Channel.THIRD_PARTY, HIGH)


def test_a_schedule_charging_fees_under_a_profile_that_forbids_them_is_refused(tmp_path):
    profiles = load_profiles()
    (tmp_path / "fcc-2024.toml").write_text(
        'profile = "fcc-2024"\nautomated_payment_max = "1.00"\n')
    with pytest.raises(FeeError, match="forbids ancillary fees"):
        load_schedules({"fcc-2024": profiles["fcc-2024"]}, tmp_path)


def test_a_profile_allowing_fees_needs_a_schedule(tmp_path):
    with pytest.raises(FeeError, match="no fee schedule"):
        load_schedules({"fcc-2013": load_profiles()["fcc-2013"]}, tmp_path)


def test_the_per_payment_cap_may_not_be_set_below_fifty():
    with pytest.raises(SettingsInvalid, match="at least 50.00"):
        FamilySettings(deposit_max=DEPOSIT_MAX_FLOOR_MICROS - 1)
    assert FamilySettings(deposit_max=DEPOSIT_MAX_FLOOR_MICROS).deposit_max == 50 * M


async def test_a_numbers_fee_comes_from_the_profile_of_its_facility(pool, world):
    fees = Fees(HIGH, SCHEDULES)
    want = {"fcc-2013": 3 * M, "fcc-2021": 3 * M, "fcc-2024": 0, "fcc-2025": 0}
    async with pool.acquire() as conn:
        for i, (profile, amount) in enumerate(want.items()):
            number = f"+1212555017{i}"
            await directory.add_contact(conn, world[profile][1], number, status="approved")
            fee = await quote_prepaid(conn, fees, number)
            assert (fee.amount, fee.profile) == (amount, profile)


async def test_a_number_called_from_several_profiles_gets_the_kindest(pool, world):
    fees = Fees(HIGH, SCHEDULES)
    async with pool.acquire() as conn:
        await directory.add_contact(conn, world["fcc-2013"][1], "+12125550178", status="approved")
        assert (await quote_prepaid(conn, fees, "+12125550178")).amount == 3 * M
        await directory.add_contact(conn, world["fcc-2024"][1], "+12125550178",
                                    status="requested")
        fee = await quote_prepaid(conn, fees, "+12125550178")
    assert (fee.amount, fee.profile) == (0, "fcc-2024")


async def test_a_number_no_facility_calls_gets_the_default_profile(pool, world):
    async with pool.acquire() as conn:
        older = Fees(dataclasses.replace(HIGH, default_profile="fcc-2021"), SCHEDULES)
        assert (await quote_prepaid(conn, older, "+12125550179")).amount == 3 * M
        assert (await quote_prepaid(conn, Fees(HIGH, SCHEDULES), "+12125550179")).amount == 0
