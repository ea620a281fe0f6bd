"""Micro-benchmark of the core's pure Continue step (not a test): what the fast path computes per
Continue without any I/O, under a per-second tariff with 1 s periods (every Continue prices new
seconds, as in bench/core.py).

Per Continue: the call's Money from its cached row, `session.advance` (price totals from the
call's pinned tariff, the transfers with their ids, the row and the answer), the row moved on,
and the transfers encoded as the ledger batch's arguments. Calls are fresh (a new price memo each)
and run `--periods` Continues each.

Reference, same run: a trivial Python loop of the same count that copies the row dict and builds
one small tuple (the least a step could cost in Python). Prints both and the ratio.

    .venv/bin/python bench/core_step.py [--calls 2000] [--periods 20] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "switch"))

import ledger  # noqa: E402
from rig import flat_tariff  # noqa: E402
from switch.control import core as core_mod  # noqa: E402
from switch.control.tariffs import Pricing  # noqa: E402
from switch.rules import session  # noqa: E402

START = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 25, 18, 30, tzinfo=timezone.utc)


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            "id": uuid.UUID(int=i + 1), "state": "talking", "period": 1, "grant_until": 1,
            "posted_until": 0, "max_seconds": 7200, "funding_account": f"prepaid:+1951555{i:04d}",
            "privileged": False, "hold_call": uuid.uuid4(), "hold_tax": uuid.uuid4(),
            "shortfall_micros": 0, "facility_id": "riverside", "jurisdiction": "local",
            "e164": "+19515550101", "payment_type": "prepaid", "tariff_version": 1,
            "accepted_at": START, "authorized_at": START})
    return out


def steps(pricing: Pricing, facility, calls: int, periods: int, terms, books) -> int:
    done = 0
    for call in rows(calls):
        cum = pricing.cum(facility, call["jurisdiction"], call["e164"], call["payment_type"],
                          call["accepted_at"], call["tariff_version"])
        for _ in range(periods):
            period = call["period"]
            st = session.advance(core_mod._money(call), period, call["grant_until"], cum, terms,
                                 books, available=None, answers={}, tries=0)
            ledger.batch_args(list(st.transfers), now=NOW)
            call = core_mod._moved(call, st.row)
            done += 1
    return done


def reference(calls: int, periods: int) -> int:
    done = 0
    for call in rows(calls):
        for _ in range(periods):
            call = {**call, "period": call["period"] + 1}
            (call["id"], call["period"], call["grant_until"])
            done += 1
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--periods", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tariff = flat_tariff(increment=1)
    pricing = Pricing()
    pricing._tariffs["riverside"] = (float("inf"), tariff)
    facility = type("F", (), {"id": "riverside"})()
    terms = session.Terms(period_seconds=1, warning_seconds=1, hold_slack_seconds=30)
    books = session.Books()
    n = args.calls * args.periods
    step_s, ref_s = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        assert steps(pricing, facility, args.calls, args.periods, terms, books) == n
        step_s.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        assert reference(args.calls, args.periods) == n
        ref_s.append((time.perf_counter() - t) / n)
    step, ref = statistics.median(step_s), statistics.median(ref_s)
    print(f"pure Continue step: {step * 1e6:.1f} us a step ({n:,} steps: {args.calls} calls x "
          f"{args.periods} periods, median of {args.rounds} rounds)")
    print(f"reference: trivial loop {ref * 1e6:.2f} us an iteration, same count")
    print(f"ratio step/reference: {step / ref:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
