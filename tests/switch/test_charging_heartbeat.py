"""A call whose End is still on its way is the worker's news: its heartbeats name it (as ending,
holding no slot), so the core does not close it as lost while the End waits in the worker's
report queue, and the End then settles it as the worker measured it."""
import dataclasses

import pytest

from switch.wire import protocol as wire
from switch.worker.link import CoreLink

from rig import close_rig, flat_tariff, make_rig
from test_core_charging import PER_SECOND, call_to, cdr_of, with_tax

SILENCE_SECONDS = 30


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn, tariff=flat_tariff(increment=1))
    r.core.s = dataclasses.replace(r.core.s, call_silence_seconds=SILENCE_SECONDS)
    yield r
    await r.verify()
    await close_rig(r)


async def test_a_call_whose_end_is_pending_is_not_closed_as_lost_and_its_end_settles_it(rig):
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(40)                  # hung up at 40 s; the End waits in the worker's queue
    for _ in range(3):                     # heartbeats go on meanwhile, past the silence window
        hb = await rig.call(wire.Heartbeat, worker_id="w1", active_calls=[],
                            ending_calls=[cid])
        assert hb["unknown_calls"] == []   # an ending call is never news to the worker
        rig.clock.advance(SILENCE_SECONDS - 5)
        assert await rig.core.close_silent_calls() == []
    e = await rig.call(wire.End, call_id=cid, talk_seconds=40, disposition="completed")
    assert e["charged_micros"] == with_tax(40 * PER_SECOND)
    cdr = await cdr_of(rig, cid)
    assert (cdr["disposition"], cdr["talk_seconds"], cdr["late_end_at"]) == ("completed", 40, None)


async def test_a_heartbeat_without_ending_calls_is_still_understood(rig):
    """An older worker sends no ending_calls: its active calls are refreshed as before."""
    cid = await call_to(rig)
    await rig.call(wire.Accept, call_id=cid)
    rig.clock.advance(SILENCE_SECONDS - 5)
    hb = await rig.call(wire.Heartbeat, worker_id="w1", active_calls=[cid, "nonsense"])
    assert hb["unknown_calls"] == ["nonsense"]
    rig.clock.advance(10)
    assert await rig.core.close_silent_calls() == []
    await rig.call(wire.End, call_id=cid, talk_seconds=30, disposition="completed")


def test_the_worker_names_calls_whose_end_waits_in_its_report_queue(reactor):
    link = CoreLink(reactor, "tcp:127.0.0.1:9", worker_id="w1", capacity=2, sip_port=5070,
                    heartbeat_seconds=5, answer_seconds=1, active_calls=lambda: ["up-1"])
    # Not connected: reports stay queued, as they do while the core cannot answer them.
    link.report(wire.End, call_id="ended-1", talk_seconds=40, disposition="completed")
    link.report(wire.Block, call_id="ended-1", scope="facility")
    link.report(wire.End, call_id="ended-2", talk_seconds=7, disposition="completed")
    assert link.heartbeat_arguments() == {"active_calls": ["up-1"],
                                          "ending_calls": ["ended-1", "ended-2"]}
    for _, _, d in link._pending:          # nothing will answer them: let them go quietly
        d.addErrback(lambda f: None)
