"""PIN verification at the core: the slow KDF run off the reactor, a bounded number at a time.

scrypt (switch.rules.pin) costs tens of milliseconds of CPU per check by design. Unbounded, a burst of
call set-ups queues those checks behind each other until every answer is later than the worker's
deadline (`worker.core_answer_seconds`): the worker then plays "system unavailable" to a kiosk it
has already answered, while the core goes on spending CPU on checks nobody waits for any more,
so goodput falls to nothing (bench/switch.py (c) at 20 calls/s: 2 of 600 calls reached the trunk).

So the core sheds instead:
1. at most `concurrent_max` checks run at once (more only queue for the same cores);
2. a check that cannot start within `wait_seconds_max` is refused at once with `VerifierBusy`:
   the worker answers that kiosk 503 with Retry-After before it answers the call, and the checks
   that do run finish in time;
3. a secret verified once is remembered (up to `remembered_max` PINs, the least recently used go
   first) as a keyed tag of that inmate's stored hash, so an inmate's next call costs an HMAC,
   not a KDF. A changed PIN has a new stored hash (a new salt), so an old entry never matches it.
   Only correct secrets are remembered; a wrong one against a remembered PIN is known wrong
   without the KDF. The tags' key is random per process and never leaves it.

Injectable: the KDF (`check`) and the clock-free asyncio primitives make it testable without
scrypt's cost.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import os
from collections.abc import Callable

from switch.errors import SwitchError
from switch.rules.pin import check_secret

__all__ = ["PinVerifier", "VerifierBusy"]

TAG_KEY_BYTES = 32


class VerifierBusy(SwitchError):
    """No PIN check could start within the wait bound: the core is overloaded, try again later."""

    def __init__(self, waited_seconds: float, concurrent_max: int) -> None:
        super().__init__(f"PIN checks busy: none free within {waited_seconds:g}s "
                         f"({concurrent_max} at once)", what="PIN checks busy",
                         where="pin check", value=waited_seconds)
        self.waited_seconds, self.concurrent_max = waited_seconds, concurrent_max


class PinVerifier:
    def __init__(self, *, concurrent_max: int, wait_seconds_max: float, remembered_max: int,
                 check: Callable[[str, bytes], bool] = check_secret,
                 observe: Callable[[str, str], None] = lambda what, outcome: None) -> None:
        if concurrent_max < 1 or wait_seconds_max <= 0 or remembered_max < 0:
            raise ValueError("concurrent_max >= 1, wait_seconds_max > 0 and remembered_max >= 0")
        self.concurrent_max = concurrent_max
        self.wait_seconds_max = wait_seconds_max
        self.remembered_max = remembered_max
        self._check = check
        self._observe = observe
        self._slots = asyncio.Semaphore(concurrent_max)
        self._key = os.urandom(TAG_KEY_BYTES)
        self._remembered: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._remembered)

    def _tag(self, secret: str, stored: bytes) -> bytes:
        return hmac.new(self._key, stored + b"\0" + secret.encode(), hashlib.sha256).digest()

    async def verify(self, secret: str, stored: bytes, *, wait_seconds: float | None = None
                     ) -> bool:
        """Whether `secret` matches `stored`; VerifierBusy when no check could start in time
        (`wait_seconds`, at most `wait_seconds_max`: what is left of the caller's budget)."""
        wait = self.wait_seconds_max if wait_seconds is None else \
            max(0.0, min(wait_seconds, self.wait_seconds_max))
        known = self._remembered.get(stored)
        if known is not None:
            self._remembered.move_to_end(stored)
            self._observe("pin_verify", "remembered")
            return hmac.compare_digest(self._tag(secret, stored), known)
        try:
            if self._slots.locked() and wait <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(self._slots.acquire(), max(wait, 0.001))
        except asyncio.TimeoutError:
            self._observe("pin_verify", "busy")
            raise VerifierBusy(round(wait, 3), self.concurrent_max) from None
        try:
            ok = await asyncio.to_thread(self._check, secret, stored)
        finally:
            self._slots.release()
        self._observe("pin_verify", "kdf")
        if ok and self.remembered_max:
            self._remembered[stored] = self._tag(secret, stored)
            self._remembered.move_to_end(stored)
            while len(self._remembered) > self.remembered_max:
                self._remembered.popitem(last=False)
        return ok
