"""Properties of the one pricing definition, over random tariffs and calls that cross band
changes, local midnight, daylight-saving changes, rate-group starts and versions."""
from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating import deck as decks
from rating import bulk
from rating.bulk import BulkError, e164_digits, price_many
from rating.errors import DestinationClosed, NoTariffInForce, UnauthorizedDestination
from rating.pricing import affordable_seconds, period_micros, price, total_micros
from rating_strategies import calls, tariffs, versions

SETTINGS = settings(max_examples=int(__import__("os").environ.get("RATING_EXAMPLES", 60)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _scalar(tariff, call):
    j, pay, start, seconds = call
    try:
        p = price(tariff, j, pay, start, seconds)
    except UnauthorizedDestination:
        return (BulkError.UNAUTHORIZED_DESTINATION, 0, 0, 0, 0, 0, 0)
    except NoTariffInForce:
        return (BulkError.NO_TARIFF_IN_FORCE, 0, 0, 0, 0, 0, 0)
    except DestinationClosed:
        return (BulkError.DESTINATION_CLOSED, 0, 0, 0, 0, 0, 0)
    assert p.call_micros + p.tax_micros == p.total_micros
    assert p.connect_micros + sum(s.amount_micros for s in p.spans) + p.adjustment_micros \
        == p.call_micros
    assert sum(s.billed_seconds for s in p.spans) == p.billed_seconds
    assert sum(s.seconds for s in p.spans) == min(seconds, p.billed_seconds)
    return (BulkError.NONE, p.billed_seconds, p.connect_micros, p.call_micros, p.tax_micros,
            p.total_micros, p.version)


@SETTINGS
@given(st.data())
def test_bulk_pricing_equals_the_scalar_price_of_every_call(data):
    tariff, window = data.draw(tariffs())
    batch = data.draw(st.lists(calls(window, tariff), min_size=1, max_size=40))
    _check_bulk_against_scalar(tariff, batch)


@SETTINGS
@given(st.data())
def test_bulk_pricing_in_small_chunks_and_by_search_equals_the_scalar_price(data):
    """The chunk boundaries, and the search that replaces the dense line table when a deck's
    band starts would make it too big, change nothing."""
    tariff, window = data.draw(tariffs())
    batch = data.draw(st.lists(calls(window, tariff), min_size=1, max_size=40))
    dense_max = data.draw(st.sampled_from((0, bulk.DENSE_ENTRIES_MAX)))
    with mock.patch.object(bulk, "CHUNK_CALLS", data.draw(st.integers(1, 7))), \
            mock.patch.object(bulk, "DENSE_ENTRIES_MAX", dense_max):
        _check_bulk_against_scalar(tariff, batch)


def _check_bulk_against_scalar(tariff, batch):
    got = price_many(tariff,
                     np.array([j.kind.code for j, _, _, _ in batch]),
                     e164_digits([j.e164 for j, _, _, _ in batch]),
                     np.array([p.code for _, p, _, _ in batch]),
                     np.array([s for _, _, s, _ in batch], dtype=np.int64),
                     np.array([d for _, _, _, d in batch], dtype=np.int64))
    for i, call in enumerate(batch):
        row = (got.error[i], got.billed_seconds[i], got.connect_micros[i], got.call_micros[i],
               got.tax_micros[i], got.total_micros[i], got.version[i])
        assert tuple(int(x) for x in row) == _scalar(tariff, call), (i, call)


@SETTINGS
@given(st.data())
def test_the_total_never_decreases_as_the_call_goes_on(data):
    tariff, window = data.draw(tariffs())
    j, pay, start, _ = data.draw(calls(window, tariff))
    length = data.draw(st.integers(1, 3000))
    try:
        totals = [total_micros(tariff, j, pay, start, d) for d in range(length)]
    except (UnauthorizedDestination, NoTariffInForce, DestinationClosed):
        return
    assert totals[0] == 0
    assert all(a <= b for a, b in zip(totals, totals[1:]))
    far = sorted(data.draw(st.lists(st.integers(length, 40 * 3600), max_size=8)))
    try:
        more = [total_micros(tariff, j, pay, start, d) for d in far]
    except UnauthorizedDestination:      # a later version may drop the destination mid-call
        return
    assert all(a <= b for a, b in zip([totals[-1]] + more, more))


@SETTINGS
@given(st.data())
def test_billing_periods_add_up_to_the_price_of_the_whole_call(data):
    tariff, window = data.draw(tariffs())
    j, pay, start, seconds = data.draw(calls(window, tariff))
    period = data.draw(st.sampled_from((6, 30, 60, 300)))
    try:
        whole = total_micros(tariff, j, pay, start, seconds)
        cuts = list(range(0, seconds, period)) + [seconds]
        parts = [period_micros(tariff, j, pay, start, a, b) for a, b in zip(cuts, cuts[1:])]
    except (UnauthorizedDestination, NoTariffInForce, DestinationClosed):
        return
    assert all(p >= 0 for p in parts)
    assert sum(parts) == whole


@SETTINGS
@given(st.data())
def test_the_affordable_duration_is_the_longest_the_balance_pays_for(data):
    tariff, window = data.draw(tariffs())
    j, pay, start, _ = data.draw(calls(window, tariff))
    available = data.draw(st.integers(0, 5_000_000))
    seconds_max = data.draw(st.integers(0, 4 * 3600))
    try:
        a = affordable_seconds(tariff, j, pay, start, available, seconds_max)
    except (UnauthorizedDestination, NoTariffInForce, DestinationClosed):
        return
    assert 0 <= a <= seconds_max
    assert total_micros(tariff, j, pay, start, a) <= available
    if a < seconds_max:
        assert total_micros(tariff, j, pay, start, a + 1) > available


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_an_exported_deck_imports_to_the_same_version_and_exports_identically(data):
    from datetime import datetime, timezone
    v = data.draw(versions(1, datetime(2024, 1, 1, tzinfo=timezone.utc)))
    text = decks.write(v.lines, v.surcharges, v.holidays, v.parent)
    back = decks.parse(text)
    assert (back.lines, back.surcharges, back.holidays) == (v.lines, v.surcharges, v.holidays)
    assert decks.write(back.lines, back.surcharges, back.holidays, back.parent) == text


# -- calendar bands, closed bands, ceilings -----------------------------------------------------
def _naive_line(version, selector_line, at_us: int, zone: str):
    """The band rule read off the deck, instant by instant, with no tables: among the lines of the
    selector active at the local time (weekly bands on that weekday, dated bands on that date,
    the holiday list expanded), the highest (weight, start)."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from rating.calendar import day_number, expand, on_day
    local = datetime.fromtimestamp(at_us / 1_000_000, timezone.utc).astimezone(ZoneInfo(zone))
    t = local.hour * 3600 + local.minute * 60 + local.second
    day = day_number(local.date())
    active = []
    for line in version.lines:
        if (line.destination, line.payment) != (selector_line.destination, selector_line.payment):
            continue
        b = line.band
        today = (on_day(expand(b.dates, version.holidays), day) if b.dates
                 else b.on(local.weekday()))
        if today and b.start <= t:
            active.append((b.weight, b.start, line.name))
    return max(active)[2]


@SETTINGS
@given(st.data())
def test_the_line_in_force_follows_the_band_rule_on_every_date(data):
    from rating.pricing import select_line
    tariff, window = data.draw(tariffs())
    if tariff.plans:
        return                          # fallbacks are compared with bulk pricing above
    j, pay, start, _ = data.draw(calls(window, tariff))
    try:
        line = select_line(tariff, j, pay, start)
    except (UnauthorizedDestination, NoTariffInForce):
        return
    version = tariff.version_at(__import__("rating.clock", fromlist=["from_micros"])
                                .from_micros(start))
    assert line.name == _naive_line(version, line, start, tariff.time_zone)


@SETTINGS
@given(st.data())
def test_a_call_is_callable_until_its_next_closed_band_and_not_a_second_more(data):
    from rating.pricing import callable_seconds, select_line
    tariff, window = data.draw(tariffs())
    j, pay, start, _ = data.draw(calls(window, tariff))
    horizon = data.draw(st.integers(1, 30 * 3600))
    try:
        n = callable_seconds(tariff, j, pay, start, horizon)
    except (UnauthorizedDestination, NoTariffInForce, DestinationClosed):
        return
    assert 1 <= n <= horizon
    probes = sorted(set(data.draw(st.lists(st.integers(0, n - 1), max_size=6)) + [0, n - 1]))
    for k in probes:                 # every second before is open (or not priced at all)
        try:
            assert not select_line(tariff, j, pay, start + k * 1_000_000).closed
        except UnauthorizedDestination:
            pass
    if n < horizon:                  # the next second starts in a closed band or a gap
        try:
            after = select_line(tariff, j, pay, start + n * 1_000_000 + 999_999)
        except UnauthorizedDestination:
            return
        before = select_line(tariff, j, pay, start + n * 1_000_000)
        assert after.closed or before.closed


@SETTINGS
@given(st.data())
def test_a_stop_ceiling_allows_the_longest_call_its_amount_pays_for(data):
    from rating.pricing import ceiling_seconds, longest_call, price, round_total, select_line
    from rating.tariff import CapAction
    tariff, window = data.draw(tariffs())
    j, pay, start, _ = data.draw(calls(window, tariff))
    horizon = data.draw(st.integers(0, 4 * 3600))
    available = data.draw(st.integers(0, 5_000_000))
    try:
        n = ceiling_seconds(tariff, j, pay, start, horizon)
        gov = select_line(tariff, j, pay, start)
        best = longest_call(tariff, j, pay, start, available, horizon)
    except (UnauthorizedDestination, NoTariffInForce, DestinationClosed):
        return
    assert 0 <= n <= horizon and best.seconds <= n
    assert best.total_micros == total_micros(tariff, j, pay, start, best.seconds) <= available
    if gov.cap_action is not CapAction.STOP:
        assert n == horizon
        return
    def charge(d: int) -> int:       # the call charge before the cap, rounding included
        p = price(tariff, j, pay, start, d)
        return round_total(p.connect_micros + sum(x.amount_micros for x in p.spans),
                           gov.rounding, gov.decimals)
    assert charge(n) <= gov.cost_cap_micros
    if n < horizon:
        assert charge(n + 1) > gov.cost_cap_micros
