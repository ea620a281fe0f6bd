"""The whole node under SIPp: the real core, supervisor, front door and a media worker process,
started in-process on the test reactor (`ops.node.start_node`) against this test's database,
with SIPp (Debian's sip-tester) as the kiosk and as the called party on the trunk.

Layout decided here:
- Every test gets a fresh database with `directory.toml` loaded (its trunk pointing at the test's
  SIPp called party) and `deck.csv` as the facility's tariff: 0.06 per minute billed in 2-second
  increments, with 5.5 % tax, and billing periods of 2 seconds, so "billed per minute" shows in
  seconds. `expected_charge` is that deck's arithmetic, written out.
- One worker (capacity 2 calls with the PyPI pjsua2) on free ports; the front door on a free port.
  SIPp kiosks dial the front door and follow its 302 (scenarios/kiosk.xml).
- The called party presses keys with RFC 2833: a copy of SIPp's shipped pcap whose payload type
  is rewritten to the one pjsua offers on the outbound leg (`DTMF_PAYLOAD_TYPE`; the scenario
  checks the offer says so).
- What each leg heard comes from the worker's log: one line per prompt play
  (`switch.worker.call`), relayed by the supervisor.
"""
from __future__ import annotations

import asyncio
import math
import re
import shutil
import signal
import struct
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

import ledger
from ops.config import load
from ops.node import start_node
from ops.seed import load_directory
from tests.switch.conftest import reactor  # noqa: F401  (the running reactor fixture)
from tests.switch.fakecore import free_port, free_port_outside, free_rtp_range

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"
SHIPPED_PCAPS = Path("/usr/share/sip-tester")
DTMF_PAYLOAD_TYPE = 120          # what pjsua offers for telephone-event on an outbound leg
PERIOD = 2                       # billing period, seconds
PRICE_MICROS_PER_SECOND = 1_000  # deck.csv: 0.06 per 60 s
INCREMENT = 2                    # deck.csv: billed in 2-second steps
TAX_PERCENT_TENTHS = 55          # deck.csv: 5.5 % on local calls
MOM = "+19515550101"             # funded with 20.00
BROTHER = "+19515550102"         # funded with 0.0085
NOT_ON_LIST = "+19515550199"
ATTORNEY = "+19515550103"        # privileged contact of 10001
PIN = "100011234"
SPANISH_PIN = "100025678"        # inmate 10002, language es
WAIT = 45.0                      # a generous bound for any step on a loaded 2-core machine

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None or not SHIPPED_PCAPS.is_dir(),
                                reason="SIPp missing: apt-get install sip-tester (tests/run does)")


def expected_charge(talk_seconds: int) -> tuple[int, int, int]:
    """(billed seconds, call micros, tax micros) of a local call under deck.csv."""
    billed = math.ceil(talk_seconds / INCREMENT) * INCREMENT
    call = billed * PRICE_MICROS_PER_SECOND
    tax = (call * TAX_PERCENT_TENTHS + 500) // 1000          # round half up
    return billed, call, tax


def dtmf_pcap(key: str, dest: Path, payload_type: int = DTMF_PAYLOAD_TYPE) -> Path:
    """SIPp's RFC 2833 pcap of `key`, with the RTP payload type rewritten (marker bit kept)."""
    name = {"*": "star", "#": "pound"}.get(key, key)
    data = bytearray((SHIPPED_PCAPS / f"dtmf_2833_{name}.pcap").read_bytes())
    magic, linktype = struct.unpack_from("<I", data, 0)[0], struct.unpack_from("<I", data, 20)[0]
    assert magic == 0xA1B2C3D4 and linktype == 1, "expected a little-endian Ethernet pcap"
    offset = 24
    while offset < len(data):
        captured = struct.unpack_from("<I", data, offset + 8)[0]
        packet = offset + 16
        ip = packet + 14
        udp = ip + (data[ip] & 0x0F) * 4
        data[udp + 6:udp + 8] = b"\0\0"                       # no UDP checksum
        rtp = udp + 8
        data[rtp + 1] = (data[rtp + 1] & 0x80) | payload_type
        offset = packet + captured
    dest.write_bytes(bytes(data))
    return dest


