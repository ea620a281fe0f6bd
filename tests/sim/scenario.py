"""A seed's scenario: the calls people make and the faults that strike, drawn up front (pure).

Everything here is a function of the seed, so a scenario can be read, compared and replayed
without a database. The run's own draws (network fates, reconnect jitter) come later, from the
simulator's generator, in the order the run asks for them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from switch.settings import CoreSettings

from .network import CALM, NetProfile, draw_profile
from .worker import CallPlan, WorkerSettings
from .world import DEBIT_NUMBERS, PREPAID_NUMBERS, inmate_id

__all__ = ["Fault", "Scenario", "draw_scenario", "replay_line"]


@dataclass(frozen=True)
class Fault:
    at_ms: int
    kind: str           # outage | crash | worker_loss | tariff
    length_ms: int = 0  # outage length, core downtime
    statement: int = 0  # crash: the statement of the next core operation that dies
    shift_ms: int = 0   # tariff: effective this long after the import
    factor_pct: int = 100


@dataclass(frozen=True)
class Scenario:
    seed: int
    settings: CoreSettings
    net: NetProfile
    calls: tuple[CallPlan, ...]
    faults: tuple[Fault, ...]
    inmates: int


_OFFSET_KINDS = ("start", "early", "lead_edge", "in_lead", "last_second", "boundary", "any")


def _hangup_ms(rng: random.Random, period: int, lead: float) -> int:
    """A hang-up instant: some whole periods, then an offset picked to hit every part of a period,
    the Continue lead and its edges included."""
    k = rng.choice((0, 0, 1, 1, 2, 3, 5, 8, 14))
    kind = rng.choice(_OFFSET_KINDS)
    p_ms, lead_ms = period * 1000, int(lead * 1000)
    offset = {"start": rng.randint(0, 1_500),
              "early": rng.randint(1_000, p_ms - lead_ms),
              "lead_edge": p_ms - lead_ms + rng.randint(-300, 300),
              "in_lead": rng.randint(p_ms - lead_ms, p_ms - 1),
              "last_second": rng.randint(p_ms - 1_000, p_ms),
              "boundary": p_ms + rng.choice((-1, 0, 1)),
              "any": rng.randint(0, p_ms)}[kind]
    return max(0, k * p_ms + offset)


def draw_scenario(seed: int, calls: int, *, faults: bool = True) -> Scenario:
    rng = random.Random(seed)
    period = rng.choice((60, 60, 30, 20))
    settings = CoreSettings(period_seconds=period, hold_slack_seconds=30,
                            call_silence_seconds=30,
                            min_call_seconds=rng.choice((60, 60, 20)))
    net = draw_profile(rng) if faults else CALM
    lead = WorkerSettings().continue_lead_seconds
    span_ms = max(60_000, calls * rng.choice((5_000, 15_000, 40_000)))
    plans = []
    for i in range(calls):
        choice = rng.choices(("accept", "refuse", "abandon"), (85, 8, 7))[0]
        plans.append(CallPlan(i, rng.randint(0, span_ms), "", "", rng.randint(2_000, 30_000),
                              choice, _hangup_ms(rng, period, lead)))
    inmates = max(2, min(8, calls // 3))
    fault_list: list[Fault] = []
    if faults:
        horizon = span_ms + 600_000
        for _ in range(rng.choice((0, 1, 1, 2))):
            fault_list.append(Fault(rng.randint(0, horizon), "outage",
                                    length_ms=rng.choice((4_000, 20_000, 45_000, 95_000, 200_000))))
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            fault_list.append(Fault(rng.randint(0, horizon), "crash",
                                    length_ms=rng.choice((500, 3_000, 20_000, 60_000)),
                                    statement=rng.randint(0, 9)))
        for _ in range(rng.choice((0, 0, 1))):
            fault_list.append(Fault(rng.randint(0, horizon), "worker_loss"))
        for _ in range(rng.choice((0, 1, 1, 2))):
            fault_list.append(Fault(rng.randint(0, span_ms), "tariff",
                                    shift_ms=rng.choice((0, 0, 10_000, 90_000)),
                                    factor_pct=rng.choice((50, 80, 125, 200))))
    # Who calls whom is drawn once the world (its inmates and numbers) is known: keep the draws
    # here so the scenario is a pure function of the seed.
    numbers = PREPAID_NUMBERS + DEBIT_NUMBERS
    who = [(rng.randrange(inmates), rng.randrange(len(numbers))) for _ in plans]
    plans = [replace(p, inmate=inmate_id(w[0]), number=numbers[w[1]]) for p, w in zip(plans, who)]
    return Scenario(seed, settings, net, tuple(plans), tuple(sorted(fault_list,
                                                                    key=lambda f: f.at_ms)),
                    inmates)


def replay_line(seed: int, calls: int, faults: bool = True) -> str:
    return f"python -m tests.sim --seed {seed} --calls {calls}" + ("" if faults else " --calm")
