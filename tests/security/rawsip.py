"""A hand-driven SIP peer over raw UDP: the attacker's (and the careful kiosk's) side of the
worker's hostile tests. It sends exactly the datagrams a test writes and records every datagram it
receives, answering the worker's in-dialog requests (BYE) with 200 so the worker's side closes."""
from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field

SDP = ("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
SDP_NO_MEDIA = "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"


def new_branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex[:16]


def header(msg: str, name: str) -> str | None:
    """The first value of header `name` in a SIP message (its head only)."""
    head = msg.split("\r\n\r\n", 1)[0]
    m = re.search(rf"^{re.escape(name)}[ \t]*:[ \t]*(.*)$", head, re.I | re.M)
    return m.group(1).strip() if m else None


def status(msg: str) -> int | None:
    m = re.match(r"SIP/2\.0 (\d{3})", msg)
    return int(m.group(1)) if m else None


def method(msg: str) -> str | None:
    m = re.match(r"([A-Z]+) \S+ SIP/2\.0", msg)
    return m.group(1) if m else None


def tag(value: str | None) -> str | None:
    m = re.search(r";\s*tag=([^;>\s]+)", value or "")
    return m.group(1) if m else None


@dataclass
class Dialog:
    """What a peer needs to speak inside one dialog it started (the kiosk's view)."""
    call_id: str
    from_tag: str
    to_tag: str | None = None
    cseq: int = 1
    request_uri: str = ""
    from_uri: str = ""
    to_uri: str = ""
    remote_target: str = ""
    display: str = ""                 # From's display name, written as given (quoted by caller)
    branch: str = field(default_factory=new_branch)


class RawPeer(asyncio.DatagramProtocol):
    """One UDP socket on loopback. `received` holds every datagram as (text, address)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.answer_byes = True
        self._waiters: list[tuple[object, asyncio.Future]] = []

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> "RawPeer":
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return peer

    # -- asyncio ------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        text = data.decode("utf-8", "replace")
        self.received.append((text, addr))
        if self.answer_byes and method(text) == "BYE":
            self.sendto(self.response_to(text, 200), addr)
        for entry in list(self._waiters):
            predicate, fut = entry
            if not fut.done() and predicate(text):
                fut.set_result(text)
                self._waiters.remove(entry)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def addr(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def sendto(self, text: str, addr) -> None:
        self.transport.sendto(text.encode(), tuple(addr))

    async def wait_for(self, predicate, timeout: float = 10.0) -> str:
        """The first datagram (already received or still to come) matching `predicate`."""
        for text, _ in self.received:
            if predicate(text):
                return text
        fut = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def responses(self, cseq_method: str) -> list[int]:
        return [status(t) for t, _ in self.received
                if status(t) and (header(t, "CSeq") or "").endswith(cseq_method)]

    def requests(self, name: str) -> list[str]:
        return [t for t, _ in self.received if method(t) == name]

    def response_to(self, request: str, code: int, reason: str = "OK") -> str:
        head = [f"SIP/2.0 {code} {reason}"]
        for name in ("Via", "From", "Call-ID", "CSeq"):
            head.append(f"{name}: {header(request, name)}")
        to = header(request, "To")
        head.append(f"To: {to}" + ("" if tag(to) else f";tag={uuid.uuid4().hex[:8]}"))
        head.append("Content-Length: 0")
        return "\r\n".join(head) + "\r\n\r\n"

    def request(self, dialog: Dialog, name: str, *, extra: str = "", body: str = "",
                to_tag: bool = True, branch: str | None = None, cseq: int | None = None,
                cseq_method: str | None = None) -> str:
        ip, port = self.addr
        to = f"<{dialog.to_uri}>" + (f";tag={dialog.to_tag}" if to_tag and dialog.to_tag else "")
        lines = [f"{name} {dialog.remote_target or dialog.request_uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {ip}:{port};rport;branch={branch or new_branch()}",
                 "Max-Forwards: 70",
                 f"From: {dialog.display}<{dialog.from_uri}>;tag={dialog.from_tag}",
                 f"To: {to}",
                 f"Call-ID: {dialog.call_id}",
                 f"CSeq: {cseq if cseq is not None else dialog.cseq} {cseq_method or name}",
                 f"Contact: <sip:{dialog.from_uri.split(':', 1)[1].split('@')[0]}@{ip}:{port}>"]
        if extra:
            lines.extend(extra.strip("\r\n").split("\r\n"))
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def invite(self, target: tuple[str, int], user: str, *, kiosk: str = "kiosk-1",
               extra: str = "", body: str | None = None, rtp_port: int = 4000,
               display: str = "") -> Dialog:
        """Send an INVITE for `user` at `target` and return its dialog (to-tag still unknown)."""
        ip, port = self.addr
        uri = f"sip:{user}@{target[0]}:{target[1]}"
        d = Dialog(call_id=uuid.uuid4().hex, from_tag=uuid.uuid4().hex[:10], request_uri=uri,
                   from_uri=f"sip:{kiosk}@{ip}:{port}", to_uri=uri, display=display)
        sdp = SDP.format(ip=ip, port=rtp_port) if body is None else body
        self.sendto(self.request(d, "INVITE", extra=extra, body=sdp, branch=d.branch), target)
        return d

    async def final_response(self, dialog: Dialog, cseq_method: str = "INVITE",
                             timeout: float = 10.0) -> str:
        text = await self.wait_for(
            lambda t: (status(t) or 0) >= 200 and header(t, "Call-ID") == dialog.call_id
            and (header(t, "CSeq") or "").endswith(cseq_method), timeout)
        return text

    def ack(self, dialog: Dialog, answer: str, target) -> None:
        """ACK a final answer to the INVITE (a 2xx gets a new branch; the dialog is updated)."""
        code = status(answer)
        dialog.to_tag = tag(header(answer, "To"))
        if code and code < 300:
            contact = header(answer, "Contact") or ""
            m = re.search(r"<([^>]+)>", contact)
            dialog.remote_target = m.group(1) if m else dialog.request_uri
            self.sendto(self.request(dialog, "ACK", cseq_method="ACK"), target)
        else:
            self.sendto(self.request(dialog, "ACK", branch=dialog.branch, cseq_method="ACK"),
                        target)

    def in_dialog(self, dialog: Dialog, name: str, target, *, extra: str = "",
                  body: str = "") -> str:
        """Send a new in-dialog request (CSeq advanced); returns the text sent."""
        dialog.cseq += 1
        text = self.request(dialog, name, extra=extra, body=body)
        self.sendto(text, target)
        return text


def sdp_audio_port(msg: str) -> int:
    """The audio port of the SDP in a SIP message's body."""
    m = re.search(r"^m=audio (\d+) ", msg.split("\r\n\r\n", 1)[1], re.M)
    if m is None:
        raise AssertionError(f"no audio in the SDP of:\n{msg}")
    return int(m.group(1))


def rtp_packet(seq: int, ssrc: int, payload: bytes = b"\x00" * 160, pt: int = 0) -> bytes:
    """An RTP packet (RFC 3550): version 2, no padding, extension or CSRC; 20 ms of PCMU."""
    import struct
    return struct.pack("!BBHII", 0x80, pt & 0x7F, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF,
                       ssrc) + payload


class RtpCounter(asyncio.DatagramProtocol):
    """A UDP socket that counts the RTP it receives, by source address."""

    def __init__(self) -> None:
        self.transport = None
        self.by_source: dict[tuple[str, int], int] = {}

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> "RtpCounter":
        _, c = await asyncio.get_running_loop().create_datagram_endpoint(
            cls, local_addr=(host, 0))
        return c

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2:
            self.by_source[addr[:2]] = self.by_source.get(addr[:2], 0) + 1

    @property
    def addr(self) -> tuple[str, int]:
        return self.transport.get_extra_info("sockname")[:2]

    @property
    def total(self) -> int:
        return sum(self.by_source.values())

    def sendto(self, data: bytes, addr) -> None:
        self.transport.sendto(data, tuple(addr))

    def close(self) -> None:
        self.transport.close()


async def transact(peer: RawPeer, text: str, target, predicate, timeout: float = 20.0) -> str:
    """Send a non-INVITE request and retransmit it as RFC 3261 timer E does (T1 = 0.5 s,
    doubling to T2 = 4 s) until a datagram matching `predicate` arrives: a real UA's BYE survives
    a lost datagram, and so must this one."""
    loop = asyncio.get_running_loop()
    deadline, interval = loop.time() + timeout, 0.5
    while True:
        peer.sendto(text, target)
        try:
            return await peer.wait_for(predicate, min(interval, max(0.01, deadline - loop.time())))
        except asyncio.TimeoutError:
            if loop.time() >= deadline:
                raise
            interval = min(interval * 2, 4.0)
