"""The media worker end to end: real SIP and RTP on loopback between a worker process, the pjsua2
simulators in this process (switch.sim) and a scripted core speaking AMP (fakecore).

Layout decided here: the worker under test runs as `python -m switch.worker` in a subprocess (one
pjsua2 endpoint per process); the simulated kiosks and called parties share one `Phone` in the
test process, polled by the session's reactor; the fake core listens in the test process too.
Billing periods are 2 seconds; waits are generous, and no sleep is an assertion.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from switch.sim import DtmfMethod, Phone, loud_spans, wav_rms, write_tone
from tests.switch.fakecore import FakeCore, Script, WorkerProcess, free_port, free_rtp_range

pytestmark = pytest.mark.timeout(90)

NUMBER = "+15551234567"
WAIT = 20.0                       # a generous bound for anything on a loaded 2-core machine


@pytest.fixture(scope="session")
async def phone(reactor, tmp_path_factory):
    rtp = free_rtp_range()
    p = Phone(reactor, sip_port=free_port(), rtp_port_min=rtp[0], rtp_port_max=rtp[1])
    p.start()
    tones = tmp_path_factory.mktemp("tones")
    p.kiosk_talk = write_tone(tones / "kiosk.wav", 350, 1.0)
    p.called_talk = write_tone(tones / "called.wav", 620, 1.0)
    yield p
    from tests.switch.conftest import _settle
    await _settle(p.shutdown(), 15)


@pytest.fixture
async def sim(phone, eventually):
    """The shared Phone, reset: answers every inbound call, talks nothing, no calls left up."""
    phone.answer_with = lambda incoming: 200
    phone.answer_delay = 0.0
    phone.talk_path = None
    phone.on_call = lambda call: None
    yield phone
    for call in phone.calls:
        call.hangup()
    await eventually(lambda: all(c.gone for c in phone.calls), WAIT)
    await eventually(lambda: not phone.endpoint._legs, WAIT)
    phone.calls.clear()
    phone.inbound.clear()


@pytest.fixture
def start_worker(reactor, tmp_path, eventually):
    """Start a fake core with `script` and a worker process connected to it."""
    started = []

    async def start(script: Script, **overrides):
        core = FakeCore(reactor, script)
        port = core.listen()
        worker = WorkerProcess(tmp_path, port, overrides=overrides)
        started.append((core, worker))
        try:
            await eventually(lambda: core.names("Hello") or worker.proc.poll() is not None, WAIT)
        except AssertionError:
            raise AssertionError(f"worker never said Hello:\n{worker.output}") from None
        assert worker.proc.poll() is None, f"worker exited:\n{worker.output}"
        core.port = port
        return core, worker

    yield start
    for core, worker in started:
        code = worker.stop()
        core.close()
        assert code == 0, f"worker exit status {code}:\n{worker.output[-4000:]}"


def trunk(sim, user: str = NUMBER) -> str:
    return f"sip:{user}@{sim.host}:{sim.sip_port}"


async def settle(d, timeout=WAIT):
    from tests.switch.conftest import _settle
    return await _settle(d, timeout)


async def place_trusted_call(sim, core, worker, *, pin="10011234", number=NUMBER):
    """A trusted kiosk call: PIN in the header, number in the Request-URI; up to the answer."""
    kiosk = sim.dial(worker.uri(number), caller="kiosk-1", headers={"X-ICS-PIN": pin})
    await settle(kiosk.confirmed)
    return kiosk


async def test_trusted_kiosk_call_is_accepted_continued_per_period_and_ended_with_its_talk_time(
        sim, start_worker, eventually, reactor):
    core, worker = await start_worker(Script(trunks=[trunk(sim)], period=2, max_seconds=60))
    kiosk = await place_trusted_call(sim, core, worker)
    called = await eventually(lambda: sim.inbound and sim.inbound[0], WAIT)
    await settle(called.media)
    assert called.incoming.request_user == NUMBER
    called.send_digits("1")
    await eventually(lambda: core.names("Accept"), WAIT)
    await eventually(lambda: len(core.names("Continue")) >= 2, WAIT)
    kiosk.hangup()
    hung_up_at = reactor.seconds()
    await settle(called.ended)
    end = (await eventually(lambda: core.ends and list(core.ends.values()), WAIT))[0]
    (pin,) = core.names("CheckPin")
    assert (pin["kiosk"], pin["pin"], pin["source"]) == ("kiosk-1", "10011234", "sip_header")
    (auth,) = core.names("Authorize")
    assert auth["number"] == NUMBER and auth["inmate_id"] == "1001"
    accepted_at = core.names("Accept")[0]["at"]
    periods = [c["period"] for c in core.names("Continue")]
    assert periods[:2] == [1, 2]
    assert end["disposition"] == "completed"
    assert end["trunk"] == trunk(sim) and end["sip_code"] == 200
    assert abs(end["talk_seconds"] - (hung_up_at - accepted_at)) <= 1.0, (end, hung_up_at,
                                                                         accepted_at)
