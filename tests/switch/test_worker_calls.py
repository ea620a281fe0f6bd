"""The media worker end to end: real SIP and RTP on loopback between a worker process, the pjsua2
simulators in this process (switch.tools.sim) and a scripted core speaking AMP (fakecore).

Layout decided here: the worker under test runs as `python -m switch.worker` in a subprocess (one
pjsua2 endpoint per process); the simulated kiosks and called parties share one `Phone` in the
test process, polled by the session's reactor; the fake core listens in the test process too.
Billing periods are 2 seconds; waits are generous, and no sleep is an assertion.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from switch.tools.sim import DtmfMethod, Phone, loud_spans, wav_complete, wav_rms, write_tone
from tests.switch.fakecore import FakeCore, Script, WorkerProcess, free_port, free_rtp_range

pytestmark = pytest.mark.timeout(90)

NUMBER = "+15552345678"
WAIT = 20.0                       # a generous bound for anything on a loaded 2-core machine


@pytest.fixture(scope="module")
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
async def start_worker(reactor, tmp_path, eventually):
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
        code = await worker.stop()
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


async def accepted_call(sim, core, worker, eventually, *, method=DtmfMethod.RFC4733,
                        kiosk_talks=False, called_talks=False):
    kiosk = await place_trusted_call(sim, core, worker)
    if kiosk_talks:
        await settle(kiosk.media)
        kiosk.talk(sim.kiosk_talk)
    called = await eventually(
        lambda: next((c for c in sim.inbound if c.confirmed.called), None), WAIT)
    await settle(called.media)
    if called_talks:
        called.talk(sim.called_talk)
    called.send_digits("1", method)
    await eventually(lambda: core.names("Accept"), WAIT)
    return kiosk, called


async def test_called_party_accepting_by_sip_info_gets_the_call_bridged_and_billed(
        sim, start_worker, eventually, reactor):
    core, worker = await start_worker(Script(trunks=[trunk(sim)], period=2, max_seconds=60))
    kiosk, called = await accepted_call(sim, core, worker, eventually, method=DtmfMethod.SIP_INFO)
    await eventually(lambda: core.names("Continue"), WAIT)
    called.hangup()
    hung_up_at = reactor.seconds()
    await settle(kiosk.ended)
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    assert end["disposition"] == "completed"
    assert core.names("Continue")[0]["period"] == 1
    assert abs(end["talk_seconds"] - (hung_up_at - core.names("Accept")[0]["at"])) <= 1.0


async def test_last_grant_warns_then_hangs_up_both_legs_when_it_runs_out(
        sim, start_worker, eventually, reactor, tmp_path):
    # Two periods of 2 s, the last with a warning at talk second 3: nobody talks, so the only
    # sound the kiosk hears while bridged is the warning.
    core, worker = await start_worker(Script(trunks=[trunk(sim)], period=2, max_seconds=4,
                                             warn_lead=1))
    kiosk, called = await accepted_call(sim, core, worker, eventually)
    heard = str(tmp_path / "kiosk-heard.wav")
    kiosk.record(heard)
    recording_from = reactor.seconds()
    await settle(kiosk.ended)
    await settle(called.ended)
    kiosk_gone, accepted_at = reactor.seconds(), core.names("Accept")[0]["at"]
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    assert end["disposition"] == "grant_exhausted" and end["talk_seconds"] == 4
    assert [c["period"] for c in core.names("Continue")] == [1]
    # Hung up at the end of the grant, not before it. How soon after is the grant's pure rule
    # (tests/switch/test_worker_grant.py); here the worker's own talk count (4 s) is the proof,
    # not a wall-clock window that a loaded machine widens.
    assert kiosk_gone - accepted_at >= 4.0 - 0.3
    offset = recording_from - accepted_at
    await eventually(lambda: wav_complete(heard), WAIT)   # pjmedia closes it a moment later
    spans = [(a + offset, b + offset) for a, b in loud_spans(heard)]
    assert spans, "the kiosk heard no warning"
    assert all(a >= 2.5 for a, b in spans), spans      # silence before the warning is due
    assert spans[0][0] <= 3.8, spans


async def test_core_lost_mid_call_ends_the_call_when_the_current_grant_runs_out(
        sim, start_worker, eventually, reactor):
    core, worker = await start_worker(Script(trunks=[trunk(sim)], period=2, max_seconds=60))
    kiosk, called = await accepted_call(sim, core, worker, eventually)
    accepted_at = core.names("Accept")[0]["at"]
    core.go_away()
    await settle(called.ended)
    called_gone = reactor.seconds()
    await settle(kiosk.ended)
    # Not before the grant the core gave (2 s) runs out; never more talk than it, even without
    # the core: the worker's End says 2 s below (when it hangs up is test_worker_grant.py's rule).
    assert called_gone - accepted_at >= 2.0 - 0.3
    assert not core.names("Continue")
    core.listen(core.port)            # the core comes back: the End report arrives
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    assert end["disposition"] == "core_unreachable" and end["talk_seconds"] == 2


async def test_normal_call_is_recorded_with_audio_of_both_sides(
        sim, start_worker, eventually):
    core, worker = await start_worker(Script(trunks=[trunk(sim)], period=2, max_seconds=60))
    kiosk, called = await accepted_call(sim, core, worker, eventually, kiosk_talks=True,
                                        called_talks=True)
    await eventually(lambda: core.names("Continue"), WAIT)
    kiosk.hangup()
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    path = end["recording"]
    assert path == str(worker.data_dir / "recordings" / f"{end['call_id']}.wav")
    await eventually(lambda: wav_complete(path), WAIT)
    seconds, rms = wav_rms(path)
    assert seconds >= 1.0 and rms > 500, (seconds, rms)


async def test_privileged_call_is_never_recorded(sim, start_worker, eventually):
    # The core answers record=True with privileged=True: the worker's own guard is what is tested.
    core, worker = await start_worker(Script(trunks=[trunk(sim)], period=2, max_seconds=60,
                                             privileged=True, record=True))
    kiosk, called = await accepted_call(sim, core, worker, eventually, kiosk_talks=True,
                                        called_talks=True)
    await eventually(lambda: core.names("Continue"), WAIT)
    kiosk.hangup()
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    assert end["disposition"] == "completed" and end["talk_seconds"] >= 1
    assert end.get("recording") is None
    recordings = worker.data_dir / "recordings"
    assert not recordings.exists() or not list(recordings.iterdir())


async def test_trunk_answering_503_fails_over_to_the_next_trunk(sim, start_worker, eventually):
    sim.answer_with = lambda incoming: 503 if incoming.request_user.startswith("down") else 200
    first, second = trunk(sim, "down" + NUMBER.lstrip("+")), trunk(sim)
    core, worker = await start_worker(Script(trunks=[first, second], period=2, max_seconds=60))
    kiosk, called = await accepted_call(sim, core, worker, eventually)
    assert [c.incoming.request_user for c in sim.inbound] == ["down15552345678", NUMBER]
    assert sim.inbound[0].status_code == 503
    kiosk.hangup()
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    assert end["trunk"] == second and end["disposition"] == "completed"


async def test_worker_admits_two_calls_and_answers_a_third_with_503(sim, start_worker,
                                                                     eventually):
    core, worker = await start_worker(Script(trunks=[trunk(sim)]))
    assert core.names("Hello")[0]["capacity"] == 2
    first = sim.dial(worker.uri("ivr"), caller="kiosk-1")
    second = sim.dial(worker.uri("ivr"), caller="kiosk-2")
    await settle(first.confirmed)
    await settle(second.confirmed)
    third = sim.dial(worker.uri("ivr"), caller="kiosk-3")
    await settle(third.ended)
    assert third.status_code == 503 and not third.confirmed.called
    assert first.up and second.up
    first.hangup()
    await settle(first.ended)
    fourth = sim.dial(worker.uri("ivr"), caller="kiosk-4")   # the freed slots take a new call
    await settle(fourth.confirmed)
    assert second.up


async def test_back_to_back_calls_reusing_slots_never_hang_up_the_wrong_call(
        sim, start_worker, eventually):
    core, worker = await start_worker(Script(trunks=[trunk(sim)]),
                                      ivr={"first_digit_timeout_seconds": 60.0})
    standing = sim.dial(worker.uri("ivr"), caller="kiosk-standing")
    await settle(standing.confirmed)
    previous = None
    for round_ in range(6):
        if previous is not None:
            previous.hangup()      # BYE, then at once an INVITE that takes the freed slot
        call = sim.dial(worker.uri("ivr"), caller=f"kiosk-{round_}")
        await settle(call.confirmed)
        await settle(call.media)
        previous = call
    # A late release would strike within the worker's next turns. Both slots are taken, so one
    # more INVITE is answered 503: a barrier (the worker handles its events in order, and this
    # one comes after every earlier BYE). Then nobody else was hung up.
    barrier = sim.dial(worker.uri("ivr"), caller="kiosk-barrier")
    await settle(barrier.ended)
    assert barrier.status_code == 503
    assert standing.up and previous.up
    assert all(c.status_code != 503 for c in sim.calls if c is not barrier)
    assert all(c.gone for c in sim.calls if c not in (standing, previous))


async def test_kiosk_keying_pin_and_number_reaches_the_called_party(sim, start_worker,
                                                                     eventually):
    core, worker = await start_worker(Script(trunks=[trunk(sim)]))
    kiosk = sim.dial(worker.uri("ivr"), caller="kiosk-9")
    await settle(kiosk.media)
    kiosk.send_digits("1")             # English, barging into the language menu
    kiosk.send_digits("10011234#")
    await eventually(lambda: core.names("CheckPin"), WAIT)
    kiosk.send_digits("5552345678", DtmfMethod.SIP_INFO)
    called = await eventually(lambda: sim.inbound and sim.inbound[-1], WAIT)
    (pin,) = core.names("CheckPin")
    assert (pin["kiosk"], pin["pin"], pin["source"]) == ("kiosk-9", "10011234", "dtmf")
    assert core.names("Authorize")[0]["number"] == NUMBER
    await settle(called.confirmed)
    called.send_digits("2")        # refuse
    await settle(kiosk.ended)
    end = (await eventually(lambda: list(core.ends.values()), WAIT))[0]
    assert end["disposition"] == "refused" and end["talk_seconds"] == 0
    assert not core.names("Accept")
