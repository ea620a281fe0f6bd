"""A node started in-process (no media workers): /health and /metrics over HTTP, metrics move
with calls."""
import asyncio
import json
import uuid
import urllib.request

import asyncpg
import pytest
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols import amp

from ops.config import load
from switch.wire import protocol as wire
from ops.demo import load_demo_data
from ops.node import start_node

from rig import authenticated_client, keyed_authorize


async def metrics_show(base: str, line: str, timeout: float = 30.0) -> str:
    """/metrics once it shows `line` (the sweep that counts calls runs every 0.2 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        _, text = await asyncio.to_thread(get, base + "/metrics")
        if line in text:
            return text
        assert loop.time() < deadline, f"/metrics never showed {line!r}:\n{text}"
        await asyncio.sleep(0.05)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_health_and_metrics_report_the_node_and_its_calls(reactor, pg_dsn, tmp_path):
    cfg = load(overrides={"database": {"url": pg_dsn}, "node": {"data_dir": str(tmp_path)},
                          "core": {"sweep_interval_seconds": 0.2}}, environ={})
    conn = await asyncpg.connect(pg_dsn)
    await load_demo_data(conn, cfg, out=lambda m: None)
    await conn.close()
    node = await start_node(cfg, reactor, workers=0, amp_port=0, http_port=0)
    loop = asyncio.get_running_loop()
    try:
        base = f"http://127.0.0.1:{node.http_port}"
        status, body = await asyncio.to_thread(get, base + "/health")
        assert status == 200 and json.loads(body)["database"] == "ok"
        w = await authenticated_client(reactor, node.amp_port, node.workers.key_for("w1"), "w1")
        a = await keyed_authorize(w, "kiosk-a1", "10001", "+19515550101")
        refused = await keyed_authorize(w, "kiosk-a1", "10001", "+19515550177")
        assert a["allow"] and refused["reason"] == "not_approved"
        await w.callRemote(wire.Accept, call_id=a["call_id"]).asFuture(loop)
        await metrics_show(base, "ics_calls_active 1.0")     # a sweep counts the open call
        await w.callRemote(wire.End, call_id=a["call_id"], talk_seconds=30,
                           disposition="completed").asFuture(loop)
        text = await metrics_show(base, "ics_calls_active 0.0")
        # The demo tariff has an evening band: the revenue is what the call's CDR charged.
        conn = await asyncpg.connect(pg_dsn)
        try:
            revenue = await conn.fetchval("SELECT call_micros FROM cdr WHERE call_id = $1",
                                          uuid.UUID(a["call_id"]))
        finally:
            await conn.close()
        assert revenue in (40000, 50000), revenue      # one billed minute, evening or day
        for line in ('ics_authorizations_total{outcome="allow"} 1.0',
                     'ics_authorizations_total{outcome="not_approved"} 1.0',
                     'ics_calls_total{disposition="completed"} 1.0',
                     'ics_billed_seconds_total{facility="riverside"} 60.0',
                     # revenue in the currency's unit: micro-units converted once, at export
                     f'ics_revenue_total{{currency="USD",facility="riverside"}} '
                     f'{revenue / 1_000_000!r}',
                     "ics_calls_active 0.0"):
            assert line in text, line
        assert 'ics_core_request_seconds_count{command="authorize"} 2.0' in text
        assert "ics_ledger_submit_seconds_count" in text
        w.transport.loseConnection()
    finally:
        await node.stop()
    status, _ = await asyncio.to_thread(lambda: get_refused(base + "/health"))
    assert status == "refused"


def get_refused(url):
    try:
        urllib.request.urlopen(url, timeout=2)
        return "answered", None
    except OSError:
        return "refused", None
