"""A live node and a real Prometheus watching it, shared by the observability tests.

`live_node`: `ics serve` with one real pjsua2 media worker in its own process (tests/live_node.py),
on a database of its own with the demo facility, JSON logs captured to a file, every port free.
`prometheus`: Debian's `prometheus` scraping that node's /metrics every second with the rules of
config/prometheus/ loaded, on a free port and a temporary storage directory.
Runs that start them hold /tmp/ics-sip.lock on shared machines (a worker binds SIP and RTP).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from tests.live_node import START_SECONDS_MAX, LiveNode, serve  # noqa: F401  (LiveNode: the type)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "ics-alerts.yml"
DASHBOARD = ROOT / "config" / "grafana" / "ics-node.json"
WAIT_SECONDS_MAX = 30.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_range(n: int) -> int:
    """The first of `n` consecutive UDP ports free right now."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 2)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no run of {n} free UDP ports")


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def eventually(predicate, what: str, timeout: float = WAIT_SECONDS_MAX, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy (returned), or fail saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="module")
async def observe_dsn(databases):
    dsn = await databases.take()
    yield dsn
    await databases.give_back(dsn)


@pytest.fixture(scope="module")
async def live_node(observe_dsn, tmp_path_factory):
    root = tmp_path_factory.mktemp("observe-node")
    rtp = free_udp_range(100)
    door = free_port(socket.SOCK_DGRAM)
    worker = free_port(socket.SOCK_DGRAM)
    while worker == door:
        worker = free_port(socket.SOCK_DGRAM)
    config = root / "ics.toml"
    # A killed worker stays dead for the test's lifetime (restart backoff of 10 minutes), so
    # "no worker ready" is the node's true state while the test looks.
    config.write_text(f"""
[node]
data_dir = "{root / 'var'}"
log_format = "json"
log_level = "info"
[database]
url = "{observe_dsn}"
[core]
http_port = 0
sweep_interval_seconds = 0.5
[switch]
workers = 1
core_amp_port = 0
sip_host = "127.0.0.1"
frontdoor_port = {door}
worker_sip_port_base = {worker}
rtp_port_base = {rtp}
rtp_ports_per_worker = 100
heartbeat_seconds = 0.5
restart_backoff_seconds_min = 600
restart_backoff_seconds_max = 600
[worker]
trunk_setup_seconds = 3.0
""")
    from ops.config import load
    from ops.demo import load_demo_data
    conn = await asyncpg.connect(observe_dsn)
    try:
        await load_demo_data(conn, load(config, environ={}), out=lambda m: None)
    finally:
        await conn.close()
    with serve(config, root, workers=None) as node:
        node.worker_sip_port = worker
        eventually(lambda: node.sample("ics_workers", 'state="ready"') == 1.0,
                   "the worker says Hello", START_SECONDS_MAX)
        eventually(lambda: (node.sample("ics_hold_sweeps_total", 'outcome="ok"') or 0) > 0,
                   "a sweep completes")
        yield node


@dataclass
class Prometheus:
    port: int
    proc: subprocess.Popen

    def query(self, expr: str) -> dict:
        """The HTTP API's answer to an instant query (status, data or error)."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        try:
            return json.loads(http_get(url))
        except urllib.error.HTTPError as e:       # 400/422: a bad expression, with its error
            return json.loads(e.read().decode())

    def alerts(self) -> list[dict]:
        return json.loads(http_get(f"http://127.0.0.1:{self.port}/api/v1/alerts"))["data"][
            "alerts"]


@pytest.fixture(scope="module")
async def prometheus(live_node, tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus package is required (tests/run installs it)")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: ics
    static_configs:
      - targets: ["127.0.0.1:{live_node.http_port}"]
""")
    port = free_port()
    with open(root / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    prom = Prometheus(port, proc)
    try:
        def scraped():
            assert proc.poll() is None, (root / "prometheus.log").read_text()
            result = prom.query('up{job="ics"}')["data"]["result"]
            # Two scrapes at least, so rate() and increase() have something to work on.
            twice = prom.query('count_over_time(up{job="ics"}[1m])')["data"]["result"]
            return (result and result[0]["value"][1] == "1" and twice
                    and float(twice[0]["value"][1]) >= 3)
        eventually(scraped, "Prometheus scrapes the node", START_SECONDS_MAX)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the core in this process, over a real AMP connection -----------------------------------

# Wednesday 2027-01-06 10:00 in Los Angeles: inside the demo facility's calling windows, and
# after the demo deck (active from the moment it is loaded) took effect.
WEDNESDAY_10AM = datetime(2027, 1, 6, 18, 0, tzinfo=timezone.utc)
WORKER_ID = "w1"


async def deferred(d, timeout: float = 30):
    import asyncio
    return await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), timeout)


@dataclass
class CoreOverAmp:
    """A real Core on the test's database, reached as a media worker reaches it."""
    pool: object
    core: object
    metrics: object
    client: object
    port: object

    async def call(self, command, **kw):
        return await deferred(self.client.callRemote(command, **kw))

    async def keyed_authorize(self, number: str, kiosk: str = "kiosk-a1",
                              inmate: str = "10001") -> dict:
        from switch.wire import protocol as wire
        pin = await self.call(wire.CheckPin, kiosk=kiosk, pin=inmate + DEMO_PINS[inmate],
                              source_ip="127.0.0.1")
        assert pin["ok"], pin
        return await self.call(wire.Authorize, kiosk=kiosk, inmate_id=inmate, number=number,
                               source_ip="127.0.0.1", pin_session=pin["pin_session"])

    async def close(self) -> None:
        self.client.transport.loseConnection()
        await deferred(self.port.stopListening())
        await self.pool.close()


