"""Live calls over HTTP: the list, and terminate reaching the call's worker over AMP (the
worker's real link, `switch.worker.link.CoreLink`, connected to a live node)."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from switch.wire import amp_auth
from switch.worker.link import CoreLink
from tests.web.cdr_rows import ensure_facilities
from tests.web.conftest import make_operator

WAIT_SECONDS_MAX = 15.0


async def _open_call(db, worker: str, facility: str = "north") -> uuid.UUID:
    cid = uuid.uuid4()
    now = dt.datetime.now(dt.timezone.utc)
    await db.execute(
        "INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "privileged, record, max_seconds, limited_by, worker_id, authorized_at, accepted_at, "
        "last_seen_at, grant_until) VALUES ($1, 'talking', $2, 'k-1', '1001', '+12125550142', "
        "'interstate', false, true, 900, 'balance', $3, $4, $4, $4, 60)",
        cid, facility, worker, now)
    return cid


@pytest.fixture
async def worker(reactor, node_amp_port, node_data_dir, admin, monkeypatch):
    """A worker's link to the node, recording the Terminates it receives. It proves its Hello
    with the key a node without a supervisor derives for it from the node secret."""
    secret = amp_auth.node_secret(node_data_dir / amp_auth.SECRET_FILE)
    monkeypatch.setenv(amp_auth.KEY_ENV, amp_auth.derived_key(secret, "w-api-test").hex())
    got: list[tuple[str, str]] = []
    arrived = asyncio.Event()
    calls: list[str] = []

    def on_terminate(call_id: str, reason: str) -> bool:
        got.append((call_id, reason))
        arrived.set()
        return call_id in calls
    link = CoreLink(reactor, f"tcp:127.0.0.1:{node_amp_port}", worker_id="w-api-test",
                    capacity=2, sip_port=5999, heartbeat_seconds=0.5, answer_seconds=3.0,
                    active_calls=lambda: list(calls), on_terminate=on_terminate)
    link.start()
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
    while not link.reachable:          # polled with a bound: the link offers no event
        assert asyncio.get_running_loop().time() < deadline, "the worker link never said Hello"
        await asyncio.sleep(0.05)
    yield link, calls, got, arrived
    await link.stop().asFuture(asyncio.get_running_loop())


async def test_live_calls_are_listed_and_one_is_terminated_by_its_worker(admin, db, worker):
    await ensure_facilities(db)
    link, calls, got, arrived = worker
    cid = await _open_call(db, "w-api-test")
    calls.append(str(cid))
    live = admin.get("/calls").json()["calls"]
    assert str(cid) in [c["call_id"] for c in live]
    r = await asyncio.to_thread(admin.post, f"/calls/{cid}/terminate",
                                json={"reason": "operator"})
    assert r.status_code == 200, r.text
    assert r.json() == {"call_id": str(cid), "worker": "w-api-test", "found": True}
    await asyncio.wait_for(arrived.wait(), WAIT_SECONDS_MAX)
    assert got == [(str(cid), "operator")]
    e = admin.get("/audit", params={"action": "call.terminate"}).json()["events"][0]
    assert e["target"] == f"call:{cid}" and e["after"] == {"reason": "operator"}


async def test_terminate_refuses_what_it_cannot_reach(admin, db, worker):
    await ensure_facilities(db)
    r = admin.post(f"/calls/{uuid.uuid4()}/terminate", json={})
    assert r.status_code == 404
    gone = await _open_call(db, "w-nowhere")
    r = admin.post(f"/calls/{gone}/terminate", json={})
    assert r.status_code == 503 and "not connected" in r.json()["detail"]
    ended = await _open_call(db, "w-api-test")
    await db.execute("UPDATE call SET state = 'ended' WHERE id = $1", ended)
    assert admin.post(f"/calls/{ended}/terminate", json={}).status_code == 409
    assert admin.post(f"/calls/{ended}/terminate", json={"reason": "DROP TABLE"}
                      ).status_code == 422
    live = await _open_call(db, "w-api-test")
    for disposition in ("refused", "completed", "worker_lost"):
        r = admin.post(f"/calls/{live}/terminate", json={"reason": disposition})
        assert r.status_code == 422 and "disposition" in r.json()["detail"], r.text
    assert not await db.fetchval("SELECT count(*) FROM audit_event WHERE target = $1",
                                 f"call:{live}")
    staff = admin.as_(await make_operator(db, "call-staff", "facility_staff", ["south"]))
    north = await _open_call(db, "w-api-test", "north")
    assert staff.post(f"/calls/{north}/terminate", json={}).status_code == 403
    assert str(north) not in [c["call_id"] for c in staff.get("/calls").json()["calls"]]
