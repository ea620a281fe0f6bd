"""A heartbeat refreshes only its own worker's calls: over real AMP links to the core, on the real
PostgreSQL, worker B naming worker A's call neither keeps it open nor learns it exists."""
import dataclasses

import pytest

from switch.wire import protocol as wire

from rig import WORKER_ID, authenticated_client, close_rig, flat_tariff, make_rig, wait
from test_core_charging import PER_SECOND, call_to, cdr_of, with_tax

SILENCE_SECONDS = 30
OTHER = "w2"


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=flat_tariff(increment=1))
    r.core.s = dataclasses.replace(r.core.s, call_silence_seconds=SILENCE_SECONDS)
    r.other = await authenticated_client(reactor, r.port.getHost().port,
                                         r.registry.key_for(OTHER), worker_id=OTHER,
                                         sip_port=5998)
    yield r
    r.other.transport.loseConnection()
    await r.verify()
    await close_rig(r)


@pytest.mark.parametrize("named_as", ["active_calls", "ending_calls"])
async def test_another_workers_heartbeat_does_not_keep_a_call_open(rig, named_as):
    """Guard: Core.touch refreshes a call only if its row names the worker that beats."""
    cid = await call_to(rig)                       # authorized over worker w1's link
    await rig.call(wire.Accept, call_id=cid)
    for _ in range(3):                             # w1 is silent; w2 beats naming w1's call
        rig.clock.advance(SILENCE_SECONDS - 10)
        names = {"active_calls": [], "ending_calls": []} | {named_as: [cid]}
        hb = await wait(rig.other.callRemote(wire.Heartbeat, worker_id=OTHER, **names))
        assert hb["unknown_calls"] == ([cid] if named_as == "active_calls" else [])
    assert [str(c) for c in await rig.core.close_silent_calls()] == [cid]
    cdr = await cdr_of(rig, cid)
    assert (cdr["disposition"], cdr["worker_id"]) == ("worker_lost", WORKER_ID)


async def test_a_workers_own_heartbeat_keeps_its_call_open(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    for _ in range(3):
        rig.clock.advance(SILENCE_SECONDS - 10)
        hb = await rig.call(wire.Heartbeat, worker_id=WORKER_ID, active_calls=[cid])
        assert hb["unknown_calls"] == []
        assert await rig.core.close_silent_calls() == []
    e = await rig.call(wire.End, call_id=cid, talk_seconds=40, disposition="completed")
    assert e["charged_micros"] == with_tax(40 * PER_SECOND)
