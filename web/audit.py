"""The audit trail: one append-only row per change (who, when, what, before, after).

`record` runs inside the caller's transaction, so a change and its audit row commit together or
not at all. The table refuses UPDATE, DELETE and TRUNCATE (web/migrations/0001_operators.sql).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["AuditEvent", "record", "events", "AUDIT_PAGE_MAX"]

AUDIT_PAGE_MAX = 1000


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: dt.datetime
    actor: str
    via: str
    action: str
    target: str
    before: Any
    after: Any


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


async def record(conn: asyncpg.Connection, *, actor: str, via: str, action: str, target: str,
                 before: Any = None, after: Any = None) -> int:
    """Append one event; returns its sequence number."""
    seq: int = await conn.fetchval(
        "INSERT INTO audit_event (actor, via, action, target, before, after) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb) RETURNING seq",
        actor, via, action, target, _json(before), _json(after))
    return seq


async def events(conn: asyncpg.Connection, *, actor: str | None = None,
                 action: str | None = None, target: str | None = None,
                 since: dt.datetime | None = None, until: dt.datetime | None = None,
                 before_seq: int | None = None, limit: int = 100) -> list[AuditEvent]:
    """Newest first; `before_seq` continues a page (keyset on seq)."""
    rows = await conn.fetch(
        """SELECT seq, at, actor, via, action, target, before::text AS before, after::text AS after
           FROM audit_event
           WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
             AND ($3::text IS NULL OR target = $3)
             AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
             AND ($6::bigint IS NULL OR seq < $6)
           ORDER BY seq DESC LIMIT $7""",
        actor, action, target, since, until, before_seq, max(1, min(limit, AUDIT_PAGE_MAX)))
    return [AuditEvent(r["seq"], r["at"], r["actor"], r["via"], r["action"], r["target"],
                       None if r["before"] is None else json.loads(r["before"]),
                       None if r["after"] is None else json.loads(r["after"])) for r in rows]
