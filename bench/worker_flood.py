"""SIP flood against one media worker: the datagram rate it sustains without losing in-dialog
messages, with its per-source screen (worker.screen_source_rate, as configured) against the
reference of the same worker with its flood budgets off (per-source and new-call rates 1e9; the
screen's other rules stay), same machine, same run.

    .venv/bin/python bench/worker_flood.py [--seconds 4] [--rates 100,300,1000,3000] [--rounds 3]

One kiosk (127.0.0.1) holds a call on the worker (in its IVR) and sends an in-dialog OPTIONS every
50 ms; one attacker (127.0.0.66) sends new INVITEs (each a fresh Call-ID) at the given rate. For
each rate, prints the median share of the kiosk's requests answered within 2 s and the worker's
CPU %; then, per variant, the highest rate at which every request was answered, and their ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TICKS = os.sysconf("SC_CLK_TCK")
PROBE_SECONDS = 0.05          # the kiosk's in-dialog request cadence
ANSWER_SECONDS = 2.0          # a probe answered later than this counts as lost


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _flood_invite(target: tuple[str, int], src_port: int, n: int) -> bytes:
    call_id = uuid.uuid4().hex
    body = ("v=0\r\no=- 1 1 IN IP4 127.0.0.66\r\ns=-\r\nc=IN IP4 127.0.0.66\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    return (f"INVITE sip:+15552345678@{target[0]}:{target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.66:{src_port};branch=z9hG4bK{call_id[:12]}{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:kiosk-9@127.0.0.66>;tag={n}\r\n"
            f"To: <sip:+15552345678@{target[0]}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:kiosk-9@127.0.0.66:{src_port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


class _Core:
    """Just enough of the core for a worker to say Hello and keep its link (no calls asked)."""

    def __init__(self, reactor):
        from twisted.internet import protocol
        from twisted.protocols import amp
        from switch.wire import protocol as wire

        class CoreAMP(amp.AMP):
            @wire.Hello.responder
            def hello(self, **kw):
                core.greeted = True
                return {"node": "bench"}

            @wire.Heartbeat.responder
            def heartbeat(self, **kw):
                return {"unknown_calls": []}

        challenge = getattr(wire, "Challenge", None)
        if challenge is not None:        # an authenticated core link: any proof is taken here
            CoreAMP.challenge = challenge.responder(lambda self: {"nonce": os.urandom(32)})
        core = self
        self.greeted = False
        self.port = reactor.listenTCP(0, protocol.Factory.forProtocol(CoreAMP),
                                      interface="127.0.0.1")


async def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.02)


async def measure(reactor, tmp: Path, source_rate: float, rates: list[int], seconds: float
                  ) -> dict[int, tuple[float, float]]:
    from tests.security.rawsip import RawPeer, status
    core = _Core(reactor)
    cfg = tmp / f"flood{int(source_rate)}.toml"
    cfg.write_text(f"[worker]\nscreen_source_rate = {source_rate}\n"
                   f"screen_source_burst = {min(source_rate * 2, 1e9)}\n"
                   + ("screen_call_rate = 1e9\n" if source_rate >= 1e9 else ""))
    sip_port = _free_port()
    rtp = 42000 + (os.getpid() % 200) * 40
    argv = [sys.executable, "-m", "switch.worker", "--worker-id", "bench", "--sip-port",
            str(sip_port), "--rtp-port-min", str(rtp), "--rtp-port-max", str(rtp + 39),
            "--core", f"tcp:127.0.0.1:{core.port.getHost().port}", "--config", str(cfg),
            "--data-dir", str(tmp)]
    log_path = tmp / f"worker{int(source_rate)}.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                            env=dict(os.environ, ICS_DATABASE_URL=""))
    kiosk = await RawPeer.open("127.0.0.1")
    loop = asyncio.get_running_loop()
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.66", 0))
    attacker.setblocking(False)
    target = ("127.0.0.1", sip_port)
    results: dict[int, tuple[float, float]] = {}
    try:
        await _until(lambda: core.greeted, 20)
        dialog = kiosk.invite(target, "+15552345678")
        answer = await kiosk.final_response(dialog, timeout=10)
        assert status(answer) == 200, answer
        kiosk.ack(dialog, answer, target)
        n = 0
        for rate in rates:
            sent_cseqs: list[int] = []
            c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
            next_probe = t0
            sent = 0
            while (now := time.monotonic()) < t0 + seconds:
                due = int((now - t0) * rate) - sent
                for _ in range(max(0, due)):
                    n += 1
                    try:
                        attacker.sendto(_flood_invite(target, attacker.getsockname()[1], n),
                                        target)
                    except BlockingIOError:
                        pass
                    sent += 1
                if now >= next_probe:
                    kiosk.in_dialog(dialog, "OPTIONS", target)
                    sent_cseqs.append(dialog.cseq)
                    next_probe += PROBE_SECONDS
                await asyncio.sleep(0.005)
            c1, t1 = _cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(ANSWER_SECONDS)     # the answer deadline of the last probes
            from tests.security.rawsip import header
            answered = {int((header(t, "CSeq") or "0 x").split()[0]) for t, _ in kiosk.received
                        if t.startswith("SIP/2.0") and header(t, "Call-ID") == dialog.call_id
                        and (header(t, "CSeq") or "").endswith("OPTIONS")}
            share = sum(1 for c in sent_cseqs if c in answered) / len(sent_cseqs)
            results[rate] = (share, 100.0 * (c1 - c0) / (t1 - t0))
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")
        kiosk.in_dialog(dialog, "BYE", target)
    finally:
        attacker.close()
        kiosk.close()
        proc.terminate()
        await loop.run_in_executor(None, proc.wait, 15)
        log_file.close()
        await asyncio.wrap_future(asyncio.ensure_future(asyncio.sleep(0)))
        core.port.stopListening()
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rates", default="100,300,1000,3000")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    rates = [int(r) for r in a.rates.split(",")]

    loop = asyncio.new_event_loop()
    from twisted.internet import asyncioreactor
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    from ops.config import load
    configured = load(None).worker.screen_source_rate

    async def run():
        reactor.startRunning(installSignalHandlers=False)
        out = {"screened": [], "reference": []}
        with tempfile.TemporaryDirectory() as d:
            for _ in range(a.rounds):
                out["screened"].append(await measure(reactor, Path(d), configured, rates,
                                                     a.seconds))
                out["reference"].append(await measure(reactor, Path(d), 1e9, rates, a.seconds))
        return out

    out = loop.run_until_complete(run())
    print(f"flood of new INVITEs from one address; kiosk in-dialog OPTIONS every "
          f"{PROBE_SECONDS * 1000:.0f} ms; medians of {a.rounds} rounds")
    print(f"{'flood/s':>8} | {'screened: answered  cpu%':>26} | {'reference: answered  cpu%':>27}")
    sustained = {}
    for rate in rates:
        row = []
        for variant in ("screened", "reference"):
            share = statistics.median(r[rate][0] for r in out[variant])
            cpu = statistics.median(r[rate][1] for r in out[variant])
            row.append(f"{share * 100:14.1f}% {cpu:9.1f}")
            if share >= 1.0:
                sustained[variant] = max(sustained.get(variant, 0), rate)
        print(f"{rate:8d} | {row[0]:>26} | {row[1]:>27}")
    s, r = sustained.get("screened", 0), sustained.get("reference", 0)
    print(f"highest flood rate with every in-dialog request answered: screened "
          f"(source rate {configured:g}/s) {s}/s, reference (flood budgets off) {r}/s")
    print(f"ratio screened/reference: {s / r:.2f}" if r else "ratio: reference lost requests "
          f"at every rate tried")


if __name__ == "__main__":
    main()