@dataclass
class Sipp:
    """One SIPp process and where its logs are."""
    name: str
    proc: asyncio.subprocess.Process
    logs: list[Path]

    async def finished(self, timeout: float = WAIT) -> int:
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"SIPp {self.name} still running after {timeout}s\n"
                                 + self.output()) from None
        return self.proc.returncode

    def messages(self) -> str:
        """Every SIP message SIPp sent and received."""
        return self.logs[1].read_text(errors="replace") if self.logs[1].exists() else ""

    def output(self) -> str:
        text = ""
        for f in self.logs:
            if f.exists():
                text += f"\n--- {f.name}\n" + f.read_text(errors="replace")[-6000:]
        return text

    def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)


@dataclass
class Rig:
    node: object
    cfg: object
    dsn: str
    tmp: Path
    trunk_port: int
    worker_lines: list[str] = field(default_factory=list)
    sipps: list[Sipp] = field(default_factory=list)

    @property
    def door_port(self) -> int:
        return self.cfg.switch.frontdoor_port

    @property
    def worker_port(self) -> int:
        return self.cfg.switch.worker_sip_port_base

    async def sipp(self, name: str, scenario: str, target: str | None, *args: str,
                   port: int | None = None, calls: int = 1, timeout: float = WAIT) -> Sipp:
        work = self.tmp / name
        work.mkdir(exist_ok=True)
        logs = [work / "errors.log", work / "messages.log"]
        media = free_rtp_range(8)[0]
        argv = ["sipp", "-sf", str(SCENARIOS / scenario), "-nostdin", "-i", "127.0.0.1",
                "-p", str(port or free_port()), "-mp", str(media), "-m", str(calls),
                "-timeout", f"{int(timeout)}s", "-timeout_error", "-trace_err", "-error_file",
                str(logs[0]), "-trace_msg", "-message_file", str(logs[1]), *args]
        if target:
            argv.append(target)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=work)
        s = Sipp(name, proc, logs)
        self.sipps.append(s)
        return s

    async def kiosk(self, number: str, *, pin: str = PIN, name: str = "kiosk", calls: int = 1,
                    rate: float | None = None, kiosk_id: str = "kiosk-a1") -> Sipp:
        """SIPp kiosk(s) dialling `number` through the front door (following its 302), with the
        PIN in the INVITE as a trusted kiosk sends it."""
        args = ["-s", number, "-key", "pin", pin, "-key", "kiosk", kiosk_id, "-l", str(calls)]
        if rate:
            args += ["-r", str(rate)]
        return await self.sipp(name, "kiosk.xml", f"127.0.0.1:{self.door_port}", *args,
                               calls=calls)

    async def called_party(self, key: str, *, hangs_up_after: float | None = None,
                           name: str = "called", calls: int = 1) -> Sipp:
        """SIPp on the trunk: answers, presses `key`, then hangs up after `hangs_up_after`
        seconds (or waits for the worker's BYE when None)."""
        work = self.tmp / name
        work.mkdir(exist_ok=True)
        dtmf_pcap(key, work / "key.pcap")
        if hangs_up_after is None:
            return await self.sipp(name, "called_party_waits.xml", None, port=self.trunk_port,
                                   calls=calls)
        return await self.sipp(name, "called_party_hangs_up.xml", None, "-d",
                               str(int(hangs_up_after * 1000)), port=self.trunk_port, calls=calls)

    def heard(self, role: str) -> list[tuple[str, ...]]:
        """The prompt ids of each play `role` (kiosk, called, both) heard, in order."""
        out = []
        for line in self.worker_lines:
            m = re.search(r"call \S+: (kiosk|called|both) hears? \[([^\]]*)\]", line)
            if m and m.group(1) == role:
                out.append(tuple(m.group(2).split(",")))
        return out

    def log(self) -> str:
        return "\n".join(self.worker_lines[-80:])

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)

    async def cdrs(self) -> list:
        conn = await self.connect()
        try:
            return await conn.fetch("SELECT * FROM cdr ORDER BY ended_at")
        finally:
            await conn.close()

    async def wait_cdrs(self, n: int, timeout: float = WAIT) -> list:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rows = await self.cdrs()
            if len(rows) >= n:
                return rows
            if loop.time() > deadline:
                raise AssertionError(f"{len(rows)} CDR(s) after {timeout}s, expected {n}\n"
                                     + self.log())
            await asyncio.sleep(0.1)

    async def balance(self, number: str) -> ledger.Balance:
        conn = await self.connect()
        try:
            return await ledger.balance(conn, f"prepaid:{number}")
        finally:
            await conn.close()

    async def verify(self):
        conn = await self.connect()
        try:
            return await ledger.verify(conn)
        finally:
            await conn.close()

    async def call_rows(self) -> list:
        conn = await self.connect()
        try:
            return await conn.fetch("SELECT * FROM call ORDER BY authorized_at")
        finally:
            await conn.close()


