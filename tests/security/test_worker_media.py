"""A third party spraying a worker's RTP port (the issue saw the kiosk leg's audio redirected to
it after ~40 packets) gets none of the call's audio: the worker's RTP transports never switch
their remote address. The kiosk keeps receiving, and the worker keeps running."""
from __future__ import annotations

import asyncio

import pytest

from tests.security.worker_rig import WAIT, eventually, peers, reactor, start_worker  # noqa: F401
from tests.security.rawsip import RawPeer, RtpCounter, rtp_packet, sdp_audio_port, status
from tests.switch.fakecore import Script

pytestmark = pytest.mark.timeout(120)

NUMBER = "+15552345678"
SPRAY_PACKETS = 400          # ten times what redirected the audio in the issue
LEGIT_SSRC, SPRAY_SSRC = 0x1234, 0xBAD


async def test_rtp_sprayed_at_the_kiosk_leg_does_not_redirect_its_audio(
        start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    kiosk_rtp = await RtpCounter.open("127.0.0.1")
    sprayer = await RtpCounter.open("127.0.0.66")
    try:
        target = ("127.0.0.1", worker.sip_port)
        # No PIN header: the worker runs the IVR, so it streams prompts to the kiosk leg.
        dialog = kiosk.invite(target, NUMBER, rtp_port=kiosk_rtp.addr[1])
        answer = await kiosk.final_response(dialog, timeout=WAIT)
        assert status(answer) == 200, answer
        kiosk.ack(dialog, answer, target)
        worker_rtp = ("127.0.0.1", sdp_audio_port(answer))
        assert worker.rtp[0] <= worker_rtp[1] <= worker.rtp[1]
        await eventually(lambda: kiosk_rtp.total >= 10, WAIT)      # the prompt is flowing

        # The kiosk talks at 50 packets/s; the sprayer sends far faster from another address.
        seq = 0
        for burst in range(SPRAY_PACKETS // 20):
            kiosk_rtp.sendto(rtp_packet(burst, LEGIT_SSRC), worker_rtp)
            for _ in range(20):
                sprayer.sendto(rtp_packet(seq, SPRAY_SSRC, b"\x7f" * 160), worker_rtp)
                seq += 1
            await asyncio.sleep(0.02)            # pacing the sender, not waiting on an outcome
        before = kiosk_rtp.total
        # A second of the worker's audio after the spray: all of it must reach the kiosk.
        try:
            await eventually(lambda: kiosk_rtp.total >= before + 50, WAIT)
        finally:
            assert sprayer.total == 0, (sprayer.by_source, kiosk_rtp.by_source, before)
        kiosk.in_dialog(dialog, "BYE", target)
        await kiosk.final_response(dialog, "BYE", timeout=WAIT)
        assert worker.proc.poll() is None
    finally:
        kiosk_rtp.close()
        sprayer.close()


def dtmf_event(seq: int, ssrc: int, digit: int, ts: int, end: bool) -> bytes:
    """An RFC 4733 telephone-event packet (payload type 101, as the kiosk's SDP offers)."""
    import struct
    payload = struct.pack("!BBH", digit, (0x80 if end else 0) | 10, 800)
    return struct.pack("!BBHII", 0x80, 101, seq & 0xFFFF, ts, ssrc) + payload


def key_press(sender, ssrc: int, digit: int, seq0: int, ts: int, dest) -> int:
    """One key: a burst of start packets, then three end packets (as phones repeat them)."""
    for i in range(12):
        sender.sendto(dtmf_event(seq0 + i, ssrc, digit, ts, end=False), dest)
    for i in range(12, 15):
        sender.sendto(dtmf_event(seq0 + i, ssrc, digit, ts, end=True), dest)
    return seq0 + 15


async def test_rtp_sprayed_from_another_address_is_never_heard(start_worker, peers, eventually):
    """pjmedia's stream follows a new RTP source after ten packets (at once, if they come in a
    burst) whatever the transport says: the sprayer's keys would choose the caller's language.
    The worker's RTP socket takes packets from the kiosk's SDP address only, so the menu hears the
    kiosk's key (English) and never the sprayer's (Spanish), though the sprayer pressed first."""
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    kiosk_rtp = await RtpCounter.open("127.0.0.1")
    sprayer = await RtpCounter.open("127.0.0.66")
    try:
        target = ("127.0.0.1", worker.sip_port)
        dialog = kiosk.invite(target, NUMBER, rtp_port=kiosk_rtp.addr[1])
        answer = await kiosk.final_response(dialog, timeout=WAIT)
        assert status(answer) == 200, answer
        kiosk.ack(dialog, answer, target)
        worker_rtp = ("127.0.0.1", sdp_audio_port(answer))
        await eventually(lambda: kiosk_rtp.total >= 10, WAIT)      # the language menu plays
        for seq in range(10):                                      # the kiosk's own audio
            kiosk_rtp.sendto(rtp_packet(seq, LEGIT_SSRC), worker_rtp)
        seq = 0
        for press in range(4):                # "2": español, pressed by the sprayer, 4 times
            seq = key_press(sprayer, SPRAY_SSRC, 2, seq, 100_000 + 8000 * press, worker_rtp)
        key_press(kiosk_rtp, LEGIT_SSRC, 1, 10, 500_000, worker_rtp)  # "1": English
        await eventually(lambda: "kiosk hears [pin_enter" in worker.output, WAIT)
        assert "Please enter your PIN" in worker.output.split("kiosk hears [pin_enter", 1)[1]
        assert sprayer.total == 0, sprayer.by_source
        kiosk.in_dialog(dialog, "BYE", target)
        await kiosk.final_response(dialog, "BYE", timeout=WAIT)
        assert worker.proc.poll() is None
    finally:
        kiosk_rtp.close()
        sprayer.close()
