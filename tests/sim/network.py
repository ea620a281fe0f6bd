"""What the network between workers and the core does to each message (pure, seeded).

A request may be lost, delivered late, or delivered more than once (a resend racing the
original); its answer may be lost or late. Independent delays reorder messages, also on one
link, which is harsher than TCP and covers reconnections and resends.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["NetProfile", "CALM", "request_fate", "reply_fate", "draw_profile"]


@dataclass(frozen=True)
class NetProfile:
    loss: float = 0.0            # a request, or an answer, never arrives
    duplicate: float = 0.0       # a request arrives twice
    slow: float = 0.0            # a request or answer takes slow_ms instead of fast_ms
    fast_ms: tuple[int, int] = (1, 40)
    slow_ms: tuple[int, int] = (500, 8_000)   # beyond the worker's 3 s answer deadline at times


CALM = NetProfile()


def _delay(rng: random.Random, p: NetProfile) -> int:
    lo, hi = p.slow_ms if rng.random() < p.slow else p.fast_ms
    return rng.randint(lo, hi)


def request_fate(rng: random.Random, p: NetProfile) -> list[int]:
    """Delays (ms) of each copy of a request that arrives; empty when it is lost."""
    if rng.random() < p.loss:
        return []
    copies = [_delay(rng, p)]
    if rng.random() < p.duplicate:
        copies.append(_delay(rng, p))
    return copies


def reply_fate(rng: random.Random, p: NetProfile) -> int | None:
    """Delay (ms) of an answer, or None when it is lost."""
    if rng.random() < p.loss:
        return None
    return _delay(rng, p)


def draw_profile(rng: random.Random) -> NetProfile:
    return NetProfile(loss=rng.choice((0.0, 0.0, 0.01, 0.03)),
                      duplicate=rng.choice((0.0, 0.02, 0.08)),
                      slow=rng.choice((0.0, 0.01, 0.05)))
