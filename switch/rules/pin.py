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

__all__ = ["hash_secret", "check_secret", "split_keyed", "Lockout", "Throttle", "PinFormatError",
           "GUESS_OUTCOMES", "RESET_OUTCOMES"]

# Audited outcomes that are guesses: they count towards a lockout or a throttle. Attempts refused
# because the PIN is already locked or the kiosk/source is throttled are NOT guesses (the secret is
# never tried), so they cannot extend a lock or keep a throttle going.
GUESS_OUTCOMES = ("wrong_secret", "unknown_inmate", "malformed")
# Outcomes after which an inmate's earlier failures no longer count.
RESET_OUTCOMES = ("ok", "unlocked")

SCRYPT_N = 2 ** 14          # ~30 ms per check here: slow for a thief, fine for a kiosk
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16


class PinFormatError(SwitchError, ValueError):
    """A PIN or secret is not the right shape (digits, length)."""


def hash_secret(secret: str, *, salt: bytes | None = None) -> bytes:
    """salt || scrypt(secret); store the result as is."""
    if not secret.isdigit():
        raise PinFormatError("a PIN secret is digits only")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return salt + key


def check_secret(secret: str, stored: bytes) -> bool:
    salt = stored[:SALT_BYTES]
    if not secret.isdigit():
        return False
    return hmac.compare_digest(hash_secret(secret, salt=salt), stored)


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