def _demo_pins() -> dict:
    import tomllib
    from ops.seed import DEMO_DIR
    return {i["id"]: i["pin"] for i in
            tomllib.loads((DEMO_DIR / "directory.toml").read_text()).get("inmate", [])}


DEMO_PINS = _demo_pins()


async def core_over_amp(reactor, dsn: str, cfg) -> CoreOverAmp:
    """The demo facility loaded, a Core with CoreMetrics on a fixed clock, a worker's link."""
    from twisted.internet.endpoints import (TCP4ClientEndpoint, TCP4ServerEndpoint,
                                            connectProtocol)
    from twisted.protocols import amp

    from ops.metrics import CoreMetrics
    from switch.wire import amp_auth
    from switch.control.core import Core
    from ops.demo import load_demo_data
    from switch.control.service import WorkerLinkFactory, WorkerRegistry
    from switch.control.tariffs import Pricing

    conn = await asyncpg.connect(dsn)
    try:
        await load_demo_data(conn, cfg, out=lambda m: None)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    metrics = CoreMetrics(currency=cfg.ledger.currency)
    core = Core(pool, Pricing(), cfg.core, clock=lambda: WEDNESDAY_10AM,
                observer=metrics.observe)
    registry = WorkerRegistry()
    port = await deferred(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        WorkerLinkFactory(core, registry, metrics)))
    client = await deferred(connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), amp.AMP()))
    await deferred(amp_auth.say_hello(client.callRemote, registry.key_for(WORKER_ID),
                                      worker_id=WORKER_ID, capacity=2, sip_port=5999,
                                      pid=os.getpid()))
    return CoreOverAmp(pool, core, metrics, client, port)


# -- one call placed on the live node over raw SIP ------------------------------------------

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def sip_header(msg: str, name: str) -> str | None:
    head = msg.split("\r\n\r\n", 1)[0]
    import re
    m = re.search(rf"^{re.escape(name)}[ \t]*:[ \t]*(.*)$", head, re.I | re.M)
    return m.group(1).strip() if m else None


class SipPeer:
    """A UDP socket speaking just enough SIP for one call: a kiosk that ACKs what answers its
    INVITE and says 200 to BYE, or a called party that answers every INVITE `busy_code`."""

    def __init__(self, busy_code: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.busy_code = busy_code
        self.received: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def _reply(self, request: str, code: int, addr, reason: str) -> None:
        lines = [f"SIP/2.0 {code} {reason}"]
        for name in ("Via", "From", "Call-ID", "CSeq"):
            lines.append(f"{name}: {sip_header(request, name)}")
        to = sip_header(request, "To") or ""
        lines.append(f"To: {to}" + ("" if ";tag=" in to else f";tag={uuid.uuid4().hex[:8]}"))
        lines.append("Content-Length: 0")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)

    def poll(self) -> None:
        """Read what arrived, answering as this peer does."""
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except (socket.timeout, BlockingIOError):
                return
            text = data.decode("utf-8", "replace")
            self.received.append(text)
            if text.startswith("BYE "):
                self._reply(text, 200, addr, "OK")
            elif text.startswith("INVITE ") and self.busy_code:
                self._reply(text, self.busy_code, addr, "Busy Here")
            elif text.startswith("SIP/2.0 ") and " INVITE" in (sip_header(text, "CSeq") or ""):
                code = int(text.split()[1])
                if code >= 200:
                    self._ack(text, addr, code)

    def _ack(self, answer: str, addr, code: int) -> None:
        to = sip_header(answer, "To")
        target = self.invite_uri
        if code < 300:
            import re
            m = re.search(r"<([^>]+)>", sip_header(answer, "Contact") or "")
            target = m.group(1) if m else target
        branch = self.branch if code >= 300 else "z9hG4bK" + uuid.uuid4().hex[:16]
        lines = [f"ACK {target} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch={branch}",
                 "Max-Forwards: 70", f"From: {self.from_}", f"To: {to}",
                 f"Call-ID: {self.call_id}", "CSeq: 1 ACK", "Content-Length: 0"]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)

    def invite(self, target: tuple[str, int], number: str, kiosk: str, pin: str) -> str:
        """A trusted kiosk's INVITE: the number in the request URI, the PIN in X-ICS-PIN."""
        self.call_id = uuid.uuid4().hex
        self.branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        self.invite_uri = f"sip:{number}@{target[0]}:{target[1]}"
        self.from_ = f"<sip:{kiosk}@127.0.0.1:{self.port}>;tag={uuid.uuid4().hex[:10]}"
        body = SDP.format(port=free_udp_range(2))
        lines = [f"INVITE {self.invite_uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch={self.branch}",
                 "Max-Forwards: 70", f"From: {self.from_}", f"To: <{self.invite_uri}>",
                 f"Call-ID: {self.call_id}", "CSeq: 1 INVITE",
                 f"Contact: <sip:{kiosk}@127.0.0.1:{self.port}>", f"X-ICS-PIN: {pin}",
                 "Content-Type: application/sdp", f"Content-Length: {len(body)}"]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), target)
        return self.call_id
