"""PINs: how they are stored (a slow salted KDF plus a keyed lookup tag) and when they lock.

An inmate keys their inmate number followed by a secret of `secret_digits` digits. The number says
whose PIN is tried, so failures can be counted against that inmate and lock *their* PIN after
`failures_max` failures within `window_seconds`. The secret is stored only as scrypt(salt, secret);
nothing in the database lets a thief test PINs faster than scrypt allows.

Guessing is also bounded where it comes from: `Throttle` refuses attempts from a kiosk or a source
address with too many failed guesses (across all inmates) within its window, so one PIN sprayed
over many inmate numbers stops after a few tries.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from switch.errors import SwitchError

__all__ = ["hash_secret", "check_secret", "stored_cost", "split_keyed", "Lockout", "Throttle",
           "PinFormatError",
           "GUESS_OUTCOMES", "RESET_OUTCOMES"]

# Audited outcomes that are guesses: they count towards a lockout or a throttle. Attempts refused
# because the PIN is already locked or the kiosk/source is throttled are NOT guesses (the secret is
# never tried), so they cannot extend a lock or keep a throttle going.
GUESS_OUTCOMES = ("wrong_secret", "unknown_inmate", "malformed")
# Outcomes after which an inmate's earlier failures no longer count.
RESET_OUTCOMES = ("ok", "unlocked")

# The KDF's cost is stored with each hash (FORMAT), so it can change without a migration.
# 2^12 (4 MiB, about 15-20 ms on one core of the development machine): 2^14 took about 80 ms
# there, so 20 first-time PIN checks a second needed 1.6 of its 2 cores and call set-up
# collapsed (bench/switch.py (c)). The secret is 4 digits: 10^4 candidates fall to an offline
# thief in minutes at either cost, so a PIN's defence is the lockout and the throttles, not the
# KDF; the KDF only keeps a stolen table from being read at a glance.
SCRYPT_LOG2_N = 12
LEGACY_LOG2_N = 14          # hashes stored before the cost was recorded (salt || key, 48 bytes)
LOG2_N_RANGE = (10, 16)     # a stored cost outside this is refused, never run
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
FORMAT = 2                  # first byte of a hash that records its cost


class PinFormatError(SwitchError, ValueError):
    """A PIN or secret is not the right shape (digits, length)."""


def _kdf(secret: str, salt: bytes, log2_n: int) -> bytes:
    n = 2 ** log2_n
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=256 * SCRYPT_R * n, dklen=KEY_BYTES)


def hash_secret(secret: str, *, salt: bytes | None = None, log2_n: int = SCRYPT_LOG2_N) -> bytes:
    """FORMAT || log2(N) || salt || scrypt(secret); store the result as is."""
    if not secret.isdigit():
        raise PinFormatError("a PIN secret is digits only")
    if not LOG2_N_RANGE[0] <= log2_n <= LOG2_N_RANGE[1]:
        raise ValueError(f"scrypt cost 2^{log2_n} is outside 2^{LOG2_N_RANGE[0]}.."
                         f"2^{LOG2_N_RANGE[1]}")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    return bytes([FORMAT, log2_n]) + salt + _kdf(secret, salt, log2_n)


def stored_cost(stored: bytes) -> int | None:
    """log2(N) a stored hash was made with; None if it is not a PIN hash this code reads."""
    if len(stored) == SALT_BYTES + KEY_BYTES:
        return LEGACY_LOG2_N
    if len(stored) == 2 + SALT_BYTES + KEY_BYTES and stored[0] == FORMAT \
            and LOG2_N_RANGE[0] <= stored[1] <= LOG2_N_RANGE[1]:
        return stored[1]
    return None


def check_secret(secret: str, stored: bytes) -> bool:
    log2_n = stored_cost(stored)
    if log2_n is None or not secret.isdigit():
        return False
    salt, key = stored[-KEY_BYTES - SALT_BYTES:-KEY_BYTES], stored[-KEY_BYTES:]
    return hmac.compare_digest(_kdf(secret, salt, log2_n), key)


def split_keyed(keyed: str, secret_digits: int) -> tuple[str, str]:
    """'123454321' with 4 secret digits -> ('12345', '4321')."""
    if not keyed.isdigit() or len(keyed) <= secret_digits:
        raise PinFormatError(f"expected the inmate number followed by a {secret_digits}-digit PIN")
    return keyed[:-secret_digits], keyed[-secret_digits:]


@dataclass(frozen=True)
class Lockout:
    failures_max: int = 3
    window_seconds: int = 900

    def attempts_left(self, recent_failures: list[datetime], now: datetime) -> int:
        """Failures since the last success, inside the window, count against the PIN."""
        since = now - timedelta(seconds=self.window_seconds)
        n = sum(1 for t in recent_failures if t > since)
        return max(0, self.failures_max - n)

    def locked(self, recent_failures: list[datetime], now: datetime) -> bool:
        return self.attempts_left(recent_failures, now) == 0


@dataclass(frozen=True)
class Throttle:
    """Failed guesses allowed per kiosk and per source address within `window_seconds`."""
    kiosk_failures_max: int = 10
    source_failures_max: int = 10
    window_seconds: int = 300

    def __post_init__(self) -> None:
        if self.kiosk_failures_max < 1 or self.source_failures_max < 1 or self.window_seconds < 1:
            raise ValueError("throttle limits must be >= 1")

    def scope(self, kiosk_failures: int, source_failures: int) -> str | None:
        """'kiosk' or 'source' when that limit is reached (kiosk first), else None."""
        if kiosk_failures >= self.kiosk_failures_max:
            return "kiosk"
        if source_failures >= self.source_failures_max:
            return "source"
        return None
