"""The demo's family: a confirmed account holder who owns the demo's funded number (the mother
of inmate 10001 in config/demo/directory.toml), so the demo call shows in their history."""
from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from families import numbers
from families.passwords import hash_password

__all__ = ["seed_demo_family", "DEMO_EMAIL", "DEMO_PASSWORD", "DEMO_NUMBER"]

DEMO_EMAIL = "jane@family.example"
DEMO_PASSWORD = "demo-family-2026"     # a demo login, printed by `ics demo`; change it anywhere real
DEMO_NUMBER = "+19515550101"


async def seed_demo_family(conn: asyncpg.Connection, *, currency: str = "USD",
                           now: dt.datetime | None = None) -> uuid.UUID:
    """Idempotent: the holder, confirmed, with the demo number proven."""
    now = now or dt.datetime.now(dt.timezone.utc)
    holder: uuid.UUID | None = await conn.fetchval(
        "SELECT id FROM family_holder WHERE email = $1", DEMO_EMAIL)
    if holder is None:
        holder = uuid.uuid4()
        await conn.execute(
            "INSERT INTO family_holder (id, email, password_hash, language, verified_at, "
            "created_at, last_request_at) VALUES ($1, $2, $3, 'en', $4, $4, $4)",
            holder, DEMO_EMAIL, hash_password(DEMO_PASSWORD), now)
    await numbers.claim(conn, holder, DEMO_NUMBER, now=now)
    await numbers.prove(conn, holder, DEMO_NUMBER, by="demo", now=now, currency=currency)
    return holder
