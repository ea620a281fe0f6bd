"""Operators and their API tokens: add, list, issue a token (shown once), revoke, authenticate.

A token is ``ics_`` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored, so
a copy of the database gives nobody a working token. Every change writes an audit row in the
same transaction.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from web import audit
from web.errors import WebError
from web.roles import Principal, Role

__all__ = ["Operator", "IssuedToken", "OperatorInvalid", "OperatorNotFound", "add_operator",
           "list_operators", "get_operator", "issue_token", "revoke", "authenticate",
           "TOKEN_PREFIX", "hash_token"]

TOKEN_PREFIX = "ics_"
TOKEN_BYTES = 32
TOKEN_TEXT_MAX = 128                    # anything longer is not one of ours: refused unhashed
OPERATOR_ID = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")


class OperatorInvalid(WebError, ValueError):
    """Operator input is unusable; the message names the field and the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", what=message, where=field)
        self.field = field


class OperatorNotFound(WebError, LookupError):
    """No operator has this name or id."""


@dataclass(frozen=True)
class Operator:
    id: str
    role: Role
    facilities: tuple[str, ...]
    created_at: dt.datetime
    active_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role.value, "facilities": list(self.facilities),
                "created_at": self.created_at.isoformat(), "active_tokens": self.active_tokens}


@dataclass(frozen=True)
class IssuedToken:
    token_id: uuid.UUID
    operator_id: str
    token: str                          # the only time the secret exists outside its holder


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _validate(operator_id: str, role: str, facilities: list[str]) -> Role:
    if not OPERATOR_ID.match(operator_id or ""):
        raise OperatorInvalid("id", f"must be lower-case letters, digits, . _ - (1-64, starting "
                              f"with a letter), got {operator_id!r}")
    try:
        r = Role(role)
    except ValueError:
        raise OperatorInvalid("role", f"must be one of {', '.join(x.value for x in Role)}, "
                              f"got {role!r}") from None
    if r is Role.FACILITY_STAFF and not facilities:
        raise OperatorInvalid("facilities", "facility_staff needs at least one facility")
    if r is not Role.FACILITY_STAFF and facilities:
        raise OperatorInvalid("facilities", f"only facility_staff is scoped to facilities, "
                              f"not {r.value}")
    return r


async def add_operator(conn: asyncpg.Connection, operator_id: str, role: str,
                       facilities: list[str] | None = None, *, actor: str,
                       via: str) -> Operator:
    facilities = sorted(set(facilities or []))
    r = _validate(operator_id, role, facilities)
    async with conn.transaction():
        missing = await conn.fetch(
            "SELECT f FROM unnest($1::text[]) f WHERE NOT EXISTS "
            "(SELECT 1 FROM facility WHERE id = f) ORDER BY f", facilities)
        if missing:
            raise OperatorInvalid("facilities", f"no such facility: {missing[0]['f']!r}")
        row = await conn.fetchrow(
            "INSERT INTO operator (id, role, facilities) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO NOTHING RETURNING created_at", operator_id, r.value, facilities)
        if row is None:
            raise OperatorInvalid("id", f"operator {operator_id!r} already exists")
        await audit.record(conn, actor=actor, via=via, action="operator.add", target=operator_id,
                           after={"role": r.value, "facilities": facilities})
    return Operator(operator_id, r, tuple(facilities), row["created_at"], 0)


_SELECT = """SELECT o.id, o.role, o.facilities, o.created_at,
                    (SELECT count(*) FROM operator_token t
                     WHERE t.operator_id = o.id AND t.revoked_at IS NULL) AS active_tokens
             FROM operator o"""


def _operator(r: asyncpg.Record) -> Operator:
    return Operator(r["id"], Role(r["role"]), tuple(r["facilities"]), r["created_at"],
                    int(r["active_tokens"]))


async def list_operators(conn: asyncpg.Connection) -> list[Operator]:
    return [_operator(r) for r in await conn.fetch(_SELECT + " ORDER BY o.id")]


async def get_operator(conn: asyncpg.Connection, operator_id: str) -> Operator:
    r = await conn.fetchrow(_SELECT + " WHERE o.id = $1", operator_id)
    if r is None:
        raise OperatorNotFound(f"operator {operator_id!r} does not exist")
    return _operator(r)


async def issue_token(conn: asyncpg.Connection, operator_id: str, *, label: str = "",
                      actor: str, via: str) -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_id = uuid.uuid4()
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM operator WHERE id = $1", operator_id):
            raise OperatorNotFound(f"operator {operator_id!r} does not exist")
        await conn.execute(
            "INSERT INTO operator_token (id, operator_id, token_hash, label) "
            "VALUES ($1, $2, $3, $4)", token_id, operator_id, hash_token(token), label)
        # The audit row names the token by id; the secret is never written anywhere.
        await audit.record(conn, actor=actor, via=via, action="operator.token.issue",
                           target=operator_id, after={"token_id": str(token_id), "label": label})
    return IssuedToken(token_id, operator_id, token)


async def revoke(conn: asyncpg.Connection, operator_id: str, *, token_id: uuid.UUID | None = None,
                 actor: str, via: str) -> list[uuid.UUID]:
    """Revoke one token of the operator, or all of them; returns the ids revoked now."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT true FROM operator WHERE id = $1", operator_id):
            raise OperatorNotFound(f"operator {operator_id!r} does not exist")
        rows = await conn.fetch(
            "UPDATE operator_token SET revoked_at = now() WHERE operator_id = $1 "
            "AND revoked_at IS NULL AND ($2::uuid IS NULL OR id = $2) RETURNING id",
            operator_id, token_id)
        if token_id is not None and not rows:
            raise OperatorNotFound(f"operator {operator_id!r} has no active token {token_id}")
        revoked = sorted(r["id"] for r in rows)
        await audit.record(conn, actor=actor, via=via, action="operator.token.revoke",
                           target=operator_id, after={"revoked": [str(t) for t in revoked]})
    return revoked


async def authenticate(conn: asyncpg.Connection, token: str) -> Principal | None:
    """The operator a presented token belongs to, or None (unknown, malformed or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > TOKEN_TEXT_MAX:
        return None
    r = await conn.fetchrow(
        "SELECT o.id, o.role, o.facilities FROM operator_token t JOIN operator o "
        "ON o.id = t.operator_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        hash_token(token))
    if r is None:
        return None
    role = Role(r["role"])
    return Principal(r["id"], role,
                     frozenset(r["facilities"]) if role is Role.FACILITY_STAFF else None)
