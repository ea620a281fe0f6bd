"""Hypothesis strategies: random valid tariffs and calls that cross bands, midnight, DST, rate-group
starts and versions."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from rating.jurisdiction import JurisdictionClass as J
from rating.jurisdiction import Jurisdiction
from rating.calendar import Holiday
from rating.tariff import (ALL_DAYS, Band, CapAction, Line, PaymentType, RateGroup, Rounding,
                           Surcharge, SurchargeKind, Tariff, TariffVersion, problems_of)

ZONES = ("UTC", "America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Kathmandu",
         "Australia/Lord_Howe")
# Windows of 4 days holding a DST change in most zones above (and a plain week in March).
WINDOWS = (datetime(2024, 3, 8, tzinfo=timezone.utc), datetime(2024, 10, 25, tzinfo=timezone.utc),
           datetime(2024, 11, 1, tzinfo=timezone.utc), datetime(2024, 4, 5, tzinfo=timezone.utc))
WINDOW = timedelta(days=4)
DESTINATIONS = ("interstate", "international", "local", "+44", "+4420", "+1212", "toll_free")
PAYMENTS = (PaymentType.ANY, PaymentType.DEBIT, PaymentType.PREPAID)
CALLED = (Jurisdiction(J.INTERSTATE, "+12125550123"), Jurisdiction(J.INTERSTATE, "+13105550123"),
          Jurisdiction(J.INTERNATIONAL, "+442079460018"),
          Jurisdiction(J.INTERNATIONAL, "+447700900123"),
          Jurisdiction(J.INTERNATIONAL, "+33142685300"), Jurisdiction(J.LOCAL, "+19515550123"),
          Jurisdiction(J.TOLL_FREE, "+18005550100"), Jurisdiction(J.INTRASTATE, "+19165550123"),
          Jurisdiction(J.EMERGENCY), Jurisdiction(J.UNKNOWN, "+15005550123"),
          Jurisdiction(J.INVALID, "+4420794"), Jurisdiction(J.INVALID))
CALL_PAYMENTS = (PaymentType.DEBIT, PaymentType.PREPAID, PaymentType.COLLECT)
# Dates inside (or next to) the windows: one-off, recurring, and the version's holiday list.
DATE_SPECS = ("2024-03-09", "03-10", "10-26", "2024-10-27", "11-02", "04-06", "2024-04-07",
              "holidays")
HOLIDAY_LISTS = ((), (Holiday("h1", ("03-09", "2024-10-27")),),
                 (Holiday("h1", ("11-01",)), Holiday("h2", ("2024-04-05", "2024-03-11"))))


@st.composite
def rate_groups(draw) -> tuple[RateGroup, ...]:
    n = draw(st.integers(1, 3))
    groups, start = [], 0
    for _ in range(n):
        inc = draw(st.sampled_from((1, 6, 30, 60, 7)))
        groups.append(RateGroup(start, draw(st.integers(0, 400_000)),
                                draw(st.sampled_from((1, 6, 60, 7, 3600))), inc))
        start += inc * draw(st.integers(1, 12))
    return tuple(groups)


def window_specs(window: datetime | None) -> tuple[str, ...]:
    """Dates the window's calls fall on, one-off and recurring, besides the fixed ones."""
    if window is None:
        return DATE_SPECS
    days = [(window + timedelta(days=k)).date().isoformat() for k in range(5)]
    return tuple(days) + tuple(d[5:] for d in days) + DATE_SPECS


@st.composite
def lines_for(draw, destination: str, payment: PaymentType, prefix: str,
              holidays: tuple = (), window: datetime | None = None) -> list[Line]:
    bands = [Band(ALL_DAYS, 0, draw(st.integers(-2, 2)))]
    specs = [d for d in window_specs(window) if d != "holidays" or holidays]
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.one_of(st.integers(0, 23).map(lambda h: h * 3600),
                               st.integers(0, 86_399)))
        if draw(st.booleans()):               # a calendar band
            dates = tuple(draw(st.lists(st.sampled_from(specs), min_size=1, max_size=3,
                                        unique=True)))
            bands.append(Band(ALL_DAYS, start, draw(st.integers(-2, 4)), dates))
        else:
            bands.append(Band(draw(st.integers(1, ALL_DAYS)), start, draw(st.integers(-2, 2))))
    seen, out = set(), []
    for i, b in enumerate(bands):
        if (b.start, b.weight) in seen:       # a tie on shared days is refused on import
            continue
        seen.add((b.start, b.weight))
        if draw(st.integers(0, 5 if i else 12)) == 0:      # not callable in this band
            out.append(Line(f"{prefix}{i}", destination, payment, b, (), closed=True))
            continue
        rounding = draw(st.sampled_from(tuple(Rounding)))
        cap = draw(st.sampled_from((None, None, 500_000, 7_777_777)))
        out.append(Line(
            f"{prefix}{i}", destination, payment, b, draw(rate_groups()),
            connect_micros=draw(st.sampled_from((0, 0, 1, 25_000, 1_234_567))),
            minimum_seconds=draw(st.sampled_from((0, 0, 1, 59, 60, 90))),
            cost_cap_micros=cap,
            rounding=rounding,
            decimals=6 if rounding is Rounding.NONE else draw(st.integers(0, 6)),
            cap_action=CapAction.FREE if cap is None else draw(st.sampled_from(tuple(CapAction)))))
    return out


