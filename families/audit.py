"""The families' audit trail: one append-only row per change, written in the change's transaction."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

__all__ = ["record", "holder_actor"]


def holder_actor(holder_id: uuid.UUID) -> str:
    return f"holder:{holder_id}"


async def record(conn: asyncpg.Connection, *, at: dt.datetime, actor: str, action: str, target: str,
                 detail: dict[str, Any] | None = None) -> int:
    seq: int = await conn.fetchval(
        "INSERT INTO family_audit (at, actor, action, target, detail) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING seq",
        at, actor, action, target, json.dumps(detail or {}, default=str, sort_keys=True))
    return seq
