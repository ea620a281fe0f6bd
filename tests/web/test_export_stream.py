"""The CSV export under a slow reader and a failure: COPY waits for the client (backpressure),
and an export whose COPY dies mid-way is cut, never ended as if complete."""
from __future__ import annotations

import asyncio

import pytest
import requests

from tests.web.cdr_rows import ensure_facilities

ROWS = 200_000                  # ~45 MB of CSV: far more than the socket buffers hold
WAIT_SECONDS_MAX = 30.0


@pytest.fixture(scope="module")
async def many(db, admin):
    await ensure_facilities(db)
    await db.execute(
        """INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction,
                             privileged, record, max_seconds, limited_by, authorized_at,
                             last_seen_at, ended_at)
           SELECT md5('c' || i)::uuid, 'ended', 'north', 'k-1', '1001', '+12125550142',
                  'interstate', false, true, 900, 'balance',
                  timestamptz '2026-01-01' + i * interval '1 second',
                  timestamptz '2026-01-01' + i * interval '1 second',
                  timestamptz '2026-01-01' + i * interval '1 second'
           FROM generate_series(1, $1) i""", ROWS)
    await db.execute(
        """INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction,
                            privileged, authorized_at, ended_at, talk_seconds, billed_seconds,
                            disposition, call_micros, tax_micros, total_micros, charges,
                            transfer_ids)
           SELECT id, facility_id, kiosk_id, inmate_id, e164, jurisdiction, false,
                  authorized_at, ended_at, 60, 60, 'completed', 210000, 0, 210000, '{}', '{}'
           FROM call""")
    return ROWS


async def _copy_backend(db) -> int | None:
    return await db.fetchval("SELECT pid FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT%' "
                             "AND pid <> pg_backend_pid()")


async def test_a_paused_reader_holds_the_copy_and_a_dead_copy_cuts_the_stream(admin, db, many):
    r = requests.get(admin.base + "/cdrs.csv", headers={"Authorization": f"Bearer {admin.token}"},
                     stream=True, timeout=(10, WAIT_SECONDS_MAX))
    assert r.status_code == 200
    chunks = r.iter_content(65536)
    first = next(chunks)
    assert first.startswith(b"call_id,")
    # The reader has taken 64 KB of ~45 MB and stopped: the COPY must be waiting on it.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS_MAX
    pid = None
    while pid is None and loop.time() < deadline:      # polled with a bound
        pid = await _copy_backend(db)
        if pid is None:
            await asyncio.sleep(0.05)
    assert pid is not None, "no COPY in progress while the client is paused"
    assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    received = len(first)
    # Cut, not ended: the HTTP client sees the body end without its last chunk at once
    # (neither a clean end nor a hang until a timeout).
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in chunks:
            received += len(chunk)
    assert received < many * 200               # it really was cut mid-way
    # The node is fine afterwards: a filtered export completes.
    ok = admin.get("/cdrs.csv", params={"since": "2026-01-03T07:00:00Z"})
    assert ok.status_code == 200 and ok.text.count("\n") == 1 + sum(
        1 for i in range(1, many + 1) if i >= 2 * 86400 + 7 * 3600)
