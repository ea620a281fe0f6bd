"""Who a kiosk is comes from the network: the worker sends the INVITE's transport source to the
core with every AdmitKiosk, CheckPin and Authorize, presents CheckPin's session token once, and
answers 403 before answering when the core refuses the kiosk for its source (AdmitKiosk for a
kiosk that keys its PIN, CheckPin when the PIN came in the INVITE).
Sources differ on loopback: the kiosk speaks from 127.0.0.1, others from 127.0.0.x."""
from __future__ import annotations

import pytest

from tests.security.worker_rig import WAIT, eventually, peers, reactor, start_worker  # noqa: F401
from tests.security.rawsip import RawPeer, RtpCounter, status
from tests.switch.fakecore import Script

pytestmark = pytest.mark.timeout(120)

NUMBER = "+15552345678"
PIN = "X-ICS-PIN: 10011234"


async def test_a_kiosk_calling_from_outside_its_sources_gets_403_and_nothing_is_authorized(
        start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[], kiosk_sources=("127.0.0.1",)))
    outsider = await RawPeer.open("127.0.0.77")
    try:
        target = ("127.0.0.1", worker.sip_port)
        dialog = outsider.invite(target, NUMBER, extra=PIN)
        refused = await outsider.final_response(dialog, timeout=WAIT)
        assert status(refused) == 403, refused
        outsider.ack(dialog, refused, target)
        assert 200 not in outsider.responses("INVITE")
    finally:
        outsider.close()
    (pin,) = core.names("CheckPin")
    assert (pin["kiosk"], pin["source_ip"], pin["source"]) == ("kiosk-1", "127.0.0.77",
                                                              "sip_header")
    assert core.names("Authorize") == []
    # The call that ended before dialling says why, to the core's log and metric.
    (failed,) = await eventually(lambda: core.names("SetupFailed"))
    assert (failed["kiosk"], failed["reason"], failed["source_ip"]) == (
        "kiosk-1", "source_refused", "127.0.0.77")
    assert worker.proc.poll() is None


async def test_a_kiosk_call_the_core_is_too_busy_to_check_gets_503_before_answer_and_says_why(
        start_worker, peers, eventually):
    # An overloaded core sheds the PIN check (CORE_BUSY): the kiosk is refused at once with 503
    # and Retry-After, never answered into a menu that ends in "system unavailable".
    core, worker = await start_worker(Script(trunks=[], pin_busy=True))
    kiosk = await RawPeer.open("127.0.0.1")
    try:
        target = ("127.0.0.1", worker.sip_port)
        dialog = kiosk.invite(target, NUMBER, extra=PIN)
        refused = await kiosk.final_response(dialog, timeout=WAIT)
        assert status(refused) == 503, refused
        assert "retry-after:" in refused.lower(), refused
        kiosk.ack(dialog, refused, target)
        assert 200 not in kiosk.responses("INVITE")
    finally:
        kiosk.close()
    assert core.names("Authorize") == []
    (failed,) = await eventually(lambda: core.names("SetupFailed"))
    assert (failed["reason"], failed["source_ip"]) == ("core_busy", "127.0.0.1")
    assert "PIN checks busy" in failed["detail"]
    assert worker.proc.poll() is None


async def test_a_stranger_without_the_pin_header_gets_403_and_never_hears_the_menu(
        start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[], kiosk_sources=("127.0.0.1",)))
    outsider = await RawPeer.open("127.0.0.77")
    outsider_rtp = await RtpCounter.open("127.0.0.77")
    try:
        target = ("127.0.0.1", worker.sip_port)
        dialog = outsider.invite(target, NUMBER, rtp_port=outsider_rtp.addr[1])
        refused = await outsider.final_response(dialog, timeout=WAIT)
        assert status(refused) == 403, refused
        outsider.ack(dialog, refused, target)
        assert 200 not in outsider.responses("INVITE")
        assert outsider_rtp.total == 0                 # no prompt was streamed to it
    finally:
        outsider.close()
        outsider_rtp.close()
    (admit,) = core.names("AdmitKiosk")
    assert (admit["kiosk"], admit["source_ip"]) == ("kiosk-1", "127.0.0.77")
    assert core.names("CheckPin") == [] and core.names("Authorize") == []
    assert worker.proc.poll() is None


