"""Calendar bands, the holiday list, closed bands and spending ceilings: the pricing definition
and the deck, checked by hand on small tariffs (the properties file checks them at random)."""
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from rating import deck as decks
from rating.bulk import BulkError, price_many
from rating.calendar import Holiday
from rating.errors import DestinationClosed
from rating.jurisdiction import Jurisdiction
from rating.jurisdiction import JurisdictionClass as J
from rating.pricing import callable_seconds, ceiling_seconds, longest_call, price
from rating.tariff import ALL_DAYS, Band, CapAction, Line, PaymentType, Tariff, TariffVersion

from rating_helpers import JAN_2024, flat_line, one_version

LA = ZoneInfo("America/Los_Angeles")
NY = Jurisdiction(J.INTERSTATE, "+12125550123")
DEBIT = PaymentType.DEBIT


def at(*args) -> datetime:
    return datetime(*args, tzinfo=LA)


def with_holidays(*lines: Line, holidays=()) -> Tariff:
    return Tariff("riverside", "America/Los_Angeles",
                  (TariffVersion(1, JAN_2024, lines, holidays=holidays),))


DAY = flat_line("day", "interstate", 60_000)
EVENING = flat_line("evening", "interstate", 45_000, band=Band(0b11111, 19 * 3600, 0))
HOLIDAY = flat_line("holiday", "interstate", 30_000, band=Band(ALL_DAYS, 0, 1, ("holidays",)))
XMAS_EVE = flat_line("xmas-eve", "interstate", 40_000, band=Band(ALL_DAYS, 12 * 3600, 0,
                                                                 ("2024-12-24",)))
LIST = (Holiday("new-year", ("01-01",)), Holiday("founders", ("2024-07-05",)))


def test_a_holiday_on_the_list_is_priced_at_the_holiday_band_every_year():
    t = with_holidays(DAY, EVENING, HOLIDAY, holidays=LIST)
    for year in (2024, 2025, 2031):
        assert price(t, NY, DEBIT, at(year, 1, 1, 10), 60).line == "holiday"
        assert price(t, NY, DEBIT, at(year, 1, 2, 10), 60).line == "day"
    assert price(t, NY, DEBIT, at(2024, 7, 5, 20), 60).line == "holiday"    # weight 1 > evening
    assert price(t, NY, DEBIT, at(2025, 7, 5, 20), 60).line == "day"        # a one-off date


def test_a_call_into_a_holiday_is_split_at_midnight():
    t = with_holidays(DAY, EVENING, HOLIDAY, holidays=LIST)
    p = price(t, NY, DEBIT, at(2024, 12, 31, 23, 59), 120)                  # a Tuesday
    assert [(s.line, s.offset, s.billed_seconds) for s in p.spans] == [
        ("evening", 0, 60), ("holiday", 60, 60)]
    assert p.call_micros == 45_000 + 30_000


def test_on_equal_weight_a_later_weekly_start_beats_an_earlier_dated_one():
    t = with_holidays(DAY, EVENING, XMAS_EVE)
    assert price(t, NY, DEBIT, at(2024, 12, 24, 11), 60).line == "day"      # before noon
    assert price(t, NY, DEBIT, at(2024, 12, 24, 13), 60).line == "xmas-eve"
    assert price(t, NY, DEBIT, at(2024, 12, 24, 19, 30), 60).line == "evening"
    assert price(t, NY, DEBIT, at(2025, 12, 24, 13), 60).line == "day"      # only in 2024


WEEKDAYS = flat_line("weekdays", "interstate", 60_000, band=Band(0b11111, 0, 0))
WEEKEND_CLOSED = Line("weekend-closed", "interstate", PaymentType.ANY, Band(0b1100000, 0, 0), (),
                      closed=True)
NIGHT_CLOSED = Line("night-closed", "interstate", PaymentType.ANY, Band(0b11111, 22 * 3600, 0),
                    (), closed=True)


def test_a_weekday_only_plan_is_refused_on_the_weekend_and_not_before():
    t = one_version(WEEKDAYS, WEEKEND_CLOSED, NIGHT_CLOSED)
    with pytest.raises(DestinationClosed, match="weekend-closed"):
        price(t, NY, DEBIT, at(2024, 6, 8, 12), 60)                            # Saturday
    with pytest.raises(DestinationClosed, match="night-closed"):
        price(t, NY, DEBIT, at(2024, 6, 7, 22, 30), 0)                         # even for 0 s
    assert price(t, NY, DEBIT, at(2024, 6, 7, 21, 59), 60).call_micros == 60_000


def test_billed_time_into_a_closed_band_is_priced_by_the_line_before_it():
    t = one_version(WEEKDAYS, WEEKEND_CLOSED, NIGHT_CLOSED)
    p = price(t, NY, DEBIT, at(2024, 6, 7, 21, 59, 50), 10)                    # billed 60 s
    assert [(s.line, s.billed_seconds) for s in p.spans] == [("weekdays", 10), ("weekdays", 50)]
    assert p.call_micros == 60_000


