"""Operators' console passwords: scrypt hashes, set from the CLI, checked at login with throttling.

An API token is for programs; a person at the console logs in with a password. The rules:

1. Only an scrypt hash is stored (``scrypt$n$r$p$salt$hash``, base64), with its parameters, so
   they can be raised later without breaking stored hashes. scrypt costs memory as well as time,
   which is what slows a guesser with GPUs.
2. Checking costs the same whether the operator exists or not (a dummy hash is checked), so the
   login page does not reveal which operator ids exist.
3. Guessing is throttled by the failures recorded in the database (so every node sees them):
   at most `FAILURES_PER_OPERATOR_MAX` per operator id and `FAILURES_PER_SOURCE_MAX` per source
   address within `FAILURE_WINDOW`. A throttled attempt is refused before its password is
   checked, so guesses made meanwhile learn nothing.
4. Setting a password ends the operator's console sessions and writes an audit row.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import asyncpg

from families.passwords import hash_password, verify_password   # one scrypt format for people
from web import audit, sessions
from web.errors import WebError

__all__ = ["PasswordInvalid", "set_password", "check_login", "LoginOutcome", "hash_password",
           "verify_password", "PASSWORD_LENGTH_MIN", "PASSWORD_LENGTH_MAX",
           "FAILURES_PER_OPERATOR_MAX", "FAILURES_PER_SOURCE_MAX", "FAILURE_WINDOW"]

PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 256            # scrypt hashes anything; this bounds the work per attempt
SALT_BYTES = 16
FAILURES_PER_OPERATOR_MAX = 5
FAILURES_PER_SOURCE_MAX = 20
FAILURE_WINDOW = dt.timedelta(minutes=15)


class PasswordInvalid(WebError, ValueError):
    """The new password is unusable; the message says why."""


_DUMMY = hash_password("no operator has this password", salt=bytes(SALT_BYTES))


def _check_new(password: str) -> None:
    if len(password) < PASSWORD_LENGTH_MIN:
        raise PasswordInvalid(f"a password needs at least {PASSWORD_LENGTH_MIN} characters")
    if len(password) > PASSWORD_LENGTH_MAX:
        raise PasswordInvalid(f"a password has at most {PASSWORD_LENGTH_MAX} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in password):
        raise PasswordInvalid("a password has no control characters")


async def set_password(conn: asyncpg.Connection, operator_id: str, password: str, *, actor: str,
                       via: str, now: dt.datetime) -> None:
    """Set (or replace) the operator's console password; ends their console sessions (rule 4)."""
    from web.operators import OperatorNotFound
    _check_new(password)
    hashed = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM operator WHERE id = $1", operator_id):
            raise OperatorNotFound(f"operator {operator_id!r} does not exist")
        existed = await conn.fetchval(
            "SELECT true FROM operator_password WHERE operator_id = $1", operator_id)
        await conn.execute(
            "INSERT INTO operator_password (operator_id, hash, set_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (operator_id) DO UPDATE SET hash = excluded.hash, set_at = excluded.set_at",
            operator_id, hashed, now)
        ended = await sessions.revoke_subject(conn, sessions.Kind.OPERATOR, operator_id, now=now)
        # The audit row says that it changed, never what it is.
        await audit.record(conn, actor=actor, via=via, action="operator.password.set",
                           target=operator_id, before={"had_password": bool(existed)},
                           after={"sessions_ended": ended})


@dataclass(frozen=True)
class LoginOutcome:
    """`operator_id` when the password is right; otherwise `refusal` for the person, and
    `retry_after` (seconds) when the refusal is throttling."""
    operator_id: str | None
    refusal: str | None = None
    retry_after: int | None = None


async def _recent(conn: asyncpg.Connection, column: str, value: str,
                  since: dt.datetime) -> tuple[int, dt.datetime]:
    r = await conn.fetchrow(f"SELECT count(*) AS n, min(at) AS first FROM console_login_failure "
                            f"WHERE {column} = $1 AND at > $2", value, since)
    return int(r["n"]), r["first"]


async def check_login(conn: asyncpg.Connection, operator_id: str, password: str, *, source: str,
                      now: dt.datetime) -> LoginOutcome:
    """Whether this operator id and password log in from `source` now (rules 2 and 3)."""
    async with conn.transaction():
        # One attempt per operator id at a time, so parallel guesses cannot all slip in under
        # the count before any of them is recorded.
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_NAMESPACE,
                           operator_id.strip()[:200])
        return await _check_login(conn, operator_id.strip()[:200], password,
                                  source=source[:64], now=now)


_LOCK_NAMESPACE = 0x1C5_10C1


async def _check_login(conn: asyncpg.Connection, operator_id: str, password: str, *, source: str,
                       now: dt.datetime) -> LoginOutcome:
    since = now - FAILURE_WINDOW
    await conn.execute("DELETE FROM console_login_failure WHERE at < $1", since)
    for column, value, limit in (("operator_id", operator_id, FAILURES_PER_OPERATOR_MAX),
                                 ("source", source, FAILURES_PER_SOURCE_MAX)):
        n, first = await _recent(conn, column, value, since)
        if n >= limit:
            wait = max(1, int((first + FAILURE_WINDOW - now).total_seconds()) + 1)
            return LoginOutcome(None, "login.throttled", wait)
    stored = await conn.fetchval(
        "SELECT p.hash FROM operator_password p JOIN operator o ON o.id = p.operator_id "
        "WHERE p.operator_id = $1", operator_id)
    ok = await asyncio.get_running_loop().run_in_executor(
        None, verify_password, password[:PASSWORD_LENGTH_MAX + 1], stored or _DUMMY)
    if ok and stored is not None and len(password) <= PASSWORD_LENGTH_MAX:
        return LoginOutcome(operator_id)
    await conn.execute("INSERT INTO console_login_failure (operator_id, source, at) "
                       "VALUES ($1, $2, $3)", operator_id, source, now)
    return LoginOutcome(None, "login.failed")
