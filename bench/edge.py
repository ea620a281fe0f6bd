"""Benchmark of the production edge's own cost: call setup through it, next to a plain proxy.

In one run, on this machine (everything on loopback): a SIPp kiosk (listed, kiosk1 at 127.0.0.1)
places `--calls` calls one at a time from this process (INVITE to 200 timed with
perf_counter; then ACK and BYE along the record-routed path) to a SIPp UAS standing in for a
worker (bench/switch/edge_uas.xml). The same calls go through, in alternating rounds:
  reference  Kamailio as a plain record-routing proxy (bench/switch/kamailio.cfg)
  edge       config/kamailio/kamailio.cfg as `ics edge render` writes it: sanity, pike, source
             admission, From checks, PIN-header strip, dialog tracking, topoh, dispatcher
  edge+rtp   the same with rtpengine anchoring media (if rtpengine is installed)
Pike's limit is raised for the run (the limiter is not what is measured). Prints the median setup
time of each and its ratio to the reference (medians over rounds of per-round medians).

    .venv/bin/python bench/edge.py [--calls 300] [--rounds 3]

Needs sipp (Debian sip-tester) and kamailio; rtpengine optional. Stops by itself.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ops.edge import EdgeSettings, render_config  # noqa: E402

HERE = ROOT / "bench" / "switch"
UAS = HERE / "edge_uas.xml"
TEMPLATE = ROOT / "config" / "kamailio" / "kamailio.cfg"
STARTUP_SECONDS_MAX = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_options(port: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        while time.monotonic() < deadline:
            s.sendto((f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:"
                      f"{s.getsockname()[1]};branch=z9hG4bK-{time.monotonic_ns()};rport\r\n"
                      "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
                      f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n"
                      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(),
                     ("127.0.0.1", port))
            try:
                s.recv(4096)
                return
            except OSError:
                continue
    raise SystemExit(f"Kamailio on {port} never answered")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def spawn(argv: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)


def configure(kind: str, tmp: Path, port: int, uas: int, ng: int | None) -> list[str]:
    if kind == "reference":
        return ["-f", str(HERE / "kamailio.cfg"), "-A", f"BENCH_LISTEN=udp:127.0.0.1:{port}",
                "-A", f'BENCH_CALLED="sip:127.0.0.1:{uas}"']
    (tmp / "kiosks.list").write_text("1 127.0.0.1 32 0 kiosk1\n")
    (tmp / "dispatcher.list").write_text(f"1 sip:127.0.0.1:{uas} 0 0 duid=w1;maxload=100000\n")
    settings = EdgeSettings(listen=f"127.0.0.1:{port}", address_list=str(tmp / "kiosks.list"),
                            dispatcher_list=str(tmp / "dispatcher.list"), topoh_key="b" * 32,
                            pike_requests_per_unit=10_000, ping_seconds=0,
                            rtpengine=f"udp:127.0.0.1:{ng}" if ng else None)
    cfg = tmp / f"{kind}.cfg"
    cfg.write_text(render_config(TEMPLATE.read_text(), settings))
    return ["-f", str(cfg)]


INVITE = ("INVITE sip:15551234567@127.0.0.1:{port} SIP/2.0\r\n"
          "Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{n}-i;rport\r\n"
          "From: <sip:kiosk1@127.0.0.1:{me}>;tag=k{n}\r\nTo: <sip:15551234567@127.0.0.1:{port}>\r\n"
          "Call-ID: bench-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:kiosk1@127.0.0.1:{me}>\r\n"
          "Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {length}\r\n\r\n{sdp}")
SDP = ("v=0\r\no=kiosk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
IN_DIALOG = ("{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{n}-{m};rport\r\n"
             "From: <sip:kiosk1@127.0.0.1:{me}>;tag=k{n}\r\nTo: {to}\r\nCall-ID: bench-{n}@127.0.0.1\r\n"
             "CSeq: {cseq} {method}\r\n{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
ANSWER_SECONDS_MAX = 5.0


def _header(msg: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in msg.split("\r\n\r\n")[0].split("\r\n")
            if line.lower().startswith(name.lower() + ":")]


def _final(sock: socket.socket, call_id: str, method: str) -> str:
    deadline = time.monotonic() + ANSWER_SECONDS_MAX
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(65535).decode(errors="replace")
        except socket.timeout:
            break
        if (msg.startswith("SIP/2.0 ") and int(msg[8:11]) >= 200 and call_id in msg
                and method in _header(msg, "CSeq")[0]):
            return msg
    raise SystemExit(f"no final answer to {method} of {call_id}")


def one_round(kind: str, tmp: Path, calls: int, ng: int | None) -> float:
    """Median INVITE-to-200 time of `calls` sequential calls (each set up, ACKed, hung up)."""
    work = tmp / f"{kind}-{time.monotonic_ns()}"
    work.mkdir()
    port, uas = free_port(), free_port()
    procs = [spawn(["sipp", "-sf", str(UAS), "-nostdin", "-i", "127.0.0.1", "-p", str(uas),
                    "-m", str(calls * 10), "-timeout", "120s"], work / "uas.log", work)]
    setup = []
    try:
        procs.append(spawn(["kamailio", "-DD", "-E", "-Y", str(work),
                            *configure(kind, work, port, uas, ng)], work / "kamailio.log"))
        wait_options(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            me = s.getsockname()[1]
            for i in range(calls):
                n = f"{work.name}-{i}"                # unique across rounds: rtpengine keys calls
                call_id = f"bench-{n}@127.0.0.1"
                t0 = time.perf_counter()
                s.sendto(INVITE.format(port=port, me=me, n=n, length=len(SDP), sdp=SDP).encode(),
                         ("127.0.0.1", port))
                ok = _final(s, call_id, "INVITE")
                setup.append(time.perf_counter() - t0)
                if not ok.startswith("SIP/2.0 200"):
                    raise SystemExit(f"{kind}: {ok.splitlines()[0]}; logs in {work}")
                routes = "".join(f"Route: {r}\r\n" for r in reversed(
                    [x.strip() for h in _header(ok, "Record-Route") for x in h.split(",")]))
                target = _header(ok, "Contact")[0].strip("<>").split(">")[0]
                to = _header(ok, "To")[0]
                s.sendto(IN_DIALOG.format(method="ACK", target=target, me=me, n=n, m="a", to=to,
                                          cseq=1, routes=routes).encode(), ("127.0.0.1", port))
                s.sendto(IN_DIALOG.format(method="BYE", target=target, me=me, n=n, m="b", to=to,
                                          cseq=2, routes=routes).encode(), ("127.0.0.1", port))
                _final(s, call_id, "BYE")
        return statistics.median(setup) * 1000
    finally:
        for p in reversed(procs):
            stop(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} missing")
    tmp = Path(tempfile.mkdtemp(prefix="ics-bench-edge-"))
    rtpe, ng = None, None
    kinds = ["reference", "edge"]
    if shutil.which("rtpengine"):
        ng = free_port()
        rtpe = spawn(["rtpengine", "--config-file=none", "--foreground", "--log-stderr",
                      "--table=-1", "--interface=external/127.0.0.3",
                      "--interface=internal/127.0.0.4", f"--listen-ng=127.0.0.1:{ng}",
                      "--port-min=40000", "--port-max=59999", "--endpoint-learning=off",
                      "--delete-delay=0"],     # ports of ended calls free at once, not after 30 s
                     tmp / "rtpengine.log")
        kinds.append("edge+rtp")
    try:
        results: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                results[kind].append(one_round(kind, tmp, args.calls,
                                               ng if kind == "edge+rtp" else None))
    finally:
        if rtpe is not None:
            stop(rtpe)
    ref = statistics.median(results["reference"])
    print(f"edge setup latency, INVITE to 200 through Kamailio to a SIPp UAS, {args.calls} calls "
          f"one at a time, median of {args.rounds} rounds' medians:")
    for kind in kinds:
        m = statistics.median(results[kind])
        print(f"  {kind:10s} {m:7.3f} ms   ratio to reference {m / ref:5.2f}   "
              f"(rounds: {', '.join(f'{x:.3f}' for x in results[kind])})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
