"""Benchmark of the SIP front door's per-datagram cost (not a test).

In one run, in-process, no sockets (a fake transport and a task.Clock): (1) new INVITEs answered
with a 302 (parse, Via stamping, a pick over 16 workers with a slot reservation, To-tag,
serialise, metrics);
(2) the same INVITE flood from one source once its token bucket is empty (the cost of shedding).
Reference, same run: Twisted's `sip.MessagesParser` parsing the same INVITE and nothing more, the
floor any `twisted.protocols.sip` redirector pays. Prints medians over rounds and the ratios.

    .venv/bin/python bench/frontdoor.py [--rounds 7] [--datagrams 5000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry  # noqa: E402
from twisted.internet import task  # noqa: E402
from twisted.protocols import sip  # noqa: E402

from switch.processes.frontdoor import FrontDoor  # noqa: E402
from switch.processes.supervisor import WorkerTable  # noqa: E402

WORKERS = 16                                 # a node's pool, 2 calls each


def invite(i: int) -> bytes:
    return ("INVITE sip:15551234567@10.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bK-{i};rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: \"Kiosk 1\" <sip:kiosk1@10.1.2.3>;tag=k1\r\n"
            "To: <sip:15551234567@10.0.0.1>\r\n"
            f"Call-ID: call-{i}@kiosk\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:kiosk1@10.1.2.3:5062>\r\nContent-Type: application/sdp\r\n"
            "Content-Length: 129\r\n\r\n"
            "v=0\r\no=kiosk 1 1 IN IP4 10.1.2.3\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\r\n").encode()


class Sink:
    def __init__(self):
        self.n = 0

    def write(self, data, addr):
        self.n += 1


def door(rate: float, burst: int) -> tuple[FrontDoor, task.Clock]:
    clock = task.Clock()
    clock.advance(1.0)
    table = WorkerTable(slot_reservation_seconds=5.0, default_host="10.0.0.1")
    for w in range(WORKERS):
        table.hello(f"w{w + 1}", capacity=2, sip_port=5070 + w, pid=w, now=1.0)
    d = FrontDoor(table, clock, retry_after_seconds=5, rate_per_second=rate, burst=burst,
                  sources_max=10_000, registry=CollectorRegistry())
    d.transport = Sink()
    return d, clock


def per_second(fn, datagrams: list[bytes]) -> float:
    began = time.perf_counter()
    for data in datagrams:
        fn(data)
    return len(datagrams) / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--datagrams", type=int, default=5_000)
    args = ap.parse_args()
    source = ("10.1.2.3", 5062)

    redirect, parse, shed = [], [], []
    for r in range(args.rounds):
        datagrams = [invite(r * args.datagrams + i) for i in range(args.datagrams)]

        d, clock = door(rate=1e9, burst=10 ** 9)

        def arrive(b: bytes) -> None:
            # INVITEs 0.2 s apart: at most 25 reservations live (5 s), under the 32 slots
            clock.advance(0.2)
            d.datagramReceived(b, source)
        redirect.append(per_second(arrive, datagrams))
        assert d.transport.n == len(datagrams)
        assert d.requests_total.labels(method="INVITE", response="302")._value.get() == len(
            datagrams)

        def parse_only(b: bytes) -> None:
            found = []
            p = sip.MessagesParser(found.append)
            p.dataReceived(b)
            p.dataDone()
            assert found
        parse.append(per_second(parse_only, datagrams))

        d, _ = door(rate=1.0, burst=1)
        shed.append(per_second(lambda b: d.datagramReceived(b, source), datagrams))
        assert d.transport.n == 1

    med = statistics.median
    print(f"front door, {args.rounds} rounds of {args.datagrams} INVITEs (medians):")
    print(f"  INVITE -> 302 (pick + reserve + answer): {med(redirect):>10,.0f} /s")
    print(f"  flood shed by the token bucket:          {med(shed):>10,.0f} /s")
    print(f"  reference: sip.MessagesParser only:      {med(parse):>10,.0f} /s")
    print(f"  ratio 302 / parse-only:   {med(redirect) / med(parse):.2f}")
    print(f"  ratio shed / parse-only:  {med(shed) / med(parse):.2f}")


if __name__ == "__main__":
    main()