@st.composite
def surcharges(draw) -> tuple[Surcharge, ...]:
    out = []
    for i in range(draw(st.integers(0, 2))):
        dest = draw(st.sampled_from(("*", "interstate", "international", "+44")))
        pay = draw(st.sampled_from((PaymentType.ANY, PaymentType.DEBIT)))
        kind = draw(st.sampled_from(tuple(SurchargeKind)))
        if draw(st.booleans()):
            out.append(Surcharge(kind, f"s{i}", dest, pay, percent_ppm=draw(st.integers(0, 300_000))))
        else:
            out.append(Surcharge(kind, f"s{i}", dest, pay, price_micros=draw(st.integers(0, 50_000)),
                                 per_seconds=draw(st.sampled_from((60, 1, 7)))))
    return tuple(out)


@st.composite
def versions(draw, number: int, effective: datetime, parent: str | None = None,
             window: datetime | None = None) -> TariffVersion:
    # A version with a fallback plan prices little itself: the plan prices the rest.
    selectors = ([("interstate", PaymentType.DEBIT)] if parent else
                 [("interstate", PaymentType.ANY), ("international", PaymentType.ANY)])
    selectors += [s for s in draw(st.lists(st.tuples(st.sampled_from(DESTINATIONS),
                                                     st.sampled_from(PAYMENTS)),
                                           max_size=4, unique=True)) if s not in selectors]
    holidays = draw(st.sampled_from(HOLIDAY_LISTS))
    if window is not None and draw(st.booleans()):
        holidays = (Holiday("w", tuple(draw(st.lists(st.sampled_from(window_specs(window)[:10]),
                                                      min_size=1, max_size=3, unique=True)))),)
    lines: list[Line] = []
    for k, (dest, pay) in enumerate(selectors):
        lines += draw(lines_for(dest, pay, f"l{k}.", holidays, window))
    extra = draw(surcharges())
    assert not problems_of(tuple(lines), extra, holidays), problems_of(tuple(lines), extra,
                                                                       holidays)
    return TariffVersion(number, effective, tuple(lines), extra, holidays=holidays, parent=parent)


@st.composite
def tariffs(draw) -> tuple[Tariff, datetime]:
    """A tariff of 1-3 versions and the start of the 4-day window its calls fall in."""
    zone = draw(st.sampled_from(ZONES))
    window = draw(st.sampled_from(WINDOWS))
    n = draw(st.integers(1, 3))
    effective = [window - timedelta(days=1)] + sorted(
        window + timedelta(seconds=draw(st.integers(0, int(WINDOW.total_seconds()))),
                           microseconds=draw(st.sampled_from((0, 0, 1, 999_999))))
        for _ in range(n - 1))
    if not draw(st.integers(0, 2)):       # a facility plan falling back to the agency's
        agency = [window - timedelta(days=2)] + [
            window + timedelta(seconds=draw(st.integers(0, int(WINDOW.total_seconds()))))
            for _ in range(draw(st.integers(0, 1)))]
        plan = tuple(draw(versions(i + 1, at, window=window)) for i, at in enumerate(agency))
        own = tuple(draw(versions(i + 1, at, draw(st.sampled_from(("agency", None, "agency"))),
                                  window)) for i, at in enumerate(effective))
        return Tariff("f", zone, own, (("agency", plan),)), window
    return Tariff("f", zone, tuple(draw(versions(i + 1, at, window=window))
                                   for i, at in enumerate(effective))), window


@st.composite
def calls(draw, window: datetime, tariff: Tariff | None = None
          ) -> tuple[Jurisdiction, PaymentType, int, int]:
    """(destination, payment type, start in epoch microseconds, seconds). Starts fall anywhere in
    the window, just before a whole or half hour (band starts), or just before a version."""
    base = int(window.timestamp()) * 1_000_000
    near_hour = st.integers(0, 95).map(lambda h: h * 3_600_000_000) | st.integers(0, 95).map(
        lambda h: h * 3_600_000_000 + 1_800_000_000)
    choices = [st.integers(0, int(WINDOW.total_seconds()) * 1_000_000),
               st.tuples(near_hour, st.integers(-3600_000_000, 5_000_000)).map(sum)]
    if tariff is not None and len(tariff.versions) > 1:
        instants = [int(v.effective_from.timestamp() * 1_000_000) - base
                    for v in tariff.versions[1:]]
        choices.append(st.tuples(st.sampled_from(instants),
                                 st.integers(-7200_000_000, 1_000_000)).map(sum))
    offset = draw(st.one_of(*choices))
    start = base + max(offset, 0)
    seconds = draw(st.one_of(st.integers(0, 200), st.integers(0, 4 * 3600),
                             st.integers(0, 30 * 3600)))
    return draw(st.sampled_from(CALLED)), draw(st.sampled_from(CALL_PAYMENTS)), start, seconds
