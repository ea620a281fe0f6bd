"""Regulatory profiles as data, the facility tiers, and the check of a tariff against its caps."""
import dataclasses

import pytest

from rating import deck as decks
from rating.profiles import ProfileError, check, fifteen_minute_prices, load_profile, load_profiles
from rating.tariff import PaymentType, Rounding, Surcharge, SurchargeKind, Tariff, TariffVersion
from rating_helpers import JAN_2024, RIVERSIDE, flat_line, one_version

PROFILES = load_profiles()


def facility(kind: str, adp: int, profile: str):
    return dataclasses.replace(RIVERSIDE, kind=kind, adp=adp, profile=profile)


@pytest.mark.parametrize("profile,kind,adp,tier,cap_debit,cap_collect", [
    ("fcc-2013", "jail", 40, "all facilities", 210_000, 250_000),
    ("fcc-2021", "prison", 5000, "prison", 140_000, 140_000),      # 0.12 + 0.02 site commission
    ("fcc-2021", "jail", 1000, "large jail", 160_000, 160_000),
    ("fcc-2021", "jail", 999, "smaller jail", 210_000, 210_000),
    ("fcc-2024", "prison", 20, "prison", 60_000, 60_000),
    ("fcc-2024", "jail", 1000, "large jail", 60_000, 60_000),
    ("fcc-2024", "jail", 350, "medium jail", 70_000, 70_000),
    ("fcc-2024", "jail", 349, "small jail", 90_000, 90_000),
    ("fcc-2024", "jail", 99, "very small jail", 120_000, 120_000),
    ("fcc-2025", "prison", 800, "prison", 130_000, 130_000),       # 0.11 + 0.02 facility costs
    ("fcc-2025", "jail", 1500, "large jail", 120_000, 120_000),
    ("fcc-2025", "jail", 500, "medium jail", 140_000, 140_000),
    ("fcc-2025", "jail", 100, "small jail", 150_000, 150_000),
    ("fcc-2025", "jail", 50, "very small jail", 170_000, 170_000),
    ("fcc-2025", "jail", 49, "extremely small jail", 210_000, 210_000),
])
def test_a_facility_falls_in_its_tier_by_kind_and_population(profile, kind, adp, tier,
                                                             cap_debit, cap_collect):
    t = PROFILES[profile].tier_for(facility(kind, adp, profile))
    assert (t.name, t.cap(PaymentType.DEBIT), t.cap(PaymentType.COLLECT)) == (
        tier, cap_debit, cap_collect)


def test_every_profile_keeps_its_source_and_forbids_connect_charges():
    assert set(PROFILES) == {"fcc-2013", "fcc-2021", "fcc-2024", "fcc-2025"}
    for p in PROFILES.values():
        assert "WC Docket" in p.source and not p.connect_fee_allowed


def test_the_demo_deck_is_legal_for_the_demo_facility(demo_deck_text):
    d = decks.parse(demo_deck_text)
    tariff = Tariff("riverside", RIVERSIDE.time_zone,
                    (TariffVersion(1, JAN_2024, d.lines, d.surcharges),))
    assert check(PROFILES["fcc-2024"], RIVERSIDE, tariff) == []


def test_a_rate_above_the_tier_cap_is_a_violation_naming_line_field_value_and_cap():
    tariff = one_version(flat_line("inter", "interstate", 70_000))
    (v, *rest) = check(PROFILES["fcc-2024"], RIVERSIDE, tariff)
    assert (v.line, v.field, v.value, v.cap, v.profile) == (
        "inter", "price", "0.07/min", "0.06/min", "fcc-2024")
    medium = facility("jail", 500, "fcc-2024")
    assert check(PROFILES["fcc-2024"], medium, tariff) == []


def test_an_additive_raises_the_cap_by_exactly_its_amount():
    assert check(PROFILES["fcc-2025"], facility("jail", 1500, "fcc-2025"),
                 one_version(flat_line("x", "intrastate", 120_000))) == []
    assert [v.field for v in check(PROFILES["fcc-2025"], facility("jail", 1500, "fcc-2025"),
                                   one_version(flat_line("x", "intrastate", 120_001)))] \
        == ["price", "price"]       # both rate groups of the line


def test_old_orders_cap_interstate_calls_only_and_collect_differently():
    dear_local = one_version(flat_line("local", "local", 500_000),
                             flat_line("inter", "interstate", 250_000, payment=PaymentType.COLLECT),
                             flat_line("inter-any", "interstate", 210_000))
    assert check(PROFILES["fcc-2013"], facility("jail", 10, "fcc-2013"), dear_local) == []
    dear_debit = one_version(flat_line("inter", "interstate", 250_000, payment=PaymentType.DEBIT),
                             flat_line("inter-any", "interstate", 210_000))
    assert {(v.line, v.field, v.cap) for v in check(
        PROFILES["fcc-2013"], facility("jail", 10, "fcc-2013"), dear_debit)} == {
        ("inter", "price", "0.21/min")}


def test_connect_fees_long_minimums_blocks_and_provider_fees_are_violations():
    tariff = one_version(flat_line("inter", "interstate", 10_000, connect_micros=1,
                                   minimum_seconds=120),
                         surcharges=(Surcharge(SurchargeKind.FEE, "convenience", "*",
                                               percent_ppm=10_000),
                                     Surcharge(SurchargeKind.TAX, "usf", "*", percent_ppm=10_000)))
    fields = sorted(v.field for v in check(PROFILES["fcc-2024"], RIVERSIDE, tariff))
    assert fields == ["connect_fee", "kind", "minimum_seconds"]
    assert sorted(v.field for v in check(PROFILES["fcc-2013"], facility("jail", 5, "fcc-2013"),
                                         tariff)) == ["connect_fee", "minimum_seconds"]


def test_rounding_that_makes_a_15_minute_call_dearer_than_the_cap_is_a_violation():
    tariff = one_version(flat_line("inter", "interstate", 60_000, rounding=Rounding.UP,
                                   decimals=0))
    found = check(PROFILES["fcc-2024"], RIVERSIDE, tariff)
    assert {(v.field, v.cap) for v in found} == {("15-minute call", "0.9")}
    assert "interstate/debit 1" in {v.value for v in found} and len(found) == 3


def test_fifteen_minute_prices_per_jurisdiction_and_payment_type(demo_deck_text):
    d = decks.parse(demo_deck_text)
    tariff = Tariff("riverside", RIVERSIDE.time_zone,
                    (TariffVersion(1, JAN_2024, d.lines, d.surcharges),))
    from datetime import datetime, timezone
    table = fifteen_minute_prices(tariff, datetime(2024, 6, 5, 17, tzinfo=timezone.utc))
    inter = table[(__import__("rating.jurisdiction").jurisdiction.JurisdictionClass.INTERSTATE,
                   PaymentType.DEBIT)]
    assert (inter.call_micros, inter.tax_micros) == (900_000, 31_500)
    assert len(table) == 12


def test_a_profile_file_with_a_bad_figure_names_the_file_and_key(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\nsource = "WC Docket"\njurisdictions = ["interstate"]\n'
                   '[[tier]]\nper_minute = 0.21\n')
    with pytest.raises(ProfileError, match=r"x.toml: tier\[0\].per_minute"):
        load_profile(bad)
    bad.write_text('name = "x"\nsource = "s"\njurisdictions = ["interstate"]\ncolour = 1\n')
    with pytest.raises(ProfileError, match="unknown key colour"):
        load_profile(bad)
