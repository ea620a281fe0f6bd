from datetime import datetime, timedelta, timezone

import pytest

from switch.rules.pin import Lockout, PinFormatError, check_secret, hash_secret, split_keyed

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def test_stored_pin_is_salted_and_checks_only_the_right_secret():
    a, b = hash_secret("4321"), hash_secret("4321")
    assert a != b and b"4321" not in a
    assert check_secret("4321", a) and not check_secret("4322", a) and not check_secret("", a)


def test_keyed_pin_splits_into_inmate_number_and_secret():
    assert split_keyed("123454321", 4) == ("12345", "4321")
    for bad in ("4321", "12a454321", ""):
        with pytest.raises(PinFormatError):
            split_keyed(bad, 4)


def test_third_failure_within_the_window_locks_and_old_failures_expire():
    lock = Lockout(failures_max=3, window_seconds=900)
    fails = [NOW - timedelta(minutes=m) for m in (1, 2)]
    assert lock.attempts_left(fails, NOW) == 1 and not lock.locked(fails, NOW)
    assert lock.locked(fails + [NOW], NOW)
    assert lock.attempts_left(fails + [NOW - timedelta(minutes=20)], NOW) == 1
    assert not lock.locked(fails + [NOW], NOW + timedelta(minutes=16))
