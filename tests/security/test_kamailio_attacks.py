"""What the edge refuses before any worker sees it: transfers, replacements, the stray-ACK
sequence that aborts the worker's SIP stack, requests in someone else's dialog, floods, oversized
and hop-exhausted requests. Each test holds a real call up through the edge (kiosk-a2, which
keys its PIN) where the attack needs a dialog, checks the answer the attacker gets, the worker's
own SIP log (nothing arrived), the worker's pid (no crash) and that the call is still up."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import MOM, PIN
from tests.security.conftest import (ATTACKER, EDGE, FLOODER, KIOSK_A1, KIOSK_A2, PIKE_REQUESTS,
                                     needs_edge)
from tests.security.sipua import UA, sdp

pytestmark = [needs_edge, pytest.mark.timeout(180)]


def _uri(edge, user: str = MOM) -> str:
    return f"sip:{user}@{EDGE}:{edge.port}"


def _worker_got(edge, method: str, call_id: str) -> bool:
    """The worker's SIP log shows a `method` request of `call_id` arriving."""
    lines, got = edge.worker_lines, False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(f"{method} sip:") and any(
                f"Call-ID: {call_id}" in later for later in lines[i:i + 15]):
            got = True
    return got


async def _call(edge, ua: UA):
    d = await ua.call(_uri(edge), rtp_port=40000)
    assert d is not None and not hasattr(d, "status"), d
    assert _worker_got(edge, "INVITE", d.call_id), edge.rig.log()
    return d


async def _still_up(edge, ua: UA, d, pid: int) -> None:
    bye = await ua.hang_up(d)
    assert bye is not None and bye.status == 200, bye         # the call was still there
    assert edge.worker_pid() == pid, "the worker restarted"


async def test_refer_is_refused_inside_a_dialog_and_outside_one(edge):
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    try:
        pid = edge.worker_pid()
        d = await _call(edge, ua)
        ua.in_dialog(d, "REFER", extra=[f"Refer-To: <sip:+19005550100@{EDGE}>",
                                        f"Referred-By: <sip:kiosk-a2@{KIOSK_A2}>"])
        refused = await ua.final(d.call_id)
        assert refused is not None and refused.status == 405, refused
        ua.request("REFER", _uri(edge), extra=[f"Refer-To: <sip:+19005550100@{EDGE}>"])
        assert (await ua.next(lambda m: m.status is not None and m.status >= 200)).status == 405
        assert not any(line.lstrip().startswith("REFER ") for line in edge.worker_lines)
        await _still_up(edge, ua, d, pid)
    finally:
        ua.close()


@pytest.mark.parametrize("header", ["Replaces", "Join"])
async def test_an_invite_naming_a_live_dialog_in_replaces_or_join_is_refused(edge, header):
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    try:
        pid = edge.worker_pid()
        d = await _call(edge, ua)
        hijack = f"{header}: {d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}"
        ua.request("INVITE", _uri(edge), extra=[hijack], body=sdp(KIOSK_A2, 40010))
        refused = await ua.next(lambda m: m.status is not None and m.status >= 200)
        assert refused is not None and refused.status == 403, refused
        assert not edge.worker_saw(f"{header}:")
        await _still_up(edge, ua, d, pid)
    finally:
        ua.close()


async def test_an_invite_without_audio_then_a_stray_ack_never_reaches_a_worker(edge):
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    try:
        pid = edge.worker_pid()
        call_id = f"no-media-{id(ua)}@{KIOSK_A2}"
        ua.request("INVITE", _uri(edge), call_id=call_id, from_tag="nm1",
                   body=sdp(KIOSK_A2, 40000, audio=False))
        refused = await ua.final(call_id)
        assert refused is not None and refused.status == 488, refused
        # the crash sequence: an ACK with a new branch and no To-tag, then the same bare ACK
        for _ in range(3):
            ua.request("ACK", _uri(edge), call_id=call_id, from_tag="nm1", cseq=1)
        ua.request("ACK", _uri(edge), call_id=f"never-invited@{KIOSK_A2}", cseq=1)
        assert await ua.next(lambda m: True, timeout=1.0) is None    # nothing answers an ACK
        d = await _call(edge, ua)                                   # the worker still serves
        assert not edge.worker_saw(call_id) and not edge.worker_saw("never-invited")
        assert "stray ACK" in edge.kamailio_log()
        await _still_up(edge, ua, d, pid)
    finally:
        ua.close()