def node_config(tmp: Path, dsn: str, *, host: str = "127.0.0.1", ports=None,
                worker_extra: str = "", switch_extra: str = "") -> Path:
    """The node's config for these tests: one worker on `host`, short billing periods and
    timers; `ports` = (front door, worker SIP, first RTP port), free ones on loopback by default;
    `worker_extra` and `switch_extra` add keys to those sections (the edge tests' addresses)."""
    if ports is None:
        rtp = free_rtp_range(100)
        door, worker = free_port_outside(rtp), free_port_outside(rtp)
        while worker == door:
            worker = free_port_outside(rtp)
        ports = (door, worker, rtp[0])
    door, worker, rtp_base = ports
    path = tmp / "node.toml"
    path.write_text(f"""
[node]
data_dir = "{tmp / 'var'}"
[database]
url = "{dsn}"
pool_min = 1
pool_max = 6
[switch]
workers = 1
sip_host = "{host}"
frontdoor_port = {door}
worker_sip_port_base = {worker}
rtp_port_base = {rtp_base}
rtp_ports_per_worker = 100
heartbeat_seconds = 0.5
slot_reservation_seconds = 2.0
worker_silence_seconds = 10.0
restart_backoff_seconds_min = 0.2
{switch_extra}
[core]
period_seconds = {PERIOD}
warning_seconds = 3
hold_slack_seconds = 10
min_call_seconds = 4
call_silence_seconds = 3
sweep_interval_seconds = 0.5
[worker]
continue_lead_seconds = 0.7
warning_seconds = 3
trunk_setup_seconds = 5.0
trunk_answer_seconds = 15.0
core_answer_seconds = 3.0
{worker_extra}
[ivr]
choice_timeout_seconds = 10.0
""")
    return path


async def load_world(conn, tmp: Path, trunk_port: int) -> None:
    """directory.toml (its trunk pointing at `trunk_port`) and deck.csv for riverside."""
    directory = tmp / "directory.toml"
    directory.write_text((HERE / "directory.toml").read_text()
                         .replace("TRUNK_PORT", str(trunk_port)))
    await load_directory(conn, directory)
    from rating import store
    await store.import_deck(conn, (HERE / "deck.csv").read_text(), facility_id="riverside",
                            source="e2e deck.csv")


def relay_worker_lines(rig: Rig):
    """Start copying the worker's log lines into `rig.worker_lines`; returns the observer (to
    remove from twisted.logger's globalLogPublisher afterwards)."""
    from twisted.logger import globalLogPublisher

    def observe(event):
        if event.get("event") == "worker_output" and isinstance(event.get("line"), str):
            rig.worker_lines.append(event["line"])
    globalLogPublisher.addObserver(observe)
    return observe


async def worker_ready(rig: Rig, reactor) -> None:
    """Wait until the node's worker said Hello (both its call slots free)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while rig.node.supervisor.table.slots(reactor.seconds())["free"] < 2:
        assert loop.time() < deadline, "the worker never said Hello\n" + rig.log()
        await asyncio.sleep(0.05)


async def stop_sipps(rig: Rig) -> None:
    for s in rig.sipps:
        s.stop()
    for s in rig.sipps:
        await s.proc.wait()


@pytest.fixture
async def rig(reactor, pg_dsn, tmp_path):
    """The node on this test's database, its worker ready, the trunk pointing at `trunk_port`."""
    from twisted.logger import globalLogPublisher
    trunk_port = free_port()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await load_world(conn, tmp_path, trunk_port)
    finally:
        await conn.close()
    config_file = node_config(tmp_path, pg_dsn, switch_extra="retry_after_seconds = 3")
    cfg = load(config_file, environ={})
    rig = Rig(None, cfg, pg_dsn, tmp_path, trunk_port)
    observe = relay_worker_lines(rig)
    rig.node = await start_node(cfg, reactor, workers=1, amp_port=0, http_port=0,
                                frontdoor_port=cfg.switch.frontdoor_port)
    try:
        await worker_ready(rig, reactor)
        yield rig
    finally:
        await stop_sipps(rig)
        await asyncio.wait_for(rig.node.stop(), WAIT)
        globalLogPublisher.removeObserver(observe)
