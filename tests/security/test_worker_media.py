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
