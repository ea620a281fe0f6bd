"""`pricing.totals`, the price totals of a range of durations in one walk, is `price` of each
duration: over random tariffs (band changes, midnight, daylight-saving changes, rate groups,
minimums, increments, rounding, caps, surcharges, versions) and ranges anywhere in a call."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating.errors import RatingRefusal
from rating.pricing import price, totals
from rating.jurisdiction import JurisdictionClass as J
from rating.tariff import PaymentType
from rating_helpers import flat_line, one_version
from rating_strategies import calls, tariffs

SETTINGS = settings(max_examples=int(__import__("os").environ.get("RATING_EXAMPLES", 60)),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _each(tariff, j, pay, start, first, last):
    out = []
    for d in range(first, last + 1):
        p = price(tariff, j, pay, start, d)
        out.append((p.call_micros, p.tax_micros))
    return out


@SETTINGS
@given(st.data())
def test_the_totals_of_a_range_are_the_price_of_every_duration_in_it(data):
    tariff, window = data.draw(tariffs())
    j, pay, start, seconds = data.draw(calls(window, tariff))
    first = data.draw(st.integers(0, seconds))
    last = first + data.draw(st.integers(0, 150))
    try:
        expected = _each(tariff, j, pay, start, first, last)
    except RatingRefusal as e:
        # A range raises as the price of its longest call does (a refusal met past `first`).
        with pytest.raises(type(e)):
            price(tariff, j, pay, start, last)
        with pytest.raises(type(e)):
            totals(tariff, j, pay, start, first, last)
        return
    assert totals(tariff, j, pay, start, first, last) == expected


@SETTINGS
@given(st.data())
def test_a_call_s_seconds_one_at_a_time_are_its_totals_from_zero(data):
    """What a live call with 1 s periods asks for: every second from the start."""
    tariff, window = data.draw(tariffs())
    j, pay, start, _ = data.draw(calls(window, tariff))
    last = data.draw(st.integers(0, 400))
    try:
        expected = _each(tariff, j, pay, start, 0, last)
    except RatingRefusal:
        return
    assert totals(tariff, j, pay, start, 0, last) == expected
    assert [totals(tariff, j, pay, start, d, d)[0] for d in range(last + 1)] == expected


def test_a_range_runs_forward_from_zero():
    tariff = one_version(flat_line("local", "local", 60_000))
    at = datetime(2024, 6, 1, tzinfo=timezone.utc)
    assert totals(tariff, J.LOCAL, PaymentType.PREPAID, at, 0, 61) == \
        [(0, 0)] + [(60_000, 0)] * 60 + [(66_000, 0)]
    for first, last in ((-1, 3), (5, 4)):
        with pytest.raises(ValueError):
            totals(tariff, J.LOCAL, PaymentType.PREPAID, at, first, last)
