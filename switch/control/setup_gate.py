"""Admission of new calls at the core: a bounded number of call set-ups in progress at once.

A call's first request to the core (CheckPin for a kiosk that sent its PIN, AdmitKiosk for one
that will key it) is where a busy core must say no. Past a point, taking more set-ups only makes
every answer late: the worker gives up after `worker.core_answer_seconds`, while the core goes on
working for callers nobody waits for (congestion collapse: bench/switch.py (c) at 20 calls/s had
2 of 600 calls reach the trunk, the rest "CheckPin unanswered after 3.0s"). So at most
`concurrent_max` first requests run at once; one that cannot start within `wait_seconds_max` is
refused at once (`SetupBusy`), before any database work, and its worker answers the kiosk 503 with
Retry-After. Calls already admitted (Authorize, Accept, Continue, End) are never shed here.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from switch.errors import SwitchError

__all__ = ["SetupGate", "SetupBusy"]


class SetupBusy(SwitchError):
    """No call set-up could start within the wait bound: the core is overloaded."""

    def __init__(self, what: str, waited_seconds: float, concurrent_max: int) -> None:
        super().__init__(f"{what} busy: none free within {waited_seconds:g}s "
                         f"({concurrent_max} at once)", what=f"{what} busy", where=what,
                         value=waited_seconds)
        self.waited_seconds, self.concurrent_max = waited_seconds, concurrent_max


class SetupGate:
    def __init__(self, *, concurrent_max: int, wait_seconds_max: float,
                 observe: Callable[[str, str], None] = lambda what, outcome: None) -> None:
        if concurrent_max < 1 or wait_seconds_max <= 0:
            raise ValueError("concurrent_max >= 1 and wait_seconds_max > 0")
        self.concurrent_max, self.wait_seconds_max = concurrent_max, wait_seconds_max
        self._observe = observe
        self._slots = asyncio.Semaphore(concurrent_max)

    @property
    def full(self) -> bool:
        return self._slots.locked()

    @contextlib.asynccontextmanager
    async def admitted(self, command: str) -> AsyncIterator[None]:
        """Run the body as one set-up in progress; SetupBusy if none could start in time."""
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_seconds_max)
        except asyncio.TimeoutError:
            self._observe("setup_shed", command)
            raise SetupBusy("call set-ups", self.wait_seconds_max, self.concurrent_max) from None
        try:
            yield
        finally:
            self._slots.release()
