"""Server-side browser sessions for operators (the console) and account holders (the portal).

A session belongs to a *kind* ('operator' or 'holder') and a *subject* (the operator id or the
holder id); this module knows nothing else about either. Its rules:

1. The browser holds a random token (``secrets.token_urlsafe``, 256 bits) in a cookie; the
   database holds only its SHA-256. A copy of the table opens no session, and 256 random bits
   leave nothing to brute-force, so a fast hash is enough.
2. A session ends at the first of: its fixed expiry (``lifetime`` after login, never extended),
   its idle expiry (``idle`` after the last request seen), or revocation. An ended session is
   never resumed; `resume` answers None for it exactly as for an unknown token.
3. Login rotates: `open_session` revokes the session the browser already carried (if any) in the
   same transaction, so a token planted before login (session fixation) is worthless after it.
4. Every session has its own CSRF token, sent in forms and compared with `csrf_ok` in constant
   time. The cookie is SameSite=Strict as well: two independent guards.
5. The cookie is HttpOnly (no script reads it), Path=/, SameSite=Strict, and Secure unless the
   site is plain-HTTP on a loopback address (`secure_default`); with Secure its name takes the
   ``__Host-`` prefix, which browsers only accept from a secure origin without a Domain.

Sessions that ended more than PURGE_KEEP ago are deleted by every node hourly (`start_purging`).
The clock is injected (`now`), so expiry is tested without waiting.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import hashlib
import hmac
import ipaddress
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger("ics.web")

__all__ = ["Kind", "SessionPolicy", "Session", "OpenedSession", "open_session", "resume",
           "revoke", "revoke_subject", "purge_ended", "start_purging", "csrf_ok", "cookie_header",
           "clear_cookie_header", "cookie_name", "secure_default", "hash_token",
           "TOKEN_BYTES", "TOKEN_TEXT_MAX"]

PURGE_KEEP = dt.timedelta(days=30)        # ended sessions kept this long (for the audit's sake)
PURGE_BATCH_MAX = 5000                    # rows one DELETE removes
PURGE_INTERVAL_SECONDS = 3600.0           # a node purges hourly (and at start)
TOKEN_BYTES = 32                         # 256 random bits per session token
CSRF_BYTES = 32
TOKEN_TEXT_MAX = 128                     # a longer cookie is not one of ours: refused unhashed
SUBJECT_LENGTH_MAX = 200
TOUCH_INTERVAL = dt.timedelta(seconds=60)   # last_seen_at is written at most this often


class Kind(enum.StrEnum):
    OPERATOR = "operator"
    HOLDER = "holder"


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives. `lifetime` is fixed from login; `idle` from the last request."""
    lifetime: dt.timedelta = dt.timedelta(hours=12)
    idle: dt.timedelta = dt.timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.lifetime <= dt.timedelta(0) or self.idle <= dt.timedelta(0):
            raise ValueError("session lifetime and idle limit must be positive")


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    kind: Kind
    subject: str
    csrf_token: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime

    def idle_expires_at(self, policy: SessionPolicy) -> dt.datetime:
        return min(self.expires_at, self.last_seen_at + policy.idle)


