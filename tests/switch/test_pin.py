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


def test_a_hash_records_its_cost_and_hashes_stored_before_that_still_check():
    import hashlib

    from switch.rules.pin import LEGACY_LOG2_N, SCRYPT_LOG2_N, stored_cost
    new = hash_secret("4321")
    assert stored_cost(new) == SCRYPT_LOG2_N
    salt = b"\1" * 16                            # as stored before: salt || scrypt 2^14
    legacy = salt + hashlib.scrypt(b"4321", salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    assert stored_cost(legacy) == LEGACY_LOG2_N
    assert check_secret("4321", legacy) and not check_secret("4322", legacy)
    stronger = hash_secret("4321", log2_n=13)
    assert stored_cost(stronger) == 13 and check_secret("4321", stronger)


@pytest.mark.parametrize("stored", [b"", b"x" * 47, bytes([2, 30]) + b"s" * 48,
                                    bytes([9, 12]) + b"s" * 48])
def test_a_stored_value_that_is_not_a_pin_hash_this_code_reads_never_matches(stored):
    # A cost outside the range is refused, never run (2^30 would take the core's memory).
    assert not check_secret("4321", stored)
