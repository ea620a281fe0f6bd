"""Terminate over the API, through a real hang-up: a node with a real media worker (pjsua2) and
the API mounted, a SIPp kiosk and a SIPp called party who accepts and then waits. An operator
terminates the call over HTTP; the worker sends BYE on both legs, the CDR says how it ended, and
the ledger holds exactly the measured talk's price (verify passes).

Drives SIP and RTP: run under `flock /tmp/ics-sip.lock`."""
from __future__ import annotations

import asyncio

import asyncpg
import pytest
import requests

import tests.e2e.conftest as e2e
from tests.e2e.conftest import MOM, WAIT, expected_charge, rig  # noqa: F401  (the node rig)
from tests.web.conftest import make_operator

pytestmark = [pytest.mark.timeout(180), e2e.pytestmark]
FUNDED = 20_000_000                      # MOM's balance in tests/e2e/directory.toml


@pytest.fixture(autouse=True)
def node_with_api(monkeypatch):
    """The e2e rig's node, with the operations API mounted as `ics serve` mounts it (set up
    before the rig starts its node: autouse fixtures come first)."""
    from ops.api import api_mount
    start = e2e.start_node

    async def start_with_api(cfg, reactor, **kw):
        return await start(cfg, reactor, mount=api_mount(cfg), **kw)
    monkeypatch.setattr(e2e, "start_node", start_with_api)


async def _until(predicate, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not (value := await predicate()):
        assert loop.time() < deadline, f"{what}: not so after {WAIT}s"
        await asyncio.sleep(0.1)              # polled with a bound: the database has no event
    return value


async def test_an_operator_terminates_a_talking_call_and_it_settles_on_its_measured_talk(rig):
    conn = await asyncpg.connect(rig.dsn)
    try:
        token = await make_operator(conn, "term-admin", "admin")
        base = f"http://127.0.0.1:{rig.node.http_port}/api/v1"
        called = await rig.called_party("1")            # accepts, then waits for the worker's BYE
        kiosk = await rig.kiosk(MOM)                    # waits for the worker's BYE too

        async def talking():
            return await conn.fetchval("SELECT id FROM call WHERE state = 'talking'")
        cid = await _until(talking, "the called party accepted")
        live = await asyncio.to_thread(requests.get, f"{base}/calls", timeout=30,
                                       headers={"Authorization": f"Bearer {token}"})
        assert str(cid) in [c["call_id"] for c in live.json()["calls"]]

        r = await asyncio.to_thread(requests.post, f"{base}/calls/{cid}/terminate",
                                    json={"reason": "operator"}, timeout=30,
                                    headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["found"] is True

        # Both legs end: each SIPp scenario completes only on receiving the worker's BYE.
        assert await called.finished() == 0, called.output() + rig.log()
        assert await kiosk.finished() == 0, kiosk.output() + rig.log()
        assert "BYE sip:" in called.messages() and "BYE sip:" in kiosk.messages()

        (cdr,) = await rig.wait_cdrs(1)
        assert cdr["call_id"] == cid and cdr["disposition"] == "completed", rig.log()
        assert cdr["talk_seconds"] < 60          # ended by the operator, not by the money or time
        billed, call, tax = expected_charge(cdr["talk_seconds"])
        assert (cdr["billed_seconds"], cdr["call_micros"], cdr["tax_micros"]) == (billed, call,
                                                                                  tax)
        balance = await rig.balance(MOM)
        assert balance.pending == 0 and balance.available == FUNDED - call - tax
        assert (await rig.verify()).ok
        assert await conn.fetchval("SELECT state FROM call WHERE id = $1", cid) == "ended"
        assert await conn.fetchval(
            "SELECT count(*) FROM audit_event WHERE action = 'call.terminate' AND target = $1 "
            "AND actor = 'term-admin'", f"call:{cid}") == 1
        # Terminating it again: it has ended.
        again = await asyncio.to_thread(requests.post, f"{base}/calls/{cid}/terminate", json={},
                                        timeout=30, headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 409
    finally:
        await conn.close()
