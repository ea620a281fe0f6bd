"""Benchmark of the IVR flows (not a test): CPU per call spent deciding, in the worker's process.

One "call" = the inmate flow from the language menu to CONNECTED (language key, 8-digit PIN,
10-digit number, the core's answers, prompts ending) plus the called-party flow from the
announcement to the bridge, including resolving every Play to its WAV paths: 31 events.
Reference, same run: the floor of Python event dispatch, a hand-written state machine with a tuple
state and a dict of handlers taking the same 31 events (what any pure-Python flow costs at least).
Prints medians over rounds, the reference and the ratio.

    .venv/bin/python bench/ivr.py [--calls 2000] [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.flows import called_party, inmate                      # noqa: E402
from ivr.flows.moves import (                                   # noqa: E402
    AcceptGranted, Authorized, Digit, PartyResult, PinChecked, Play, PromptDone,
)
from ivr.settings import IvrSettings                            # noqa: E402

SETTINGS = IvrSettings()
INMATE_EVENTS = [Digit("1"), PromptDone(), *[Digit(d) for d in "12345678#"],
                 PinChecked(True, inmate_id="i-1"), PromptDone(),
                 *[Digit(d) for d in "2125550123"],
                 Authorized(True, e164="+12125550123", max_seconds=900), PromptDone(),
                 PartyResult("accepted")]
CALLED_EVENTS = [PromptDone(), Digit("1"), AcceptGranted(120)]
ANNOUNCEMENT = called_party.Announcement("en", 60_000)
EVENTS_PER_CALL = len(INMATE_EVENTS) + len(CALLED_EVENTS) + 2   # + the two begins


def one_call() -> None:
    call, actions = inmate.begin(SETTINGS)
    for a in actions:
        if isinstance(a, Play):
            a.files()
    for e in INMATE_EVENTS:
        call, actions = inmate.step(call, e)
        for a in actions:
            if isinstance(a, Play):
                a.files()
    assert call.phase is inmate.Phase.CONNECTED
    leg, actions = called_party.begin(ANNOUNCEMENT, SETTINGS)
    for a in actions:
        a.files()
    for e in CALLED_EVENTS:
        leg, actions = called_party.step(leg, e)
    assert leg.phase is called_party.Phase.CONNECTED


def _floor_handler(state, event):
    phase, digits = state
    return (phase + 1, digits + 1), [phase]


FLOOR_TABLE = {i: {type(e): _floor_handler for e in INMATE_EVENTS + CALLED_EVENTS}
               for i in range(EVENTS_PER_CALL + 1)}


def floor_call() -> None:
    state, _ = (0, 0), []
    for e in INMATE_EVENTS + CALLED_EVENTS + [PromptDone(), PromptDone()]:
        state, _ = FLOOR_TABLE[state[0]][type(e)](state, e)


def per_call_us(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    one_call(), floor_call()                      # warm up
    flows, floors = [], []
    for _ in range(args.rounds):
        flows.append(per_call_us(one_call, args.calls))
        floors.append(per_call_us(floor_call, args.calls))
    flow, floor = statistics.median(flows), statistics.median(floors)
    print(f"IVR flows: {flow:8.1f} us per call ({EVENTS_PER_CALL} events, "
          f"{flow / EVENTS_PER_CALL:.2f} us/event), median of {args.rounds} rounds x "
          f"{args.calls} calls")
    print(f"reference: {floor:8.1f} us per call (bare tuple-state dispatch, same events)")
    print(f"ratio:     {flow / floor:8.1f}x the dispatch floor")


if __name__ == "__main__":
    main()
