"""More of what a hostile peer sends a worker: requests inside someone else's dialog, a REFER from
the called party's side, malformed SDP, INVITE floods and DTMF floods. Each against a real worker
process; each asserts the refusal, that nobody unauthorized is dialled or sent audio, that the
legitimate call's own requests are still answered, and that the worker kept its pid."""
from __future__ import annotations

import re
import uuid

import pytest

from tests.security.worker_rig import WAIT, eventually, peers, reactor, start_worker  # noqa: F401
from tests.security.rawsip import (SDP, RawPeer, RtpCounter, header, method, new_branch,
                                   status, tag, transact)
from tests.switch.fakecore import Script

pytestmark = pytest.mark.timeout(150)

NUMBER = "+15552345678"
PIN = "X-ICS-PIN: 10011234"


def alive(worker) -> bool:
    return worker.proc.poll() is None and worker.proc.pid == worker.pid_at_start


async def kiosk_call(kiosk, worker, *, extra=PIN, rtp_port=4000):
    target = ("127.0.0.1", worker.sip_port)
    dialog = kiosk.invite(target, NUMBER, extra=extra, rtp_port=rtp_port)
    answer = await kiosk.final_response(dialog, timeout=WAIT)
    assert status(answer) == 200, answer
    kiosk.ack(dialog, answer, target)
    return dialog, target, answer


async def still_answers(kiosk, dialog, target) -> None:
    """The kiosk's own dialog is alive: an in-dialog OPTIONS gets a final answer that is not
    481 (pjsua answers it 500 "Unhandled by dialog usages" from the live dialog)."""
    dialog.cseq += 1
    cseq = f"{dialog.cseq} OPTIONS"
    reply = await transact(kiosk, kiosk.request(dialog, "OPTIONS"), target,
                           lambda t: status(t) and header(t, "CSeq") == cseq
                           and header(t, "Call-ID") == dialog.call_id, WAIT)
    assert status(reply) != 481, reply


async def hang_up(kiosk, dialog, target) -> None:
    dialog.cseq += 1
    cseq = f"{dialog.cseq} BYE"
    reply = await transact(kiosk, kiosk.request(dialog, "BYE"), target,
                           lambda t: status(t) and header(t, "CSeq") == cseq
                           and header(t, "Call-ID") == dialog.call_id, WAIT)
    assert status(reply) == 200, reply


