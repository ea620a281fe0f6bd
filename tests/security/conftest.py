"""The production topology under attack: a real node (core, supervisor, one pjsua2 media worker)
whose workers listen only on an internal address, Kamailio in front of it with the config that
`ics edge render` writes from the node config and the kiosk table, and rtpengine anchoring media.

Addresses (all loopback; Linux answers on the whole of 127.0.0.0/8):
  127.0.0.1  kiosk-a1 (trusted: sends the PIN in its INVITE) and the SIPp called party (trunk)
  127.0.0.6  kiosk-a2 (not trusted)
  127.0.0.5  an attacker on the kiosk network (no kiosk there); 127.0.0.7 a flooder
  127.0.0.3  the edge's kiosk-facing side: Kamailio and rtpengine's external interface
  127.0.0.4  the edge's internal side: Kamailio and rtpengine towards the workers
  127.0.0.2  the node: its worker (SIP and RTP) and its unused front door

The worker logs every SIP message it receives (pjsip level 4, relayed into `edge.worker_lines`):
that is the capture at the worker side the tests read.
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from ops.config import load
from ops.node import start_node
from ops.seed import load_directory
from tests.e2e.conftest import (WAIT, Rig, Sipp, load_world, node_config,
                                relay_worker_lines, stop_sipps, worker_ready)
from tests.switch.conftest import reactor  # noqa: F401  (the running reactor fixture)

KIOSK_A1, KIOSK_A2 = "127.0.0.1", "127.0.0.6"
ATTACKER, FLOODER = "127.0.0.5", "127.0.0.7"
EDGE, INTERNAL, NODE = "127.0.0.3", "127.0.0.4", "127.0.0.2"
INTERNAL_ADDRESSES = (INTERNAL, NODE)
SCENARIOS = Path(__file__).with_name("scenarios")
PIKE_REQUESTS, PIKE_WINDOW = 40, 2

needs_edge = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("sipp") is None,
    reason="kamailio or sipp missing: tests/run installs kamailio and sip-tester")
HAS_RTPENGINE = shutil.which("rtpengine") is not None


def free_port(host: str, kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_range(host: str, n: int) -> tuple[int, int]:
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 2)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, p))
            return base, base + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@dataclass
class Edge:
    rig: Rig
    port: int                       # Kamailio's kiosk-facing port on EDGE
    out: Path                       # the rendered files
    log: Path                       # Kamailio's log
    procs: list = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return EDGE, self.port

    @property
    def worker_lines(self) -> list[str]:
        return self.rig.worker_lines

    def worker_pid(self) -> int | None:
        return self.rig.node.supervisor.pid("w1")

    def kamailio_log(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_saw(self, text: str) -> bool:
        return any(text.lower() in line.lower() for line in self.rig.worker_lines)

    async def kiosk(self, number: str, *, pin: str, kiosk_id: str = "kiosk-a1",
                    name: str = "kiosk") -> Sipp:
        """SIPp as trusted kiosk-a1 calling `number` through the edge, PIN in the INVITE."""
        return await self.rig.sipp(name, str(SCENARIOS / "edge_kiosk.xml"),
                                   f"{EDGE}:{self.port}", "-s", number, "-key", "pin", pin,
                                   "-key", "kiosk", kiosk_id)


def _node_config(tmp: Path, dsn: str) -> Path:
    """The e2e node's config with the worker on NODE, trusting only the edge's internal side,
    and logging every SIP message it receives (level 4)."""
    rtp = free_range(NODE, 100)
    door, worker = rtp[0], rtp[0]
    while door == worker or any(rtp[0] <= p <= rtp[1] for p in (door, worker)):
        door, worker = free_port(NODE), free_port(NODE)
    return node_config(tmp, dsn, host=NODE, ports=(door, worker, rtp[0]),
                       worker_extra=f'sip_log_level = 4\nedge_addresses = ["{INTERNAL}"]')


async def _wait_answering(port: int, log: Path, timeout: float = 15.0) -> None:
    """OPTIONS from the edge's own internal address (no kiosk's pike count) until it answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((INTERNAL, 0))
        s.setblocking(False)
        while loop.time() < deadline:
            options = (f"OPTIONS sip:{EDGE}:{port} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP {INTERNAL}:{s.getsockname()[1]};branch=z9hG4bK-up"
                       f"{loop.time()};rport\r\nFrom: <sip:probe@{INTERNAL}>;tag=p\r\n"
                       f"To: <sip:{EDGE}>\r\nCall-ID: probe-{loop.time()}\r\nCSeq: 1 OPTIONS\r\n"
                       "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            s.sendto(options, (EDGE, port))
            try:
                reply = await asyncio.wait_for(loop.sock_recv(s, 4096), 0.3)
            except (asyncio.TimeoutError, ConnectionRefusedError):
                continue
            if reply.startswith(b"SIP/2.0 200"):
                return
    raise AssertionError("Kamailio never answered OPTIONS:\n" + log.read_text()[-3000:])


async def _rtpengine_ready(port: int, proc, log: Path, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        while loop.time() < deadline:
            assert proc.returncode is None, "rtpengine exited:\n" + log.read_text()[-3000:]
            s.sendto(b"probe d7:command4:pinge", ("127.0.0.1", port))
            try:
                reply = await asyncio.wait_for(loop.sock_recv(s, 4096), 0.3)
            except (asyncio.TimeoutError, ConnectionRefusedError):
                continue
            if b"pong" in reply:
                return
    raise AssertionError("rtpengine never answered ping:\n" + log.read_text()[-3000:])


async def _stop(proc) -> None:
    if proc.returncode is None:
        os.killpg(proc.pid, signal.SIGTERM)       # its own session: the daemon and its children
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def _ics(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    return subprocess.run([sys.executable, "-m", "ops.cli", "--config", str(config), *args],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
async def edge(reactor, pg_dsn, tmp_path):
    """The node behind Kamailio (and rtpengine when installed), kiosk sources registered."""
    from twisted.logger import globalLogPublisher
    trunk_port = free_port("127.0.0.1")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await load_world(conn, tmp_path, trunk_port)
        await conn.execute("UPDATE kiosk SET sources = ARRAY[$2::cidr] WHERE id = $1",
                           "kiosk-a1", KIOSK_A1)
        await conn.execute("UPDATE kiosk SET sources = ARRAY[$2::cidr] WHERE id = $1",
                           "kiosk-a2", KIOSK_A2)
    finally:
        await conn.close()
    config_file = _node_config(tmp_path, pg_dsn)
    cfg = load(config_file, environ={})
    rig = Rig(None, cfg, pg_dsn, tmp_path, trunk_port)

    port, internal_port = free_port(EDGE), free_port(INTERNAL)
    out = tmp_path / "edge"
    render = ["edge", "render", "--out", str(out), "--listen", f"{EDGE}:{port}",
              "--internal", f"{INTERNAL}:{internal_port}", "--node", NODE,
              "--pike-requests", str(PIKE_REQUESTS), "--pike-window", str(PIKE_WINDOW)]
    procs = []
    if HAS_RTPENGINE:
        ng = free_port("127.0.0.1")
        low, high = free_range(EDGE, 60)
        rlog = tmp_path / "rtpengine.log"
        with open(rlog, "wb") as f:
            rtpe = await asyncio.create_subprocess_exec(
                "rtpengine", "--config-file=none", "--foreground", "--log-stderr", "--table=-1",
                f"--interface=external/{EDGE}", f"--interface=internal/{INTERNAL}",
                f"--listen-ng=127.0.0.1:{ng}", f"--port-min={low}", f"--port-max={high}",
                "--endpoint-learning=off", f"--pidfile={tmp_path / 'rtpengine.pid'}",
                stdout=asyncio.subprocess.DEVNULL, stderr=f, start_new_session=True)
        procs.append(rtpe)
        render += ["--rtpengine", f"udp:127.0.0.1:{ng}"]
    rendered = _ics(config_file, *render)
    assert rendered.returncode == 0, rendered.stderr

    observe = relay_worker_lines(rig)
    log = tmp_path / "kamailio.log"
    e = Edge(rig, port, out, log, procs)
    try:
        if HAS_RTPENGINE:
            await _rtpengine_ready(ng, procs[0], tmp_path / "rtpengine.log")
        rig.node = await start_node(cfg, reactor, workers=1, amp_port=0, http_port=0,
                                    frontdoor_port=cfg.switch.frontdoor_port)
        with open(log, "wb") as f:
            procs.append(await asyncio.create_subprocess_exec(
                "kamailio", "-DD", "-E", "-Y", str(tmp_path), "-f", str(out / "kamailio.cfg"),
                stdout=asyncio.subprocess.DEVNULL, stderr=f, start_new_session=True))
        await _wait_answering(port, log)
        await worker_ready(rig, reactor)
        yield e
    finally:
        await stop_sipps(rig)
        for p in reversed(procs):
            await _stop(p)
        if rig.node is not None:
            await asyncio.wait_for(rig.node.stop(), WAIT)
        globalLogPublisher.removeObserver(observe)
