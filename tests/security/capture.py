"""Captures UDP datagrams on the loopback interface (a raw AF_PACKET socket; needs root or
CAP_NET_RAW), so a test can say what reached a worker's address, whatever the worker does."""
from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETH_HEADER = 14


@dataclass(frozen=True)
class Datagram:
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def available() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
        return True
    except (PermissionError, AttributeError, OSError):
        return False


def parse(frame: bytes) -> Datagram | None:
    if len(frame) < ETH_HEADER + 28 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[ETH_HEADER:]
    if ip[0] >> 4 != 4 or ip[9] != 17:                   # IPv4, UDP
        return None
    ihl = (ip[0] & 0x0F) * 4
    sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
    return Datagram(socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                    bytes(ip[ihl + 8:ihl + length]))


class LoopbackCapture:
    """Every UDP datagram on `lo` while running; `seen` lists them in order."""

    def __init__(self) -> None:
        self.seen: list[Datagram] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind(("lo", 0))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.setblocking(False)
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "LoopbackCapture":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._sock.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await loop.sock_recv(self._sock, 65535)
            d = parse(frame)
            if d is not None:
                self.seen.append(d)

    def to(self, host: str, marker: bytes) -> list[Datagram]:
        return [d for d in self.seen if d.dst == host and marker in d.payload]
