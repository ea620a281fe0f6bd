"""PIN sessions: the proof that a call's Authorize follows a CheckPin that accepted the PIN.

CheckPin issues an opaque, unguessable token bound to (kiosk, inmate, source address, worker);
Authorize must present it from the same binding within `ttl_seconds`, and each token is good for
one Authorize. Tokens live in the core's memory only (a worker talks to its own core; a core
restart costs an inmate one PIN entry). Pure: the time is passed in.
"""
from __future__ import annotations

import collections
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["PinSessions", "SessionRefusal", "TOKEN_BYTES"]

TOKEN_BYTES = 24


class SessionRefusal:
    """Why a token was refused (stable strings, used in audit rows)."""
    MISSING = "missing"
    UNKNOWN = "unknown"          # never issued, already used, evicted, or expired and swept
    EXPIRED = "expired"
    MISMATCH = "binding_mismatch"


@dataclass(frozen=True)
class _Session:
    kiosk: str
    inmate_id: str
    source_ip: str | None
    worker_id: str | None
    expires: float


class PinSessions:
    def __init__(self, *, ttl_seconds: float, sessions_max: int) -> None:
        if ttl_seconds <= 0 or sessions_max < 1:
            raise ValueError("ttl_seconds must be > 0 and sessions_max >= 1")
        self.ttl_seconds, self.sessions_max = ttl_seconds, sessions_max
        self._by_token: collections.OrderedDict[str, _Session] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._by_token)

    def issue(self, kiosk: str, inmate_id: str, source_ip: str | None, worker_id: str | None,
              now: float) -> str:
        self._sweep(now)
        while len(self._by_token) >= self.sessions_max:
            self._by_token.popitem(last=False)           # the oldest goes first
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._by_token[token] = _Session(kiosk, inmate_id, source_ip, worker_id,
                                         now + self.ttl_seconds)
        return token

    def redeem(self, token: str | None, kiosk: str, inmate_id: str, source_ip: str | None,
               worker_id: str | None, now: float) -> str | None:
        """None if the token is good for this Authorize (it is then used up), else the refusal.
        A token presented with the wrong binding is burnt as well: it has leaked."""
        if not token:
            return SessionRefusal.MISSING
        session = self._by_token.pop(token, None)
        if session is None:
            return SessionRefusal.UNKNOWN
        if session.expires <= now:
            return SessionRefusal.EXPIRED
        binding = (session.kiosk, session.inmate_id, session.source_ip or "",
                   session.worker_id or "")
        presented = (kiosk, inmate_id, source_ip or "", worker_id or "")
        if not all(hmac.compare_digest(a.encode(), b.encode())
                   for a, b in zip(binding, presented)):
            return SessionRefusal.MISMATCH
        return None

    def _sweep(self, now: float) -> None:
        while self._by_token:
            token, session = next(iter(self._by_token.items()))
            if session.expires > now:
                break
            del self._by_token[token]