async def test_a_kiosk_from_its_source_is_admitted_then_answered(start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[], kiosk_sources=("127.0.0.1",)))
    kiosk = await peers()
    target = ("127.0.0.1", worker.sip_port)
    dialog = kiosk.invite(target, NUMBER)
    answer = await kiosk.final_response(dialog, timeout=WAIT)
    assert status(answer) == 200, answer
    kiosk.ack(dialog, answer, target)
    (admit,) = core.names("AdmitKiosk")
    assert admit["source_ip"] == "127.0.0.1"
    kiosk.in_dialog(dialog, "BYE", target)
    await kiosk.final_response(dialog, "BYE", timeout=WAIT)


async def test_the_source_and_the_pin_session_reach_the_core_and_the_session_is_used_once(
        start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[], kiosk_sources=("127.0.0.1",)))
    kiosk = await peers()
    target = ("127.0.0.1", worker.sip_port)
    dialog = kiosk.invite(target, NUMBER, extra=PIN)
    answer = await kiosk.final_response(dialog, timeout=WAIT)
    assert status(answer) == 200, answer
    kiosk.ack(dialog, answer, target)
    (auth,) = await eventually(lambda: core.names("Authorize"), WAIT)
    (pin,) = core.names("CheckPin")
    assert pin["source_ip"] == auth["source_ip"] == "127.0.0.1"
    assert auth["pin_session"] and auth["pin_session"] not in core.pin_sessions   # used up
    assert len(core.authorized) == 1                   # the fake core accepted the session
    kiosk.in_dialog(dialog, "BYE", target)
    await kiosk.final_response(dialog, "BYE", timeout=WAIT)


async def test_the_from_display_name_cannot_pick_the_kiosk(start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    target = ("127.0.0.1", worker.sip_port)
    dialog = kiosk.invite(target, NUMBER, kiosk="kiosk-2", extra=PIN,
                          display='"<sip:kiosk-1@10.0.0.1>" ')
    answer = await kiosk.final_response(dialog, timeout=WAIT)
    kiosk.ack(dialog, answer, target)
    (pin,) = await eventually(lambda: core.names("CheckPin"), WAIT)
    assert pin["kiosk"] == "kiosk-2"
    kiosk.in_dialog(dialog, "BYE", target)
    await kiosk.final_response(dialog, "BYE", timeout=WAIT)


async def test_only_the_edge_may_say_which_kiosk_source_it_forwards(start_worker, peers,
                                                                    eventually):
    core, worker = await start_worker(Script(trunks=[]),
                                      worker={"edge_addresses": ["127.0.0.1/32"]})
    edge = await peers()                                   # 127.0.0.1 plays Kamailio
    outsider = await RawPeer.open("127.0.0.77")
    try:
        target = ("127.0.0.1", worker.sip_port)
        said = "X-ICS-Kiosk-Source: 10.1.2.3\r\n" + PIN
        calls = [(edge, edge.invite(target, NUMBER, extra=said))]
        await eventually(lambda: len(core.names("CheckPin")) == 1, WAIT)
        calls.append((outsider, outsider.invite(target, NUMBER, extra=said)))
        pins = await eventually(lambda: len(core.names("CheckPin")) == 2 and
                                core.names("CheckPin"), WAIT)
        assert [p["source_ip"] for p in pins] == ["10.1.2.3", "127.0.0.77"]
        for peer, dialog in calls:
            answer = await peer.final_response(dialog, timeout=WAIT)
            peer.ack(dialog, answer, target)
            peer.in_dialog(dialog, "BYE", target)
            await peer.final_response(dialog, "BYE", timeout=WAIT)
    finally:
        outsider.close()
