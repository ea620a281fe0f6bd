"""PIN verification sheds load instead of queueing past the worker's deadline, and checks a PIN it
has verified once without the KDF (switch.control.pin_verify). Pure: the KDF is a stand-in that counts
its calls, and can be held, so saturation is a state, not a race."""
import asyncio
import threading

import pytest

from switch.rules.pin import hash_secret
from switch.control.pin_verify import PinVerifier, VerifierBusy

STORED = b"s" * 16 + b"k" * 32          # what the stand-in KDF accepts "1234" against
OTHER = b"t" * 16 + b"k" * 32           # another inmate's (or a changed) PIN


class Kdf:
    """Accepts "1234" against any stored value; counts its calls; `hold` keeps calls running."""

    def __init__(self):
        self.calls = 0
        self.running = threading.Semaphore(0)
        self.release = threading.Event()
        self.release.set()

    def __call__(self, secret: str, stored: bytes) -> bool:
        self.calls += 1
        self.running.release()
        self.release.wait(10)
        return secret == "1234"


def verifier(kdf, **kw):
    kw = {"concurrent_max": 1, "wait_seconds_max": 0.05, "remembered_max": 10, **kw}
    return PinVerifier(check=kdf, **kw)


async def test_a_check_that_cannot_start_within_the_wait_bound_is_refused_busy():
    kdf = Kdf()
    kdf.release.clear()                        # the one slot stays busy
    v = verifier(kdf)
    first = asyncio.ensure_future(v.verify("1234", STORED))
    await asyncio.to_thread(kdf.running.acquire, True, 10)
    with pytest.raises(VerifierBusy, match="none free within 0.05s"):
        await v.verify("1234", OTHER)
    assert kdf.calls == 1                      # the refused check cost no KDF
    kdf.release.set()
    assert await first
    assert await v.verify("1234", OTHER)       # a free slot serves again


async def test_a_pin_verified_once_is_checked_again_without_the_kdf_right_or_wrong():
    kdf = Kdf()
    v = verifier(kdf)
    assert await v.verify("1234", STORED)
    assert await v.verify("1234", STORED)
    assert not await v.verify("9999", STORED)
    assert kdf.calls == 1


async def test_a_wrong_secret_is_not_remembered_and_a_changed_pin_needs_the_kdf():
    kdf = Kdf()
    v = verifier(kdf)
    assert not await v.verify("9999", STORED)
    assert len(v) == 0
    assert await v.verify("1234", STORED)
    assert await v.verify("1234", OTHER)       # a new stored hash: verified afresh
    assert kdf.calls == 3


async def test_remembered_pins_are_bounded_and_the_least_recently_used_goes_first():
    kdf = Kdf()
    v = verifier(kdf, remembered_max=2)
    a, b, c = (bytes([n]) * 48 for n in (1, 2, 3))
    for stored in (a, b, a, c):               # a used again: b is the oldest when c comes
        await v.verify("1234", stored)
    assert len(v) == 2 and kdf.calls == 3
    await v.verify("1234", a)
    assert kdf.calls == 3
    await v.verify("1234", b)
    assert kdf.calls == 4


async def test_with_the_real_kdf_right_and_wrong_secrets_are_told_apart():
    stored = hash_secret("4321")
    v = PinVerifier(concurrent_max=2, wait_seconds_max=5, remembered_max=0)
    assert await v.verify("4321", stored)
    assert not await v.verify("4320", stored)
    assert len(v) == 0                         # remembering off


@pytest.mark.parametrize("kw", [{"concurrent_max": 0}, {"wait_seconds_max": 0},
                                {"remembered_max": -1}])
def test_limits_out_of_range_are_refused(kw):
    with pytest.raises(ValueError):
        verifier(Kdf(), **kw)


async def test_a_check_waits_only_for_what_is_left_of_its_caller_s_budget():
    kdf = Kdf()
    kdf.release.clear()
    v = verifier(kdf, wait_seconds_max=30)
    first = asyncio.ensure_future(v.verify("1234", STORED))
    await asyncio.to_thread(kdf.running.acquire, True, 10)
    with pytest.raises(VerifierBusy, match="within 0s"):
        await v.verify("1234", OTHER, wait_seconds=-0.2)   # the gate took the whole budget
    with pytest.raises(VerifierBusy, match="within 0.05s"):
        await v.verify("1234", OTHER, wait_seconds=0.05)   # not the 30 s of its own bound
    kdf.release.set()
    assert await first
