"""A hand-driven SIP user agent over UDP for hostile tests: it sends exactly the bytes a test
writes (a kiosk, an attacker on the kiosk network) and shows every datagram it gets back.

Only what the tests need: build a request, send it, wait (bounded) for a response or a request,
follow one dialog (Record-Route, the remote target, tags). It never retransmits by itself."""
from __future__ import annotations

import asyncio
import itertools
import re
import socket
import uuid
from dataclasses import dataclass, field

_counter = itertools.count(1)


def sdp(ip: str, port: int, *, audio: bool = True) -> str:
    lines = ["v=0", f"o=kiosk 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0"]
    if audio:
        lines += [f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
                  "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


@dataclass
class Message:
    raw: str
    source: tuple[str, int]

    @property
    def first_line(self) -> str:
        return self.raw.split("\r\n", 1)[0]

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.raw)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        m = re.match(r"([A-Z]+) \S+ SIP/2\.0", self.raw)
        return m.group(1) if m else None

    def headers(self, name: str) -> list[str]:
        head = self.raw.split("\r\n\r\n", 1)[0]
        return [m.group(1).strip() for m in
                re.finditer(rf"^{re.escape(name)}\s*:(.*)$", head, re.M | re.I)]

    def header(self, name: str) -> str | None:
        found = self.headers(name)
        return found[0] if found else None

    @property
    def body(self) -> str:
        return self.raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in self.raw else ""


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    target: str                 # the remote Contact
    route: list[str]            # Record-Route reversed (we are the caller)
    cseq: int = 1
    answer: Message | None = None


@dataclass
class UA:
    """One UDP socket at `ip`; `peer` is where requests go (the edge)."""
    ip: str
    peer: tuple[str, int]
    user: str = "kiosk"
    sock: socket.socket = field(init=False)
    received: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._queue: list[Message] = []

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: str | bytes, to: tuple[str, int] | None = None) -> None:
        self.sock.sendto(data.encode() if isinstance(data, str) else data, to or self.peer)

    def request(self, method: str, uri: str, *, call_id: str | None = None,
                from_tag: str | None = None, to: str | None = None, to_tag: str | None = None,
                cseq: int = 1, cseq_method: str | None = None, route: list[str] = (),
                extra: list[str] = (), body: str = "", branch: str | None = None,
                from_user: str | None = None, from_header: str | None = None,
                max_forwards: int = 70) -> str:
        call_id = call_id or f"{uuid.uuid4().hex}@{self.ip}"
        from_tag = from_tag or f"t{next(_counter)}"
        branch = branch or f"z9hG4bK{uuid.uuid4().hex[:16]}"
        user = from_user or self.user
        to = to or f"<{uri}>"
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.ip}:{self.port};branch={branch};rport",
                 from_header or f"From: <sip:{user}@{self.ip}:{self.port}>;tag={from_tag}",
                 f"To: {to}" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {call_id}", f"CSeq: {cseq} {cseq_method or method}",
                 f"Contact: <sip:{user}@{self.ip}:{self.port}>",
                 f"Max-Forwards: {max_forwards}"]
        lines += [f"Route: {r}" for r in route]
        lines += list(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        msg = "\r\n".join(lines) + "\r\n\r\n" + body
        self.send_raw(msg)
        return msg

    async def next(self, predicate=lambda m: True, timeout: float = 5.0) -> Message | None:
        """The next datagram matching `predicate`, or None after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, m in enumerate(self._queue):
                if predicate(m):
                    return self._queue.pop(i)
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                data, source = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), left)
            except asyncio.TimeoutError:
                return None
            m = Message(data.decode(errors="replace"), source)
            self.received.append(m)
            self._queue.append(m)

    async def final(self, call_id: str, timeout: float = 10.0) -> Message | None:
        """The final response of a request with `call_id` (provisional ones skipped)."""
        return await self.next(lambda m: m.status is not None and m.status >= 200
                               and m.header("Call-ID") == call_id, timeout)

    async def call(self, uri: str, *, rtp_port: int, extra: list[str] = (),
                   from_user: str | None = None, timeout: float = 20.0) -> Dialog | Message | None:
        """INVITE with an audio offer; on a 2xx, ACK and return the dialog, else the response."""
        call_id = f"{uuid.uuid4().hex}@{self.ip}"
        tag = f"t{next(_counter)}"
        self.request("INVITE", uri, call_id=call_id, from_tag=tag, extra=extra,
                     body=sdp(self.ip, rtp_port), from_user=from_user)
        answer = await self.final(call_id, timeout)
        if answer is None or answer.status >= 300:
            return answer
        to = answer.header("To")
        remote_tag = re.search(r";\s*tag=([^;>\s]+)", to).group(1)
        contact = re.search(r"<([^>]+)>", answer.header("Contact")).group(1)
        rr = [r.strip() for h in answer.headers("Record-Route") for r in h.split(",")]
        d = Dialog(call_id, tag, remote_tag, f"sip:{from_user or self.user}@{self.ip}",
                   re.search(r"<([^>]+)>", to).group(1), contact, list(reversed(rr)),
                   answer=answer)
        self.in_dialog(d, "ACK", cseq=1)
        return d

    def in_dialog(self, d: Dialog, method: str, *, cseq: int | None = None,
                  extra: list[str] = (), body: str = "") -> str:
        if cseq is None:
            d.cseq += 1
            cseq = d.cseq
        return self.request(method, d.target, call_id=d.call_id, from_tag=d.local_tag,
                            to=f"<{d.remote_uri}>", to_tag=d.remote_tag, cseq=cseq,
                            route=d.route, extra=extra, body=body)

    async def hang_up(self, d: Dialog, timeout: float = 10.0) -> Message | None:
        self.in_dialog(d, "BYE")
        return await self.next(lambda m: m.status is not None and m.header("Call-ID") == d.call_id
                               and "BYE" in (m.header("CSeq") or ""), timeout)
