"""Benchmark: bulk re-rating of 1M calls and the real-time quote, against references.

Run: .venv/bin/python bench/rating.py [--calls N] [--rounds R] [--quotes Q]

Deck: an agency plan with, per class (local, intrastate, interstate, international), two time
bands (day from 00:00, evening Mon-Fri from 19:00) and a holiday band (the holiday list, weight 1),
two rate groups (first 60 s as one block, then per 6 s), international closed 01:00-05:00, a stop
ceiling on local calls, a tax; the facility's own version prices interstate itself (with its own
holiday added to the list) and falls back to the agency plan for the rest.
Calls: random class, payment type, start over 30 days (holding a DST change and three holidays)
in a DST-observing zone, 0-60 minutes.

Prints, as medians over rounds:
* bulk: calls/s of `rating.bulk.price_many`; the reference is a trivial numpy kernel over the same
  arrays (seconds * rate, integer), and the ratio of the two;
* quote: median and p99 of one `rating.pricing.price` of a 15-minute call, and of
  `affordable_seconds`; the reference is a dict lookup plus an integer multiply (the least a quote
  could cost in Python), and the ratio.
Targets: bulk >= 5M calls/s on one core; quote median <= 20 us.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rating.bulk import price_many  # noqa: E402
from rating.jurisdiction import Jurisdiction, JurisdictionClass  # noqa: E402
from rating.pricing import affordable_seconds, longest_call, price  # noqa: E402
from rating.calendar import Holiday  # noqa: E402
from rating.tariff import (ALL_DAYS, Band, CapAction, Line, PaymentType, RateGroup,  # noqa: E402
                           Surcharge, SurchargeKind, Tariff, TariffVersion)

CLASSES = (JurisdictionClass.LOCAL, JurisdictionClass.INTRASTATE, JurisdictionClass.INTERSTATE,
           JurisdictionClass.INTERNATIONAL)
PAYS = (PaymentType.PREPAID, PaymentType.DEBIT, PaymentType.COLLECT)


def _line(name, klass, band, price, **kw) -> Line:
    return Line(name, klass, PaymentType.ANY, band,
                (RateGroup(0, price, 60, 60), RateGroup(60, price, 60, 6)), **kw)


def deck() -> Tariff:
    agency = []
    for k in CLASSES:
        cap = dict(cost_cap_micros=1_000_000, cap_action=CapAction.STOP) \
            if k is JurisdictionClass.LOCAL else {}
        agency += [_line(f"{k.value}-day", k.value, Band(ALL_DAYS, 0, 0), 60_000, **cap),
                   _line(f"{k.value}-evening", k.value, Band(0b11111, 19 * 3600, 0), 45_000),
                   _line(f"{k.value}-holiday", k.value, Band(ALL_DAYS, 0, 1, ("holidays",)),
                         30_000)]
    agency += [Line("international-closed", "international", PaymentType.ANY,
                    Band(ALL_DAYS, 3600, 2), (), closed=True),
               _line("international-reopened", "international", Band(ALL_DAYS, 5 * 3600, 2),
                     60_000)]
    tax = (Surcharge(SurchargeKind.TAX, "usf", "interstate", percent_ppm=35_000),)
    plan = TariffVersion(1, datetime(2024, 1, 1, tzinfo=timezone.utc), tuple(agency), tax,
                         holidays=(Holiday("halloween", ("10-31",)),
                                   Holiday("veterans", ("11-11",))))
    own = TariffVersion(1, datetime(2024, 1, 1, tzinfo=timezone.utc), (
        _line("interstate-day", "interstate", Band(ALL_DAYS, 0, 0), 55_000),
        _line("interstate-evening", "interstate", Band(0b11111, 19 * 3600, 0), 40_000),
        _line("interstate-holiday", "interstate", Band(ALL_DAYS, 0, 1, ("holidays",)), 25_000)),
        tax, holidays=(Holiday("founders", ("2024-11-08",)),), parent="agency")
    return Tariff("bench", "America/New_York", (own,), (("agency", (plan,)),))


def calls(n: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    start0 = int(datetime(2024, 10, 20, tzinfo=timezone.utc).timestamp()) * 1_000_000
    kind = np.array([c.code for c in CLASSES], dtype=np.int8)[rng.integers(0, 4, n)]
    number = np.zeros(n, dtype=np.int64)
    pay = np.array([p.code for p in PAYS], dtype=np.int64)[rng.integers(0, 3, n)]
    start = start0 + rng.integers(0, 30 * 86_400 * 1_000_000, n, dtype=np.int64)
    seconds = rng.integers(0, 3_600, n, dtype=np.int64)
    return kind, number, pay, start, seconds


def bulk_round(tariff, arrays) -> tuple[float, float]:
    kind, number, pay, start, seconds = arrays
    rate = np.full(len(seconds), 1_000, dtype=np.int64)
    t = time.perf_counter()
    price_many(tariff, kind, number, pay, start, seconds)
    bulk = time.perf_counter() - t
    t = time.perf_counter()
    _ = seconds * rate
    ref = time.perf_counter() - t
    return bulk, ref


def quote_samples(tariff, q: int, fn) -> list[float]:
    rng = np.random.default_rng(11)
    start0 = int(datetime(2024, 10, 20, tzinfo=timezone.utc).timestamp()) * 1_000_000
    starts = (start0 + rng.integers(0, 30 * 86_400 * 1_000_000, q)).tolist()
    j = Jurisdiction(JurisdictionClass.INTERSTATE, "+12125550123")
    out = []
    for s in starts:
        t = time.perf_counter_ns()
        fn(tariff, j, PaymentType.DEBIT, s)
        out.append((time.perf_counter_ns() - t) / 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quotes", type=int, default=20_000)
    a = ap.parse_args()
    tariff = deck()
    arrays = calls(a.calls)
    price_many(tariff, *(x[:1000] for x in arrays))          # compile and warm up
    rounds = [bulk_round(tariff, arrays) for _ in range(a.rounds)]
    bulk = statistics.median(r[0] for r in rounds)
    ref = statistics.median(r[1] for r in rounds)
    print(f"bulk:  {a.calls / bulk / 1e6:7.2f} M calls/s  ({bulk * 1e3:.1f} ms per {a.calls:,} calls,"
          f" median of {a.rounds})")
    print(f"       reference seconds*rate kernel: {a.calls / ref / 1e6:7.1f} M calls/s "
          f"({ref * 1e3:.2f} ms); bulk takes {bulk / ref:.0f}x the reference")

    def quote(t, j, p, s):
        return price(t, j, p, s, 900)

    def afford(t, j, p, s):
        return affordable_seconds(t, j, p, s, 500_000, 3_600)

    def longest(t, j, p, s):
        return longest_call(t, j, p, s, 500_000, 3_600)

    table = {("interstate", "debit"): 60_000}

    def reference(t, j, p, s):
        return table[("interstate", "debit")] * 15

    for name, fn in (("quote", quote), ("affordable", afford), ("reference", reference)):
        quote_samples(tariff, 500, fn)                      # warm up
    q = [quote_samples(tariff, a.quotes, quote) for _ in range(3)]
    af = [quote_samples(tariff, a.quotes // 10, afford) for _ in range(3)]
    lo = [quote_samples(tariff, a.quotes // 10, longest) for _ in range(3)]
    rf = [quote_samples(tariff, a.quotes, reference) for _ in range(3)]
    qm = statistics.median(statistics.median(x) for x in q)
    qp = statistics.median(pct(x, 0.99) for x in q)
    am = statistics.median(statistics.median(x) for x in af)
    ap99 = statistics.median(pct(x, 0.99) for x in af)
    rm = statistics.median(statistics.median(x) for x in rf)
    print(f"quote: median {qm:6.2f} us, p99 {qp:6.2f} us  (price of a 15-minute call)")
    print(f"       affordable_seconds: median {am:6.2f} us, p99 {ap99:6.2f} us")
    lm = statistics.median(statistics.median(x) for x in lo)
    print(f"       longest_call (balance, ceiling, closure): median {lm:6.2f} us")
    print(f"       reference dict lookup * minutes: median {rm:5.2f} us; quote takes {qm / rm:.0f}x")
    print(f"targets: bulk >= 5 M calls/s: {'met' if a.calls / bulk >= 5e6 else 'NOT met'}; "
          f"quote median <= 20 us: {'met' if qm <= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
