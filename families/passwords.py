"""Passwords: scrypt with a per-user salt, compared in constant time (pure; no I/O).

Stored as ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` so the cost can be raised later: a hash
made with older parameters still verifies, and `needs_rehash` says when to store a new one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from families.errors import FamilyError

__all__ = ["hash_password", "verify_password", "needs_rehash", "PasswordRejected",
           "check_strength", "PASSWORD_LENGTH_MIN", "PASSWORD_LENGTH_MAX"]

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1     # ~16 MB and ~50 ms per hash
SALT_BYTES, HASH_BYTES = 16, 32
PASSWORD_LENGTH_MIN = 10
PASSWORD_LENGTH_MAX = 256        # scrypt would take more; a bound keeps a login cheap to refuse
_MAXMEM = 64 * 1024 * 1024


class PasswordRejected(FamilyError, ValueError):
    """A new password is unusable; the message says why."""

    def __init__(self, message: str, code: str = "password.weak", **params: object) -> None:
        super().__init__("password", message, code, **params)


def check_strength(password: str, email: str = "") -> None:
    if not isinstance(password, str):
        raise PasswordRejected("give the password as text", "password.not_text")
    if len(password) < PASSWORD_LENGTH_MIN:
        raise PasswordRejected(f"at least {PASSWORD_LENGTH_MIN} characters", "password.too_short",
                               min=PASSWORD_LENGTH_MIN)
    if len(password) > PASSWORD_LENGTH_MAX:
        raise PasswordRejected(f"at most {PASSWORD_LENGTH_MAX} characters", "password.too_long",
                               max=PASSWORD_LENGTH_MAX)
    if email and password.strip().lower() == email.strip().lower():
        raise PasswordRejected("must not be the email address", "password.is_email")
    if len(set(password)) < 4:
        raise PasswordRejected("use more different characters", "password.too_simple")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=_MAXMEM, dklen=HASH_BYTES)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


# Verified when the email is unknown, so an unknown address costs the same time as a known one.
DUMMY_HASH = hash_password("not a password of anyone", salt=b"\0" * SALT_BYTES)


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = _scrypt(password[:PASSWORD_LENGTH_MAX], base64.b64decode(salt), int(n), int(r),
                      int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$")