async def test_a_bye_from_off_path_is_refused_and_the_call_goes_on(start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    attacker = await RawPeer.open("127.0.0.66")
    try:
        dialog, target, _ = await kiosk_call(kiosk, worker)
        forged = attacker.request(dialog, "BYE", cseq=dialog.cseq + 5)
        attacker.sendto(forged, target)
        refused = await attacker.wait_for(lambda t: status(t) is not None, WAIT)
        assert status(refused) == 403, refused
        await still_answers(kiosk, dialog, target)
        assert kiosk.requests("BYE") == []              # the worker did not end the call
        await hang_up(kiosk, dialog, target)
        assert alive(worker)
    finally:
        attacker.close()


async def test_a_reinvite_from_off_path_cannot_move_the_calls_media(start_worker, peers,
                                                                    eventually):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    kiosk_rtp = await RtpCounter.open("127.0.0.1")
    attacker = await RawPeer.open("127.0.0.66")
    attacker_rtp = await RtpCounter.open("127.0.0.66")
    try:
        # No PIN header: the IVR streams prompts to the kiosk leg.
        dialog, target, _ = await kiosk_call(kiosk, worker, extra="", rtp_port=kiosk_rtp.addr[1])
        await eventually(lambda: kiosk_rtp.total >= 10, WAIT)
        sdp = SDP.format(ip="127.0.0.66", port=attacker_rtp.addr[1])
        forged = attacker.request(dialog, "INVITE", body=sdp, cseq=dialog.cseq + 5)
        attacker.sendto(forged, target)
        refused = await attacker.wait_for(lambda t: status(t) is not None and status(t) >= 200,
                                          WAIT)
        assert status(refused) == 403, refused
        before = kiosk_rtp.total
        await eventually(lambda: kiosk_rtp.total >= before + 25, WAIT)   # half a second more
        assert attacker_rtp.total == 0
        await hang_up(kiosk, dialog, target)
        assert alive(worker)
    finally:
        for s in (attacker, attacker_rtp, kiosk_rtp):
            s.close()


@pytest.mark.parametrize("body", [
    "v=0\r\nm=audio\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 999.1.1.1\r\nt=0 0\r\n"
    "m=audio 99999 RTP/AVP 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 " + " ".join(str(i) for i in range(96, 128)) * 8 + "\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/0\r\na=fmtp:8 " + "x" * 900 + "\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 4000 RTP/AVP 96\r\n",
    "\x00\xff" * 100,
], ids=["truncated", "bad-address", "many-formats", "odd-rtpmap", "video-only", "binary"])
async def test_malformed_sdp_is_refused_and_crashes_nothing(body, start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    attacker, kiosk = await peers(), await peers()
    target = ("127.0.0.1", worker.sip_port)
    bad = attacker.invite(target, NUMBER, body=body)
    answer = await attacker.final_response(bad, timeout=WAIT)
    attacker.ack(bad, answer, target)
    if status(answer) == 200:              # pjsua may take an odd but parseable offer
        attacker.in_dialog(bad, "BYE", target)
        await attacker.final_response(bad, "BYE", timeout=WAIT)
    dialog, _, _ = await kiosk_call(kiosk, worker)
    await hang_up(kiosk, dialog, target)
    assert alive(worker), worker.output[-3000:]


async def test_an_invite_flood_is_shed_and_the_calls_own_requests_are_answered(
        start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    attacker = await RawPeer.open("127.0.0.66")
    try:
        dialog, target, _ = await kiosk_call(kiosk, worker)
        for i in range(1500):
            attacker.invite(target, NUMBER, kiosk=f"kiosk-{i % 7}")
            if i % 100 == 0:
                await still_answers(kiosk, dialog, target)
        await still_answers(kiosk, dialog, target)
        await hang_up(kiosk, dialog, target)
        finals = {header(t, "Call-ID"): status(t) for t, _ in attacker.received
                  if (status(t) or 0) >= 200}
        # Shed: at most one flood call took the worker's free slot (and it answered it); the
        # rest got a 503 before pjsua or nothing at all.
        assert list(finals.values()).count(200) <= 1, finals
        assert len(finals) < 1500 / 4
        assert "screen: flood" in worker.output
        assert alive(worker), worker.output[-3000:]
    finally:
        attacker.close()


async def test_a_dtmf_flood_inside_the_call_is_shed_and_its_bye_is_answered(start_worker, peers):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    dialog, target, _ = await kiosk_call(kiosk, worker, extra="")
    body = "Signal=5\r\nDuration=100\r\n"
    for _ in range(600):
        dialog.cseq += 1
        kiosk.sendto(kiosk.request(dialog, "INFO", body=body).replace(
            "application/sdp", "application/dtmf-relay"), target)
    await hang_up(kiosk, dialog, target)
    assert "screen: flood" in worker.output
    assert alive(worker), worker.output[-3000:]


async def test_a_refer_from_the_called_party_is_refused_and_its_target_never_dialled(
        start_worker, peers, eventually):
    trunk = await peers()
    target_ua = await peers()
    kiosk = await peers()
    trunk_uri = f"sip:{NUMBER}@{trunk.addr[0]}:{trunk.addr[1]}"
    core, worker = await start_worker(Script(trunks=[trunk_uri]))
    dialog, target, _ = await kiosk_call(kiosk, worker)
    invite = await trunk.wait_for(lambda t: method(t) == "INVITE", WAIT)
    src = next(a for t, a in trunk.received if t == invite)
    # The called party answers, then sends a REFER inside its dialog (as the UAS).
    our_tag = uuid.uuid4().hex[:8]
    ok = trunk.response_to(invite, 200).replace(
        "Content-Length: 0\r\n\r\n",
        f"Contact: <sip:{NUMBER}@{trunk.addr[0]}:{trunk.addr[1]}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP.format(ip='127.0.0.1', port=4002))}\r\n\r\n"
        + SDP.format(ip="127.0.0.1", port=4002))
    ok = re.sub(r"^(To: [^\r]*?)(;tag=[^;\r]+)?\r\n", lambda m: m.group(1) + f";tag={our_tag}\r\n",
                ok, count=1, flags=re.M)
    trunk.sendto(ok, src)
    await trunk.wait_for(lambda t: method(t) == "ACK", WAIT)
    contact = re.search(r"<([^>]+)>", header(invite, "Contact")).group(1)
    refer_to = f"sip:+15550000000@{target_ua.addr[0]}:{target_ua.addr[1]}"
    refer = (f"REFER {contact} SIP/2.0\r\n"
             f"Via: SIP/2.0/UDP {trunk.addr[0]}:{trunk.addr[1]};branch={new_branch()}\r\n"
             f"Max-Forwards: 70\r\nFrom: {header(invite, 'To')};tag={our_tag}\r\n"
             f"To: {header(invite, 'From')}\r\nCall-ID: {header(invite, 'Call-ID')}\r\n"
             f"CSeq: 1 REFER\r\nContact: <{trunk_uri}>\r\nRefer-To: <{refer_to}>\r\n"
             "Content-Length: 0\r\n\r\n")
    trunk.sendto(refer, src)
    refused = await trunk.wait_for(lambda t: status(t) and "REFER" in (header(t, "CSeq") or ""),
                                   WAIT)
    assert status(refused) == 403, refused
    await hang_up(kiosk, dialog, target)
    await trunk.wait_for(lambda t: method(t) == "BYE", WAIT)     # the worker ended both legs
    assert target_ua.received == []
    assert len([t for t, _ in trunk.received if method(t) == "INVITE"]) == 1
    assert tag(header(invite, "From"))
    assert alive(worker), worker.output[-3000:]