@dataclass(frozen=True)
class OpenedSession:
    """A new session and its token: the only time the token exists outside the cookie."""
    token: str
    session: Session


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _aware(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("session times must be timezone-aware")
    return now


def _session(r: asyncpg.Record) -> Session:
    return Session(r["id"], Kind(r["kind"]), r["subject"], r["csrf_token"], r["created_at"],
                   r["last_seen_at"], r["expires_at"])


async def open_session(conn: asyncpg.Connection, kind: Kind | str, subject: str, *,
                       policy: SessionPolicy, now: dt.datetime,
                       replacing: str | None = None) -> OpenedSession:
    """Start a session for `subject` (after the caller has checked the credentials).

    `replacing` is the token the browser presented before login, if any: it is revoked here
    (rule 3), whoever it belonged to.
    """
    kind = Kind(kind)
    now = _aware(now)
    if not subject or len(subject) > SUBJECT_LENGTH_MAX:
        raise ValueError(f"session subject must be 1-{SUBJECT_LENGTH_MAX} characters")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    csrf = secrets.token_urlsafe(CSRF_BYTES)
    async with conn.transaction():
        if replacing:
            await revoke(conn, replacing, now=now)
        r = await conn.fetchrow(
            "INSERT INTO web_session (id, kind, subject, token_hash, csrf_token, created_at, "
            "last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING *",
            uuid.uuid4(), kind.value, subject, hash_token(token), csrf, now,
            now + policy.lifetime)
    return OpenedSession(token, _session(r))


async def resume(conn: asyncpg.Connection, token: str | None, *, kind: Kind | str,
                 policy: SessionPolicy, now: dt.datetime) -> Session | None:
    """The live session this cookie token opens, or None (unknown, other kind, ended: rule 2)."""
    kind = Kind(kind)
    now = _aware(now)
    if not token or len(token) > TOKEN_TEXT_MAX:
        return None
    r = await conn.fetchrow(
        "SELECT * FROM web_session WHERE token_hash = $1 AND kind = $2 AND revoked_at IS NULL",
        hash_token(token), kind.value)
    if r is None:
        return None
    s = _session(r)
    if now >= s.expires_at or now >= s.last_seen_at + policy.idle:
        return None
    if now - s.last_seen_at >= TOUCH_INTERVAL:
        # Conditional on the row still being live, so a concurrent logout is never undone.
        touched = await conn.fetchrow(
            "UPDATE web_session SET last_seen_at = $2 WHERE id = $1 AND revoked_at IS NULL "
            "AND last_seen_at < $2 RETURNING *", s.id, now)
        if touched is not None:
            s = _session(touched)
    return s


async def revoke(conn: asyncpg.Connection, token: str | None, *, now: dt.datetime) -> bool:
    """End the session of this token (logout); True if a live one was ended now."""
    if not token or len(token) > TOKEN_TEXT_MAX:
        return False
    done = await conn.fetchval(
        "UPDATE web_session SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL "
        "RETURNING true", hash_token(token), _aware(now))
    return bool(done)


async def revoke_subject(conn: asyncpg.Connection, kind: Kind | str, subject: str, *,
                         now: dt.datetime) -> int:
    """End every session of one subject (password changed, operator removed); how many ended."""
    rows = await conn.fetch(
        "UPDATE web_session SET revoked_at = $3 WHERE kind = $1 AND subject = $2 "
        "AND revoked_at IS NULL RETURNING id", Kind(kind).value, subject, _aware(now))
    return len(rows)


async def purge_ended(conn: asyncpg.Connection, *, now: dt.datetime,
                      keep: dt.timedelta = PURGE_KEEP, limit: int = PURGE_BATCH_MAX) -> int:
    """Delete at most `limit` sessions that ended more than `keep` ago (fixed expiry or
    revocation); a short statement each, so a large backlog never holds long locks."""
    cutoff = _aware(now) - keep
    status = await conn.execute(
        "DELETE FROM web_session WHERE id IN (SELECT id FROM web_session WHERE expires_at < $1 "
        "UNION ALL SELECT id FROM web_session WHERE revoked_at < $1 LIMIT $2)", cutoff, limit)
    return int(status.split()[-1])


def start_purging(pool: asyncpg.Pool, clock: Callable[[], dt.datetime], *,
                  interval: float = PURGE_INTERVAL_SECONDS,
                  purged: Callable[[int], None] | None = None) -> asyncio.Task[None]:
    """Purge ended sessions now and every `interval` seconds, batch after batch until none is
    left; `purged` hears each round's count (logs, tests)."""
    async def loop() -> None:
        while True:
            try:
                total = 0
                while True:
                    async with pool.acquire() as conn:
                        n = await purge_ended(conn, now=clock(), limit=PURGE_BATCH_MAX)
                    total += n
                    if n < PURGE_BATCH_MAX:
                        break
                if total:
                    log.info("purged %d ended web sessions", total)
                if purged is not None:
                    purged(total)
            except asyncio.CancelledError:
                raise
            except Exception:       # noqa: BLE001 - the next round tries again
                log.exception("web session purge failed")
            await asyncio.sleep(interval)
    return asyncio.ensure_future(loop())


def csrf_ok(session: Session | None, supplied: str | None) -> bool:
    """Whether a form's CSRF token is this session's (constant-time; rule 4)."""
    if session is None or not supplied or len(supplied) > TOKEN_TEXT_MAX:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), supplied.encode("utf-8", "replace"))


def secure_default(host: str, *, tls: bool) -> bool:
    """Secure cookies unless the site is plain HTTP on a loopback address (rule 5)."""
    if tls:
        return True
    name = host.strip("[]").lower()
    if name == "localhost":
        return False
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return True


def cookie_name(base: str, *, secure: bool) -> str:
    return f"__Host-{base}" if secure else base


def cookie_header(name: str, token: str, *, secure: bool, max_age: int | None = None) -> str:
    """The Set-Cookie value for a session token (rule 5). Without `max_age` the cookie lives
    until the browser closes; the server's expiry holds either way."""
    if not name or any(c in name for c in "=;, \t\r\n") or any(c in token for c in ";, \r\n"):
        raise ValueError("cookie name or value has a separator in it")
    parts = [f"{cookie_name(name, secure=secure)}={token}", "Path=/", "HttpOnly",
             "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie_header(name: str, *, secure: bool) -> str:
    """The Set-Cookie value that removes the session cookie from the browser (logout)."""
    return cookie_header(name, "", secure=secure, max_age=0)
