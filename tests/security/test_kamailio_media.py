"""Media in the production topology: rtpengine anchors every kiosk leg at the edge with strict
source, the kiosk's media address taken from where its signalling came from. A third party on the
kiosk network that sprays RTP at the call's edge port is neither heard (nothing of it reaches the
worker: captured on the loopback interface at the worker's address) nor hears anything (it gets
no packet back), while the kiosk's own audio keeps flowing both ways."""
from __future__ import annotations

import asyncio
import re
import socket
import struct

import pytest

from tests.e2e.conftest import MOM
from tests.security import capture
from tests.security.conftest import ATTACKER, EDGE, HAS_RTPENGINE, KIOSK_A2, NODE, needs_edge
from tests.security.sipua import UA

pytestmark = [needs_edge, pytest.mark.timeout(180),
              pytest.mark.skipif(not HAS_RTPENGINE, reason="rtpengine missing (tests/run installs "
                                                            "rtpengine-daemon)"),
              pytest.mark.skipif(not capture.available(),
                                 reason="capturing on lo needs root or CAP_NET_RAW")]

KIOSK_MARK, INTRUDER_MARK = b"KIOSK-VOICE-0001", b"INTRUDER-0000666"
PACKET_INTERVAL = 0.02       # one G.711 frame of 20 ms


def rtp(seq: int, ssrc: int, mark: bytes) -> bytes:
    header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc)
    return header + (mark * 10)[:160]


def _udp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def _drain(s: socket.socket) -> list[tuple[bytes, tuple]]:
    got = []
    while True:
        try:
            got.append(s.recvfrom(2048))
        except BlockingIOError:
            return got


async def _send(s: socket.socket, to: tuple[str, int], mark: bytes, n: int, ssrc: int,
                seq0: int = 0) -> None:
    for i in range(n):
        s.sendto(rtp(seq0 + i, ssrc, mark), to)
        await asyncio.sleep(PACKET_INTERVAL)        # pacing, as a phone sends


async def _until(predicate, what: str, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what}: not so after {timeout}s"
        await asyncio.sleep(0.05)


async def test_a_third_party_spraying_the_calls_edge_port_is_neither_heard_nor_hears(edge):
    kiosk_media, intruder = _udp(KIOSK_A2), _udp(ATTACKER)
    ua = UA(KIOSK_A2, edge.address, user="kiosk-a2")
    try:
        async with capture.LoopbackCapture() as cap:
            d = await ua.call(f"sip:{MOM}@{EDGE}:{edge.port}",
                              rtp_port=kiosk_media.getsockname()[1])
            assert d is not None and not hasattr(d, "status"), d
            body = d.answer.body
            media_ip = re.search(r"^c=IN IP4 (\S+)", body, re.M).group(1)
            media_port = int(re.search(r"^m=audio (\d+)", body, re.M).group(1))
            assert media_ip == EDGE, body                      # anchored at the edge
            target = (media_ip, media_port)

            # the intruder sprays first, before the kiosk has sent anything, then alongside it
            await _send(intruder, target, INTRUDER_MARK, 25, 0x0BAD0BAD)
            both = asyncio.gather(_send(kiosk_media, target, KIOSK_MARK, 100, 0x1234),
                                  _send(intruder, target, INTRUDER_MARK, 100, 0x0BAD0BAD, 25),
                                  _send(intruder, (media_ip, media_port + 1), INTRUDER_MARK, 20,
                                        0x0BAD0BAD))
            await both
            await _until(lambda: len(cap.to(NODE, KIOSK_MARK)) >= 50,
                         "the kiosk's audio reaching the worker")
            heard_from_worker = _drain(kiosk_media)
            intruder_got = _drain(intruder)

        assert cap.to(NODE, KIOSK_MARK), "the kiosk's audio never reached the worker"
        assert not cap.to(NODE, INTRUDER_MARK), "the intruder's RTP reached the worker"
        assert len(cap.to(EDGE, INTRUDER_MARK)) >= 100          # it was sent, and dropped there
        assert heard_from_worker and all(src == target for _, src in heard_from_worker)
        assert intruder_got == [], f"the intruder received {len(intruder_got)} packets"
        bye = await ua.hang_up(d)
        assert bye is not None and bye.status == 200, bye
    finally:
        ua.close()
        kiosk_media.close()
        intruder.close()