def test_callable_seconds_run_until_the_next_closed_band():
    t = one_version(WEEKDAYS, WEEKEND_CLOSED, NIGHT_CLOSED)
    assert callable_seconds(t, NY, DEBIT, at(2024, 6, 7, 21, 50), 3600) == 600
    assert callable_seconds(t, NY, DEBIT, at(2024, 6, 7, 12), 3600) == 3600
    with pytest.raises(DestinationClosed):
        callable_seconds(t, NY, DEBIT, at(2024, 6, 9, 12), 3600)


def test_bulk_refuses_a_closed_start_with_its_own_code_and_prices_the_rest():
    t = one_version(WEEKDAYS, WEEKEND_CLOSED, NIGHT_CLOSED)
    starts = [at(2024, 6, 8, 12), at(2024, 6, 7, 21, 59, 50), at(2024, 6, 7, 12)]
    got = price_many(t, np.array([J.INTERSTATE.code] * 3), np.zeros(3, dtype=np.int64),
                     np.array([DEBIT.code] * 3),
                     np.array([int(s.timestamp()) * 1_000_000 for s in starts]),
                     np.array([60, 10, 61]))
    assert got.error.tolist() == [BulkError.DESTINATION_CLOSED, 0, 0]
    assert got.call_micros.tolist() == [0, 60_000, 60_000 + 6_000]


STOP = flat_line("capped", "interstate", 100_000, cost_cap_micros=500_000,
                 cap_action=CapAction.STOP, connect_micros=50_000)


def test_a_stop_ceiling_is_the_longest_call_its_amount_pays_for():
    t = one_version(STOP)
    # 0.05 connect + 0.10/min, first minute whole then 6 s steps: 4.5 minutes reach 0.50.
    assert ceiling_seconds(t, NY, DEBIT, at(2024, 6, 7, 12), 3600) == 270
    assert price(t, NY, DEBIT, at(2024, 6, 7, 12), 270).call_micros == 500_000
    assert price(t, NY, DEBIT, at(2024, 6, 7, 12), 271).call_micros == 500_000   # capped
    free = one_version(flat_line("capped", "interstate", 100_000, cost_cap_micros=500_000))
    assert ceiling_seconds(free, NY, DEBIT, at(2024, 6, 7, 12), 3600) == 3600


def _triple(x):
    return (x.seconds, x.total_micros, x.limited_by)


def test_the_longest_call_is_the_least_of_balance_ceiling_closure_and_horizon():
    t = one_version(STOP)
    assert _triple(longest_call(t, NY, DEBIT, at(2024, 6, 7, 12), 10_000_000, 3600)) == (
        270, 500_000, "ceiling")
    assert _triple(longest_call(t, NY, DEBIT, at(2024, 6, 7, 12), 150_000, 3600)) == (
        60, 150_000, "balance")
    assert longest_call(t, NY, DEBIT, at(2024, 6, 7, 12), 10_000_000, 120).limited_by == "horizon"
    closing = one_version(WEEKDAYS, WEEKEND_CLOSED, NIGHT_CLOSED)
    assert _triple(longest_call(closing, NY, DEBIT, at(2024, 6, 7, 21, 55), 10_000_000,
                           3600)) == (
        300, 300_000, "closure")


CAL_DECK = """\
kind,line,destination,payment,days,start,weight,from_second,price,per_seconds,increment,dates
rate,weekdays,interstate,any,mon-fri,00:00,0,0,0.06,60,60,
closed,weekend,interstate,any,"sat,sun",00:00,0,,,,,
rate,holiday,interstate,any,,00:00,1,0,0.03,60,60,"holidays, 2024-12-24"
holiday,new-year,,,,,,,,,,01-01
holiday,founders,,,,,,,,,,2024-07-05
"""


def test_a_deck_says_calendar_bands_closed_bands_and_holidays_and_exports_them_again():
    d = decks.parse(CAL_DECK)
    assert [(l.name, l.closed, l.band.dates) for l in d.lines] == [
        ("weekdays", False, ()), ("weekend", True, ()),
        ("holiday", False, ("holidays", "2024-12-24"))]
    assert d.holidays == LIST
    text = decks.write(d.lines, d.surcharges, d.holidays, d.parent)
    again = decks.parse(text)
    assert (again.lines, again.holidays) == (d.lines, d.holidays)
    assert decks.write(again.lines, again.surcharges, again.holidays) == text
    t = Tariff("f", "America/Los_Angeles",
               (TariffVersion(1, JAN_2024, d.lines, holidays=d.holidays),))
    assert price(t, NY, DEBIT, at(2028, 1, 1, 9), 60).line == "holiday"      # a Saturday


def test_a_closed_band_has_one_row_and_no_rates():
    bad = CAL_DECK.replace('closed,weekend,interstate,any,"sat,sun",00:00,0,,,,,',
                           'closed,weekend,interstate,any,"sat,sun",00:00,0,,0.01,,,')
    with pytest.raises(decks.DeckError) as e:
        decks.parse(bad)
    assert [(x.line, x.column, x.code) for x in e.value.errors] == [(3, "price", "not_used")]