async def test_a_request_in_someone_elses_dialog_from_another_source_is_refused(edge):
    kiosk = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    attacker = UA(ATTACKER, edge.address, user="kiosk-a2")
    try:
        pid = edge.worker_pid()
        d = await _call(edge, kiosk)
        for method in ("BYE", "INVITE", "INFO"):
            body = sdp(ATTACKER, 41000) if method == "INVITE" else ""
            attacker.request(method, d.target, call_id=d.call_id, from_tag=d.local_tag,
                             to=f"<{d.remote_uri}>", to_tag=d.remote_tag, cseq=50,
                             route=d.route, body=body)
            refused = await attacker.final(d.call_id)
            assert refused is not None and refused.status == 403, (method, refused)
        assert not edge.worker_saw("CSeq: 50 "), "a forged in-dialog request reached the worker"
        # and a dialog the edge never set up gets nothing through at all
        attacker.request("BYE", d.target, call_id="made-up@x", from_tag="a", to_tag="b",
                         route=d.route)
        assert (await attacker.final("made-up@x")).status == 481
        await _still_up(edge, kiosk, d, pid)
    finally:
        kiosk.close()
        attacker.close()


async def test_oversized_and_hop_exhausted_requests_are_dropped_or_refused(edge):
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    try:
        padding = [f"X-Pad-{i}: {'a' * 90}" for i in range(50)]     # about 5 kB
        ua.request("INVITE", _uri(edge), call_id="big@x", extra=padding,
                   body=sdp(KIOSK_A2, 40000))
        assert await ua.final("big@x", timeout=2.0) is None
        ua.request("INVITE", _uri(edge), call_id="hops@x", max_forwards=0,
                   body=sdp(KIOSK_A2, 40000))
        assert (await ua.final("hops@x")).status == 483
        ua.send_raw(b"\x00\xffINVITE garbage\r\n\r\n" * 10)
        ua.request("INVITE", _uri(edge), call_id="twofrom@x", body=sdp(KIOSK_A2, 40000),
                   extra=[f"From: <sip:kiosk-a1@{KIOSK_A1}>;tag=2"])
        two_from = await ua.final("twofrom@x", timeout=2.0)      # Kamailio's parser drops it
        assert two_from is None or two_from.status == 403, two_from
        ua.request("INVITE", _uri(edge), call_id="display@x", body=sdp(KIOSK_A2, 40000),
                   from_header=f'From: "kiosk-a1 <sip:kiosk-a1@x>" <sip:kiosk-a2@{KIOSK_A2}>;tag=3')
        assert (await ua.final("display@x")).status == 403
        for call_id in ("big@x", "hops@x", "twofrom@x", "display@x"):
            assert not edge.worker_saw(call_id)
    finally:
        ua.close()


async def test_pike_drops_a_flood_while_a_listed_kiosk_still_calls(edge):
    flooder = UA(FLOODER, edge.address, user="kiosk-a2")
    try:
        called = await edge.rig.called_party("1", hangs_up_after=2)
        sent = 6 * PIKE_REQUESTS
        for i in range(sent):
            flooder.request("OPTIONS", f"sip:{EDGE}:{edge.port}", call_id=f"flood-{i}@x")
        answered = 0
        while await flooder.next(lambda m: m.status is not None, timeout=1.0):
            answered += 1
        assert answered < 2 * PIKE_REQUESTS, f"{answered} of {sent} flood requests answered"
        flooder.request("OPTIONS", f"sip:{EDGE}:{edge.port}", call_id="after-flood@x")
        assert await flooder.final("after-flood@x", timeout=1.0) is None   # still blocked
        assert f"flood from {FLOODER}" in edge.kamailio_log()
        kiosk = await edge.kiosk(MOM, pin=PIN)                    # kiosk-a1 from its own source
        assert await kiosk.finished() == 0, kiosk.output() + edge.kamailio_log()[-2000:]
        assert await called.finished() == 0, called.output()
        (cdr,) = await edge.rig.wait_cdrs(1)
        assert cdr["disposition"] == "completed"
    finally:
        flooder.close()
