"""CDR rows for API tests: calls and their CDRs written straight to the tables, as the core would."""
from __future__ import annotations

import datetime as dt
import json
import random
import uuid

FACILITIES = ("north", "south")
DISPOSITIONS = ("completed", "grant_exhausted", "no_answer", "refused")
JURISDICTIONS = ("local", "intrastate", "interstate", "international")
NUMBERS = ("+12125550142", "+13125550100", "+442079460018")
INMATES = ("1001", "1002", "2001")
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


async def ensure_facilities(conn) -> None:
    await conn.execute(
        "INSERT INTO facility (id, name, state, time_zone, adp, kind, profile) VALUES "
        "('north', 'North', 'NY', 'America/New_York', 100, 'jail', 'fcc-2024'), "
        "('south', 'South', 'TX', 'America/Chicago', 100, 'jail', 'fcc-2024') "
        "ON CONFLICT DO NOTHING")


async def insert_cdrs(conn, n: int, *, seed: int = 7) -> list[dict]:
    """`n` CDRs spread over facilities, inmates, numbers and days; some end at the same instant
    (pages must order ties by call id). Returns them as dicts, as the API names the fields."""
    await ensure_facilities(conn)
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        call_id = uuid.UUID(int=rnd.getrandbits(128))
        ended = T0 + dt.timedelta(hours=rnd.randrange(0, 24 * 20)) if i % 5 else T0
        talk = rnd.randrange(0, 900)
        billed = -(-talk // 60) * 60
        call_micros = billed // 60 * 210_000 + rnd.choice((0, 3))
        tax = rnd.choice((0, 10_000, 1))
        row = {"call_id": call_id, "facility": rnd.choice(FACILITIES), "kiosk": "k-1",
               "inmate": rnd.choice(INMATES), "number": rnd.choice(NUMBERS),
               "jurisdiction": rnd.choice(JURISDICTIONS), "disposition": rnd.choice(DISPOSITIONS),
               "authorized_at": ended - dt.timedelta(seconds=talk + 30), "ended_at": ended,
               "talk_seconds": talk, "billed_seconds": billed, "call_micros": call_micros,
               "tax_micros": tax}
        out.append(row)
    await conn.executemany(
        "INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "privileged, record, max_seconds, limited_by, authorized_at, last_seen_at, ended_at) "
        "VALUES ($1, 'ended', $2, $3, $4, $5, $6, false, true, 900, 'balance', $7, $8, $8)",
        [(r["call_id"], r["facility"], r["kiosk"], r["inmate"], r["number"], r["jurisdiction"],
          r["authorized_at"], r["ended_at"]) for r in out])
    await conn.executemany(
        "INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "payment_type, privileged, authorized_at, accepted_at, ended_at, talk_seconds, "
        "billed_seconds, disposition, call_micros, tax_micros, total_micros, charges, "
        "transfer_ids) VALUES ($1, $2, $3, $4, $5, $6, 'prepaid', false, $7, $7, $8, $9, $10, "
        "$11, $12, $13, $12::bigint + $13::bigint, $14, '{}')",
        [(r["call_id"], r["facility"], r["kiosk"], r["inmate"], r["number"], r["jurisdiction"],
          r["authorized_at"], r["ended_at"], r["talk_seconds"], r["billed_seconds"],
          r["disposition"], r["call_micros"], r["tax_micros"], json.dumps({"spans": []}))
         for r in out])
    return out
