"""The production edge (Kamailio, rtpengine) in front of a real node, attacked from the kiosk
network: who is admitted, what is refused before any worker sees it, and what leaks. See
conftest.py for the topology and its addresses; every refusal is checked at the worker side (its
SIP message log) as well as in the answer the attacker gets."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import MOM, PIN
from tests.security.conftest import (ATTACKER, EDGE, HAS_RTPENGINE, INTERNAL_ADDRESSES, KIOSK_A2,
                                     needs_edge)
from tests.security.sipua import UA

pytestmark = [needs_edge, pytest.mark.timeout(180)]


def _leaks(messages: list[str]) -> list[str]:
    return [line for m in messages for line in m.splitlines()
            if any(a in line for a in INTERNAL_ADDRESSES)]


async def test_a_listed_kiosk_calls_through_the_edge_and_nothing_internal_leaks(edge):
    called = await edge.rig.called_party("1", hangs_up_after=3)
    kiosk = await edge.kiosk(MOM, pin=PIN)
    assert await called.finished() == 0, called.output() + edge.rig.log()
    assert await kiosk.finished() == 0, kiosk.output() + edge.kamailio_log()[-3000:]
    (cdr,) = await edge.rig.wait_cdrs(1)
    assert cdr["disposition"] == "completed", edge.rig.log()
    received = [m for m in re.split(r"^-{20,}.*$", kiosk.messages(), flags=re.M)
                if "message received" in m]
    assert any("SIP/2.0 200 OK" in m and "m=audio" in m for m in received), received
    assert any(m.split("bytes :", 1)[1].lstrip().startswith("BYE ") for m in received)
    if not HAS_RTPENGINE:     # without media anchoring the SDP names the worker: headers only
        received = [m.split("\n\n", 1)[0] if "m=audio" in m else m for m in received]
    assert not _leaks(received), _leaks(received)
    assert not any("ics-switch" in m or "REFER" in m for m in received)   # no software names


async def test_an_invite_from_an_unlisted_source_is_refused_before_any_worker(edge):
    ua = UA(ATTACKER, edge.address, user="kiosk-a1")
    try:
        result = await ua.call(f"sip:{MOM}@{EDGE}:{edge.port}", rtp_port=40000,
                               extra=[f"X-ICS-PIN: {PIN}"])
        assert result is not None and result.status == 403, result
        assert not edge.worker_saw(result.header("Call-ID"))
    finally:
        ua.close()


async def test_a_kiosk_claiming_another_kiosks_id_is_refused(edge):
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a1")       # kiosk-a2's source, kiosk-a1's name
    try:
        result = await ua.call(f"sip:{MOM}@{EDGE}:{edge.port}", rtp_port=40000,
                               extra=[f"X-ICS-PIN: {PIN}"])
        assert result is not None and result.status == 403, result
        assert not edge.worker_saw(result.header("Call-ID"))
        hidden = await ua.call(f"sip:{MOM}@{EDGE}:{edge.port}", rtp_port=40000, extra=[],
                               from_user="kiosk-a2")
        assert hidden is not None        # control: the same source as itself gets through
    finally:
        ua.close()


async def test_the_pin_header_from_an_untrusted_kiosk_never_reaches_the_worker(edge):
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    try:
        d = await ua.call(f"sip:{MOM}@{EDGE}:{edge.port}", rtp_port=40000,
                          extra=[f"X-ICS-PIN: {PIN}", f"x-ics-pin: {PIN}"])
        assert d is not None and not hasattr(d, "status"), d
        assert edge.worker_saw(f"Call-ID: {d.call_id}")      # the INVITE reached the worker...
        assert not edge.worker_saw("X-ICS-PIN"), edge.rig.log()   # ...without the PIN header
        assert edge.worker_saw(f"X-ICS-Kiosk-Source: {KIOSK_A2}")
        answer = d.answer.raw if HAS_RTPENGINE else d.answer.raw.split("\r\n\r\n")[0]
        assert not _leaks([answer]), _leaks([answer])
        bye = await ua.hang_up(d)
        assert bye is not None and bye.status == 200, bye
    finally:
        ua.close()
