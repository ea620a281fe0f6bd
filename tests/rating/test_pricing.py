"""Worked examples of the pricing definition, each checked by hand to the micro-unit."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from rating.errors import NoTariffInForce, UnauthorizedDestination
from rating.jurisdiction import Jurisdiction
from rating.jurisdiction import JurisdictionClass as J
from rating.pricing import (affordable_seconds, half_up, period_micros, price, rate_at,
                            round_total, select_line)
from rating.tariff import (ALL_DAYS, Band, Line, PaymentType, RateGroup, Rounding, Surcharge,
                           SurchargeKind, Tariff, TariffVersion)
from rating_helpers import JAN_2024, flat_line, one_version

LA = ZoneInfo("America/Los_Angeles")
DEBIT, PREPAID = PaymentType.DEBIT, PaymentType.PREPAID
MON_FRI = 0b0011111
NY_NUMBER = Jurisdiction(J.INTERSTATE, "+12125550123")


def la(*args) -> datetime:
    return datetime(*args, tzinfo=LA)


def spans(p):
    return [(s.offset, s.billed_seconds, s.line, s.from_second, s.amount_micros) for s in p.spans]


DAY_EVENING = one_version(flat_line("day", "interstate", 60_000),
                          flat_line("evening", "interstate", 30_000, band=Band(MON_FRI, 19 * 3600)))


def test_first_minute_is_one_block_then_six_second_increments():
    p = price(DAY_EVENING, NY_NUMBER, DEBIT, la(2024, 6, 3, 10), 61)
    assert p.billed_seconds == 66
    assert spans(p) == [(0, 60, "day", 0, 60_000), (60, 6, "day", 60, 6_000)]
    assert p.total_micros == 66_000
    assert price(DAY_EVENING, NY_NUMBER, DEBIT, la(2024, 6, 3, 10), 1).total_micros == 60_000


def test_a_call_is_split_where_the_evening_band_starts():
    p = price(DAY_EVENING, NY_NUMBER, DEBIT, la(2024, 6, 3, 18, 59, 30), 120)   # a Monday
    assert spans(p) == [(0, 30, "day", 0, 30_000), (30, 30, "evening", 0, 15_000),
                        (60, 60, "evening", 60, 30_000)]
    assert p.line == "day" and p.call_micros == 75_000


def test_the_evening_band_does_not_apply_at_the_weekend_but_midnight_still_splits():
    p = price(DAY_EVENING, NY_NUMBER, DEBIT, la(2024, 6, 8, 23, 59, 30), 120)   # a Saturday
    assert spans(p) == [(0, 30, "day", 0, 30_000), (30, 30, "day", 0, 30_000),
                        (60, 60, "day", 60, 60_000)]


def test_a_call_is_split_where_the_clock_springs_forward_and_a_skipped_band_starts_then():
    early = flat_line("early", "interstate", 30_000, band=Band(ALL_DAYS, 2 * 3600 + 1800, 1))
    tariff = one_version(flat_line("day", "interstate", 60_000), early)
    p = price(tariff, NY_NUMBER, DEBIT, la(2024, 3, 10, 1, 59, 30), 120)   # 02:00 PST -> 03:00 PDT
    assert spans(p) == [(0, 30, "day", 0, 30_000), (30, 30, "early", 0, 15_000),
                        (60, 60, "early", 60, 30_000)]


def test_a_call_is_split_where_a_new_version_takes_effect():
    dearer = TariffVersion(2, datetime(2024, 6, 4, 12, tzinfo=timezone.utc),
                           (flat_line("day", "interstate", 120_000),))
    tariff = Tariff("riverside", "America/Los_Angeles",
                    DAY_EVENING.versions + (dearer,))
    p = price(tariff, NY_NUMBER, DEBIT, datetime(2024, 6, 4, 11, 59, tzinfo=timezone.utc), 120)
    assert [(s.version, s.amount_micros) for s in p.spans] == [(1, 60_000), (2, 120_000)]
    assert p.version == 1
    with pytest.raises(NoTariffInForce):
        price(tariff, NY_NUMBER, DEBIT, datetime(2023, 12, 31, tzinfo=timezone.utc), 60)


def test_band_with_the_higher_weight_wins_and_ties_go_to_the_later_start():
    lines = (flat_line("base", "interstate", 60_000),
             flat_line("heavy-early", "interstate", 50_000, band=Band(ALL_DAYS, 8 * 3600, 5)),
             flat_line("light-late", "interstate", 40_000, band=Band(ALL_DAYS, 12 * 3600, 0)),
             flat_line("heavy-late", "interstate", 30_000, band=Band(ALL_DAYS, 20 * 3600, 5)))
    tariff = one_version(*lines)
    at = {h: select_line(tariff, J.INTERSTATE, DEBIT, la(2024, 6, 5, h)).name for h in (7, 9, 13, 21)}
    assert at == {7: "base", 9: "heavy-early", 13: "heavy-early", 21: "heavy-late"}


def test_rates_are_exact_micro_units_rounded_half_up_once_per_span():
    tariff = one_version(Line("x", "interstate", PaymentType.ANY, Band(),
                              (RateGroup(0, 130_000, 60, 1),)))
    assert price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 7).call_micros == 15_167  # 15166.67
    assert price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 420).call_micros == 910_000
    assert half_up(5, 2) == 3 and half_up(4, 3) == 1 and half_up(0, 7) == 0


@pytest.mark.parametrize("method,expected", [(Rounding.UP, 20_000), (Rounding.HALF_UP, 20_000),
                                             (Rounding.DOWN, 10_000)])
def test_the_call_total_is_rounded_by_the_line_method(method, expected):
    tariff = one_version(Line("x", "interstate", PaymentType.ANY, Band(),
                              (RateGroup(0, 130_000, 60, 1),), rounding=method, decimals=2))
    p = price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 7)
    assert (p.call_micros, p.adjustment_micros) == (expected, expected - 15_167)
    assert round_total(15_000, Rounding.HALF_UP, 2) == 20_000
    assert round_total(14_999, Rounding.HALF_UP, 2) == 10_000


def test_the_cost_cap_limits_the_call_charge():
    tariff = one_version(flat_line("x", "interstate", 130_000, cost_cap_micros=500_000))
    p = price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 3600)
    assert p.call_micros == 500_000 and p.adjustment_micros == 500_000 - 7_800_000


def test_connect_fee_on_the_first_slice_only_and_a_zero_length_call_is_free():
    tariff = one_version(flat_line("x", "interstate", 60_000, connect_micros=500_000))
    assert price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 0).total_micros == 0
    p = price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 8, 23, 59), 180)     # crosses midnight
    assert p.connect_micros == 500_000 and p.call_micros == 500_000 + 180_000


def test_a_short_call_is_billed_the_minimum():
    tariff = one_version(Line("x", "interstate", PaymentType.ANY, Band(),
                              (RateGroup(0, 60_000, 60, 1),), minimum_seconds=60))
    p = price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 10)
    assert (p.billed_seconds, p.call_micros) == (60, 60_000)
    assert [(s.seconds, s.billed_seconds) for s in p.spans] == [(10, 60)]


def test_taxes_and_fees_are_itemized_apart_from_the_call_charge():
    tariff = one_version(
        flat_line("x", "interstate", 210_000),
        surcharges=(Surcharge(SurchargeKind.TAX, "usf", "interstate", percent_ppm=55_000),
                    Surcharge(SurchargeKind.FEE, "per-minute", "*", price_micros=10_000,
                              per_seconds=60),
                    Surcharge(SurchargeKind.TAX, "uk-only", "+44", percent_ppm=200_000)))
    p = price(tariff, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), 61)
    assert p.call_micros == 231_000
    assert [(i.kind, i.name, i.amount_micros) for i in p.surcharges] == [
        ("tax", "usf", 12_705), ("fee", "per-minute", 11_000)]
    assert p.total_micros == 231_000 + 12_705 + 11_000


def test_a_destination_no_line_covers_is_unauthorized_never_free():
    with pytest.raises(UnauthorizedDestination, match="unauthorized destination"):
        price(DAY_EVENING, Jurisdiction(J.INTERNATIONAL, "+442079460018"), DEBIT,
              la(2024, 6, 5, 10), 60)
    with pytest.raises(UnauthorizedDestination):          # even a call of no length
        price(DAY_EVENING, J.INTERNATIONAL, DEBIT, la(2024, 6, 5, 10), 0)


def test_the_longest_prefix_wins_over_the_class_but_never_opens_a_refused_class():
    tariff = one_version(flat_line("interstate", "interstate", 60_000),
                         flat_line("nanp", "+1", 90_000), flat_line("nyc", "+1212", 20_000))
    at = la(2024, 6, 5, 10)
    assert price(tariff, NY_NUMBER, DEBIT, at, 60).line == "nyc"
    assert price(tariff, Jurisdiction(J.INTERSTATE, "+13105550123"), DEBIT, at, 60).line == "nanp"
    with pytest.raises(UnauthorizedDestination):
        price(tariff, Jurisdiction(J.TOLL_FREE, "+18005550100"), DEBIT, at, 60)
    assert price(tariff, J.INTERSTATE, DEBIT, at, 60).line == "interstate"


def test_a_line_for_the_payment_type_wins_over_one_for_any():
    tariff = one_version(flat_line("any", "interstate", 60_000),
                         flat_line("debit", "interstate", 50_000, payment=DEBIT))
    at = la(2024, 6, 5, 10)
    assert price(tariff, NY_NUMBER, DEBIT, at, 60).call_micros == 50_000
    assert price(tariff, NY_NUMBER, PREPAID, at, 60).call_micros == 60_000


def test_the_affordable_duration_includes_increments_and_taxes():
    tariff = one_version(flat_line("x", "interstate", 60_000))
    at = la(2024, 6, 5, 10)
    assert affordable_seconds(tariff, NY_NUMBER, DEBIT, at, 100_000, 3600) == 96
    assert affordable_seconds(tariff, NY_NUMBER, DEBIT, at, 59_999, 3600) == 0
    assert affordable_seconds(tariff, NY_NUMBER, DEBIT, at, 10**9, 900) == 900
    taxed = one_version(flat_line("x", "interstate", 60_000),
                        surcharges=(Surcharge(SurchargeKind.TAX, "t", percent_ppm=100_000),))
    assert affordable_seconds(taxed, NY_NUMBER, DEBIT, at, 100_000, 3600) == 90   # 90 s: 99 000


def test_billing_periods_are_differences_of_totals():
    at = la(2024, 6, 3, 18, 58)
    first = period_micros(DAY_EVENING, NY_NUMBER, DEBIT, at, 0, 60)
    second = period_micros(DAY_EVENING, NY_NUMBER, DEBIT, at, 60, 120)
    third = period_micros(DAY_EVENING, NY_NUMBER, DEBIT, at, 120, 150)
    assert (first, second, third) == (60_000, 60_000, 15_000)
    assert first + second + third == price(DAY_EVENING, NY_NUMBER, DEBIT, at, 150).total_micros


def test_the_announced_rate_is_per_minute_of_the_line_in_force():
    r = rate_at(DAY_EVENING, NY_NUMBER, DEBIT, la(2024, 6, 3, 20))
    assert (r.line, r.first_minute_micros, r.per_minute_micros) == (
        "evening", 30_000, ((0, 30_000), (60, 30_000)))
    odd = one_version(Line("x", "interstate", PaymentType.ANY, Band(),
                           (RateGroup(0, 1_000, 7, 7),)))
    assert rate_at(odd, NY_NUMBER, DEBIT, la(2024, 6, 3, 20)).first_minute_micros == 8_571


def test_a_negative_duration_is_misuse():
    with pytest.raises(ValueError):
        price(DAY_EVENING, NY_NUMBER, DEBIT, la(2024, 6, 5, 10), -1)
    with pytest.raises(ValueError, match="no time zone"):
        price(DAY_EVENING, NY_NUMBER, DEBIT, datetime(2024, 6, 5, 10), 60)
    assert JAN_2024.tzinfo is timezone.utc
