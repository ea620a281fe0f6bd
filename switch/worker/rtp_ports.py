"""Where a worker's next call leg takes its RTP port: a random free pair in the worker's range.

pjsua's own `randomize_port` draws only the first port of an account (with libc `rand()`, which
pjsua never seeds, so every worker draws the same offset) and then counts up by two: whoever saw one
call's port knows the next. A predictable port is what a third party needs to spray RTP at a call,
so before each new leg the worker draws the pair itself (`secrets`), checks it is free, and makes
it the start of the account's port window (`RtpWindow`), so pjsua binds exactly there.

The window is [pair, range end]: pjsua never binds outside the worker's range (RTCP, pair + 1,
included), so the supervisor's per-worker port accounting holds. Pure but for `is_free`, which
the caller supplies (a bind test on the worker's address).
"""
from __future__ import annotations

import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RtpWindow", "pick_pair", "udp_free"]

_RANDOM = secrets.SystemRandom()


@dataclass(frozen=True)
class RtpWindow:
    """pjsua's account media port settings: bind from `port` up to `port + port_range`."""
    port: int
    port_range: int


def pick_pair(lo: int, hi: int, is_free: Callable[[int], bool], *, avoid: int | None = None,
              rng: random.Random = _RANDOM) -> RtpWindow | None:
    """A random even port p in [lo, hi - 1] with p and p + 1 free, as the window [p, hi].

    `avoid` is the window's current start: pjsua restarts its count only when the start changes,
    so the same start twice in a row would hand out the port after the last one. None when no
    pair is free (pjsua then searches the whole range itself)."""
    first = lo + (lo % 2)
    pairs = [p for p in range(first, hi, 2) if p + 1 <= hi]
    rng.shuffle(pairs)
    pairs.sort(key=lambda p: p == avoid)          # stable: the current start only as a last resort
    for p in pairs:
        if is_free(p) and is_free(p + 1):
            return RtpWindow(p, hi - p)
    return None


def udp_free(host: str) -> Callable[[int], bool]:
    """A bind test for UDP ports on `host`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def free(port: int) -> bool:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
            return True
    return free
