"""Benchmark of the switch's capacity and cost under SIPp calls, next to references (not a test).

In one run, on this machine, with the load generators on it too (everything on 127.0.0.1):
SIPp kiosks (trusted: the PIN in X-ICS-PIN, the number in the Request-URI) call through the front
door, follow its 302 to a media worker and stream G.711 A-law RTP; a SIPp called party on the
trunk answers, presses 1 (RFC 2833), streams A-law RTP back and hangs up after `--talk` seconds.
Every call is recorded and billed in `--period`-second periods on an embedded PostgreSQL (fsync on).

(b) cost: CPU-seconds per call-minute of the switch's process tree (`ics serve`: the core and its
    workers; PostgreSQL shown beside it) at `--cost-calls` concurrent calls, against bare pjsua2
    processes that answer and loop the same RTP (bench/switch/bare_echo.py, no IVR, no core), as
    many calls per process as the pjsua build holds. Call-minutes are the accepted calls the core
    counts, sampled every second (the reference: SIPp's current calls).
(a) capacity: concurrent accepted calls raised in `--steps`, each on a node sized for it (step/2
    workers and a few spare) and held for one call turnover; a step passes with < 0.5% failed
    calls (kiosk SIPp failures plus CDRs that did not complete). Reports the highest passing step,
    and for the next one what stopped it (host CPU, memory; ports are planned per worker).
(c) setup latency, kiosk INVITE at the front door to the trunk INVITE at the called party, taken
    from the wire (a packet socket on lo), at `--rate` calls/s, against Kamailio proxying the
    same INVITE to the same SIPp called party (bench/switch/kamailio.cfg). Printed with it, from
    the node's /metrics: why calls ended before dialling (the workers' SetupFailed reports), how
    PINs were checked (scrypt, remembered, shed as busy), the core's mean time per request, and
    what the kiosk source checks cost a call against the set-up p50.

The calls come round `--kiosks` trusted kiosks of the demo facility (all from SIPp's loopback
address), each inmate's PIN hashed with its own salt as `ics inmate` stores it.

    .venv/bin/python bench/switch.py [--phases bac] [--steps 60,80,100,120] [--talk 30]
        [--worker-setting 'poll_active_ms = 50']   (a [worker] line for every node of the run)
        [--log-level debug] [--keep]               (why calls failed: the node's log, kept)

Needs root (SIPp's pcap play and the packet socket), sipp (Debian sip-tester) and kamailio.
Stops by itself and ends every process it started.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().with_name("switch")
sys.path.insert(0, str(ROOT))          # the repo's `switch` package, not this file

import psutil  # noqa: E402

SIPP_PCAPS = Path("/usr/share/sip-tester")
PIN_SECRET = "1234"
INMATE_BASE = 300000
NUMBER_BASE = 19519550000              # +1 951 955 xxxx: the demo facility's local exchange
FAILED_SHARE_MAX = 0.005               # (a): a step holds with fewer failed calls than this
DTMF_AFTER_ANSWER = 1.4                # called.xml: 1 s, the key, 0.4 s, then the talk pause


# -- processes ---------------------------------------------------------------------------------

class Rig:
    """The run's scratch directory and every process it started (each in its own session, so a
    process and its children end together)."""

    def __init__(self, keep: bool):
        self.tmp = Path(tempfile.mkdtemp(prefix="ics-bench-switch-"))
        self.keep = keep
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        p.bench_name = name
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 15.0, sig=signal.SIGTERM) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        else:                                   # its leader is gone; leftovers of its group too
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.procs:
            self.procs.remove(p)

    def close(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p, timeout=10)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass(frozen=True)
class Ports:
    """Every port of the run, from one base (`--port-base`)."""
    base: int

    @property
    def amp(self): return self.base + 50
    @property
    def http(self): return self.base + 51
    @property
    def frontdoor(self): return self.base + 60
    @property
    def kamailio(self): return self.base + 70
    @property
    def kiosk(self): return self.base + 80       # SIP; media at +82 (+84 taken by SIPp too)
    @property
    def kiosk_media(self): return self.base + 82
    @property
    def kiosk_ctrl(self): return self.base + 86
    @property
    def called(self): return self.base + 90
    @property
    def called_media(self): return self.base + 92
    @property
    def called_ctrl(self): return self.base + 96
    @property
    def worker_sip(self): return self.base + 100   # up to 300 workers
    @property
    def ref_sip(self): return self.base + 400      # up to 100 reference processes
    @property
    def rtp(self): return self.base + 1000         # 20 per worker
    @property
    def ref_rtp(self): return self.base + 7000     # 20 per reference process

    RTP_PER_PROCESS = 20


# -- CPU, memory ---------------------------------------------------------------------------

def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants, the ended ones included (their
    time is in their reaping parent's children_* fields)."""
    seen, total = set(), 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
    return total


def tree_memory(pid: int) -> tuple[int, float, float]:
    """(processes, total PSS MB, largest USS MB among them) of a process tree."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0.0, 0.0
    pss, uss = 0.0, []
    for p in procs:
        try:
            m = p.memory_full_info()
            pss += m.pss
            uss.append(m.uss)
        except psutil.NoSuchProcess:
            pass
    return len(procs), pss / 2**20, (statistics.median(uss) / 2**20 if uss else 0.0)


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


# -- the wire: INVITEs seen on lo ------------------------------------------------------------

class InviteSniffer(threading.Thread):
    """Records every INVITE sent to `ports` on lo with its kernel timestamp: (time, port, request
    user, Call-ID). A classic BPF filter keeps RTP out of Python."""

    SO_ATTACH_FILTER, SO_TIMESTAMPNS, PACKET_OUTGOING = 26, 35, 4

    def __init__(self, ports: list[int]):
        super().__init__(daemon=True)
        self.invites: list[tuple[float, int, str, str]] = []
        self._halt = threading.Event()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self._attach(ports)
        self.sock.setsockopt(socket.SOL_SOCKET, self.SO_TIMESTAMPNS, 1)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)

    def _attach(self, ports: list[int]) -> None:
        # ip, udp, not a fragment, dst port in ports (what `tcpdump -dd` would give)
        drop, accept = "drop", "accept"
        prog = [(0x28, 0, 0, 12), (0x15, 0, drop, 0x0800), (0x30, 0, 0, 23),
                (0x15, 0, drop, 17), (0x28, 0, 0, 20), (0x45, drop, 0, 0x1FFF),
                (0xB1, 0, 0, 14), (0x48, 0, 0, 16)]
        prog += [(0x15, accept, 0, p) for p in ports]
        prog += [(0x06, 0, 0, 0), (0x06, 0, 0, 0x40000)]     # drop, accept
        n = len(prog)
        where = {drop: n - 2, accept: n - 1}
        packed = b""
        for i, (code, jt, jf, k) in enumerate(prog):
            jt = where[jt] - i - 1 if isinstance(jt, str) else jt
            jf = where[jf] - i - 1 if isinstance(jf, str) else jf
            packed += struct.pack("HBBI", code, jt, jf, k)
        self._buf = ctypes.create_string_buffer(packed)
        fprog = struct.pack("HL", n, ctypes.addressof(self._buf))
        self.sock.setsockopt(socket.SOL_SOCKET, self.SO_ATTACH_FILTER, fprog)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                data, anc, _, addr = self.sock.recvmsg(65535, 64)
            except (socket.timeout, OSError):
                continue
            if addr[2] == self.PACKET_OUTGOING:       # lo shows each packet twice
                continue
            ts = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == self.SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec + nsec / 1e9
            ihl = (data[14] & 0x0F) * 4
            dport = struct.unpack("!H", data[14 + ihl + 2:14 + ihl + 4])[0]
            payload = data[14 + ihl + 8:]
            if not payload.startswith(b"INVITE "):
                continue
            head = payload.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            m = re.match(r"INVITE sips?:([^@;> ]*)", head)
            cid = re.search(r"(?im)^(?:call-id|i)\s*:\s*(\S+)", head)
            self.invites.append((ts, dport, m.group(1) if m else "", cid.group(1) if cid else ""))

    def close(self) -> None:
        self._halt.set()
        self.join(2)
        self.sock.close()


def setup_latencies(invites, entry_port: int, trunk_port: int, since: float) -> tuple[list, int]:
    """Seconds from each call's first INVITE at `entry_port` to its first INVITE at `trunk_port`
    (matched by the dialled number: the latest entry INVITE for it before the trunk INVITE), and
    how many entry INVITEs never reached the trunk."""
    first: dict[tuple[int, str], tuple[float, str]] = {}
    for ts, port, user, cid in invites:
        if ts >= since and port in (entry_port, trunk_port) and (port, cid) not in first:
            first[(port, cid)] = (ts, user)
    entries: dict[str, list[float]] = {}
    for (port, _), (ts, user) in first.items():
        if port == entry_port:
            entries.setdefault(user, []).append(ts)
    for v in entries.values():
        v.sort()
    out, used = [], set()
    for (port, _), (ts, user) in sorted(first.items(), key=lambda kv: kv[1][0]):
        if port != trunk_port:
            continue
        cands = [t for t in entries.get(user, ()) if t <= ts and (user, t) not in used]
        if cands:
            used.add((user, cands[-1]))
            out.append(ts - cands[-1])
    n_entries = sum(len(v) for v in entries.values())
    return out, n_entries - len(out)


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# -- media files ---------------------------------------------------------------------------

def _pcap_records(path: Path):
    b = path.read_bytes()
    head, off, recs = b[:24], 24, []
    while off < len(b):
        ts, tu, incl, orig = struct.unpack("<IIII", b[off:off + 16])
        recs.append((b[off:off + 16], b[off + 16:off + 16 + incl]))
        off += 16 + incl
    return head, recs


def write_media(tmp: Path, te_payload_type: int) -> None:
    """audio.alaw: the A-law payloads of SIPp's g711a.pcap, for rtp_stream; dtmf1.pcap: SIPp's
    RFC 2833 key 1 with the payload type the worker offers on its outbound leg."""
    _, recs = _pcap_records(SIPP_PCAPS / "g711a.pcap")
    audio = b""
    for _, d in recs:
        ihl = (d[14] & 0x0F) * 4
        rtp = d[14 + ihl + 8:]
        if rtp[1] & 0x7F == 8:
            audio += rtp[12:]
    (tmp / "audio.alaw").write_bytes(audio)
    head, recs = _pcap_records(SIPP_PCAPS / "dtmf_2833_1.pcap")
    out = bytearray(head)
    for rh, d in recs:
        d = bytearray(d)
        at = 14 + (d[14] & 0x0F) * 4 + 8 + 1
        d[at] = (d[at] & 0x80) | te_payload_type
        out += rh + d
    (tmp / "dtmf1.pcap").write_bytes(bytes(out))
    for name in ("kiosk.xml", "kiosk_direct.xml", "called.xml"):
        shutil.copy(HERE / name, tmp / name)


def write_called(tmp: Path, name: str, talk: float, spread: float) -> str:
    """called.xml with its talk pause drawn uniformly from talk * (1 -/+ spread): calls that all
    began in one ramp would otherwise all end, and be replaced, in the same second."""
    lo, hi = int(1000 * talk * (1 - spread)), int(1000 * talk * (1 + spread))
    text = (HERE / "called.xml").read_text().replace(
        "<pause/>", f'<pause distribution="uniform" min="{lo}" max="{max(hi, lo + 1)}"/>')
    (tmp / name).write_text(text)
    return name


def kiosk_id(i: int) -> str:
    return f"kiosk-b{i}"


def write_injection(path: Path, pairs: int, port_of=None, lines: int | None = None,
                    kiosks: int = 1) -> None:
    """[field0] the keyed PIN, [field1] the dialled number, [field2] where to send the INVITE,
    [field3] the calling kiosk (calls go round the facility's kiosks)."""
    rows = ["SEQUENTIAL"]
    for i in range(lines or pairs):
        k = i % pairs
        rows.append(f"{INMATE_BASE + k}{PIN_SECRET};+{NUMBER_BASE + k};"
                    f"{port_of(i) if port_of else 0};{kiosk_id(i % kiosks)}")
    path.write_text("\n".join(rows) + "\n")


# -- SIPp ----------------------------------------------------------------------------------

class Sipp:
    """One SIPp process and its statistics file."""

    def __init__(self, rig: Rig, name: str, scenario: str, *, sip_port: int, media_port: int,
                 ctrl_port: int, remote: str | None = None, args: list[str] = ()):
        self.rig, self.name, self.ctrl_port = rig, name, ctrl_port
        self.stat = rig.tmp / f"{name}.stat.csv"
        for stale in (self.stat, rig.tmp / f"{name}.errors"):
            stale.unlink(missing_ok=True)
        argv = ["sipp", "-sf", str(rig.tmp / scenario), "-i", "127.0.0.1", "-p", str(sip_port),
                "-mi", "127.0.0.1", "-mp", str(media_port), "-cp", str(ctrl_port), "-nostdin",
                "-aa", "-trace_stat", "-stf", str(self.stat), "-fd", "1", "-trace_err",
                "-error_file", str(rig.tmp / f"{name}.errors"), "-trace_logs", "-log_file",
                str(rig.tmp / f"{name}.logs"), "-max_recv_loops", "10000", *args]
        if remote:
            argv.append(remote)
        self.proc = rig.spawn(name, argv, cwd=rig.tmp)

    def stats(self) -> dict[str, float]:
        try:
            lines = self.stat.read_text().splitlines()
        except FileNotFoundError:
            return {}
        if len(lines) < 2:
            return {}
        head = lines[0].split(";")
        row = lines[-1].split(";")
        out = {}
        for k, v in zip(head, row):
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def count(self, key: str) -> float:
        return self.stats().get(key, 0.0)

    def command(self, text: str) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(text.encode(), ("127.0.0.1", self.ctrl_port))

    def errors(self, n: int = 1200) -> str:
        p = self.rig.tmp / f"{self.name}.errors"
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def logged_payload_types(self) -> set[str]:
        p = self.rig.tmp / f"{self.name}.logs"
        return set(re.findall(r"te=(\d+)", p.read_text())) if p.exists() else set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("Q")                  # quit now
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, OSError):
                pass
        self.rig.stop(self.proc, timeout=5)


# -- database: the demo facility and the bench's callers --------------------------------------

async def provision(dsn: str, pairs: int, called_port: int, kiosks: int) -> None:
    import asyncpg

    import ledger
    from ops.migrate import migrate
    from switch.provisioning import directory
    from ops.demo import load_demo_data
    from switch.rules.pin import hash_secret

    from ops.config import LedgerSection

    class _Cfg:
        ledger = LedgerSection()

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await load_demo_data(conn, _Cfg, out=lambda *a: None)
        await directory.add_route(conn, "+", f"sip:{{e164}}@127.0.0.1:{called_port}")
        # A facility's kiosks, trusted with the PIN header, which counts only from each one's
        # registered network. Here they all call from SIPp's loopback address (a facility's
        # kiosks each have their own): per-source limits see one source, and are set for it.
        for n in range(kiosks):
            await directory.add_kiosk(conn, kiosk_id(n), "riverside", unit="A",
                                      sources="127.0.0.1", trusted=True)
        ids = [str(INMATE_BASE + k) for k in range(pairs)]
        # Each inmate's PIN hashed with its own salt, as `ics inmate` stores them: one shared
        # hash would let the core's remembered PINs (switch.control.pin_verify) skip every KDF.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            pins = list(pool.map(lambda _: hash_secret(PIN_SECRET), ids))
        numbers = [f"+{NUMBER_BASE + k}" for k in range(pairs)]
        await ledger.create_accounts(conn, [ledger.Account(f"inmate:{i}", "inmate_debit")
                                            for i in ids])
        # One name for every caller: the spoken-name cache makes it once.
        await conn.executemany(
            "INSERT INTO inmate (id, name, facility_id, unit, pin_hash, debit_account) "
            "VALUES ($1, 'John Doe', 'riverside', 'A', $2, $3)",
            [(i, pin, f"inmate:{i}") for i, pin in zip(ids, pins)])
        await conn.executemany(
            "INSERT INTO contact (inmate_id, e164, status) VALUES ($1, $2, 'approved')",
            list(zip(ids, numbers)))
        await ledger.create_accounts(conn, [ledger.Account(f"prepaid:{e}", "prepaid_phone")
                                            for e in numbers])
        await conn.executemany(
            "INSERT INTO phone_account (e164, owner, ledger_account) VALUES ($1, 'bench', $2)",
            [(e, f"prepaid:{e}") for e in numbers])
        import uuid
        await ledger.submit(conn, [
            ledger.Transfer(uuid.uuid4(), ledger.TransferKind.SINGLE, "funding_clearing",
                            f"prepaid:{e}", 500_000_000, code=ledger.TransferCode.DEPOSIT)
            for e in numbers])
    finally:
        await conn.close()


NODE_TOML = """\
[node]
data_dir = "{data_dir}"
log_level = "{log_level}"

[database]
url = "{dsn}"
pool_max = 10

[switch]
workers = {workers}
frontdoor_port = {frontdoor}
worker_sip_port_base = {worker_sip}
rtp_port_base = {rtp}
rtp_ports_per_worker = {rtp_per}
core_amp_port = {amp}
heartbeat_seconds = 1.0             # heartbeats free the front door's reservations quickly
slot_reservation_seconds = 2.0
worker_hello_seconds_max = 300.0    # dozens of workers import at once on two cores
frontdoor_rate_per_second = 1000.0  # one SIPp address stands for every kiosk
frontdoor_burst = 2000
frontdoor_reservations_per_source_max = 1000   # ... so its redirects in flight are every kiosk's

[core]
http_port = {http}
period_seconds = {period}
warning_seconds = {period}
min_call_seconds = {period}
call_silence_seconds = 60

[worker]
continue_lead_seconds = {lead}
{worker_extra}
"""


class Node:
    """`ics serve` with `workers` workers, as an operator runs it."""

    def __init__(self, rig: Rig, ports: Ports, dsn: str, workers: int, args):
        self.rig, self.ports, self.workers = rig, ports, workers
        cfg = rig.tmp / f"node-{workers}.toml"
        cfg.write_text(NODE_TOML.format(
            data_dir=rig.tmp / "node", dsn=dsn, workers=workers, frontdoor=ports.frontdoor,
            worker_sip=ports.worker_sip, rtp=ports.rtp, rtp_per=Ports.RTP_PER_PROCESS,
            amp=ports.amp, http=ports.http, period=args.period, log_level=args.log_level,
            lead=min(2.0, args.period / 2), worker_extra="\n".join(args.worker_setting)))
        busy = [p for p in [ports.frontdoor, *range(ports.worker_sip, ports.worker_sip + workers)]
                if not udp_free(p)]
        if busy:
            raise SystemExit(f"UDP ports in use: {busy[:10]}; choose another --port-base")
        self.proc = rig.spawn(f"node-{workers}", [str(ROOT / ".venv" / "bin" / "ics"),
                                                  "--config", str(cfg), "serve"], cwd=ROOT)

    def ready_workers(self) -> int:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.ports.http}/metrics",
                                          timeout=2).read().decode()
        except OSError:
            return 0
        m = re.search(r'^ics_workers\{state="ready"\} ([0-9.]+)', text, re.M)
        return int(float(m.group(1))) if m else 0

    async def wait_ready(self, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"ics serve exited: see {self.rig.tmp}/node-{self.workers}.log")
            if self.ready_workers() >= self.workers:
                return time.monotonic() - t0
            await asyncio.sleep(1)
        raise SystemExit(f"only {self.ready_workers()}/{self.workers} workers ready after "
                         f"{timeout:.0f}s")

    def stop(self) -> None:
        self.rig.stop(self.proc, timeout=30)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """The node's /metrics as {(name, labels text): value} (empty if it does not answer)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for m in re.finditer(r"^([a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+|NaN)$", text, re.M):
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def by_label(metrics: dict, name: str, label: str) -> dict[str, float]:
    out = {}
    for (n, labels), v in metrics.items():
        m = re.search(rf'{label}="([^"]*)"', labels)
        if n == name and m and v:
            out[m.group(1)] = v
    return out


def core_story(metrics: dict) -> list[str]:
    """What the core saw of a run: why calls ended before dialling, how PINs were checked, and
    its mean time per command (the share of set-up spent in the core)."""
    lines = [f"setup failures (workers' reports): "
             f"{by_label(metrics, 'ics_call_setup_failures_total', 'reason') or 'none'}",
             f"PIN checks: {by_label(metrics, 'ics_pin_verify_total', 'how')}; PIN outcomes: "
             f"{by_label(metrics, 'ics_pin_attempts_total', 'outcome')}"]
    sums = by_label(metrics, "ics_core_request_seconds_sum", "command")
    counts = by_label(metrics, "ics_core_request_seconds_count", "command")
    lines.append("core mean time per request: " + ", ".join(
        f"{c} {1e3 * sums.get(c, 0) / n:.1f} ms (x{n:.0f})" for c, n in sorted(counts.items())
        if c in ("admit_kiosk", "check_pin", "authorize", "accept", "end")))
    return lines


def source_check_seconds(networks: list[str], rounds: int = 20000) -> float:
    """CPU seconds the core's source checks cost one call: the address parsed and matched
    against the kiosk's networks by CheckPin (twice: its unlocked look and its ladder) and by
    Authorize, as switch.control.core does (the networks come in rows those commands read anyway)."""
    from switch.rules.kiosk_source import admits, parse_source_ip, parse_sources
    nets = parse_sources(networks)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for _ in range(3):
            admits(nets, parse_source_ip("127.0.0.1"))
    return (time.perf_counter() - t0) / rounds


class Calls:
    """What the core says about calls: accepted ones now, and how calls ended."""

    def __init__(self, conn):
        self.conn = conn
        self.since = time.time()         # calls of an earlier node are not counted

    async def accepted(self) -> int:
        return await self.conn.fetchval(
            "SELECT count(*) FROM call WHERE state IN ('talking', 'last') "
            "AND authorized_at >= to_timestamp($1)", self.since)

    async def ended_between(self, t0: float, t1: float, talk_min: int) -> dict[str, int]:
        rows = await self.conn.fetch(
            """SELECT CASE WHEN disposition = 'completed' AND talk_seconds >= $3 THEN 'completed'
                           WHEN disposition = 'completed' THEN 'completed_short'
                           ELSE disposition END AS d, count(*) AS n
               FROM cdr WHERE ended_at >= to_timestamp($1) AND ended_at < to_timestamp($2)
               GROUP BY 1""", t0, t1, talk_min)
        return {r["d"]: r["n"] for r in rows}


async def wait_for(predicate, timeout: float, every: float = 1.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await predicate():
            return True
        await asyncio.sleep(every)
    return False


@dataclass
class Window:
    """CPU and call-minutes over a measured stretch of steady load, whole and in rounds."""
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    host_busy: float = 0.0
    concurrency: list[int] = field(default_factory=list)
    rounds: list[tuple[dict[str, float], float]] = field(default_factory=list)  # cpu, call-min

    @property
    def call_minutes(self) -> float:
        return statistics.fmean(self.concurrency) * self.seconds / 60 if self.concurrency else 0

    def per_call_minute(self, *trees: str) -> float:
        """The median over rounds of CPU-seconds per call-minute of `trees` together."""
        return statistics.median(sum(cpu[t] for t in trees) / max(1e-9, minutes)
                                 for cpu, minutes in self.rounds)


async def measure(seconds: float, trees: dict[str, list[int]], concurrency,
                  rounds: int = 1) -> Window:
    """Sample `concurrency()` every second for `seconds`; CPU of each named process tree, over
    the whole window and over each of `rounds` equal parts of it."""
    w = Window()
    c0 = {k: tree_cpu(v) for k, v in trees.items()}
    h0, t0 = host_cpu(), time.monotonic()
    for r in range(rounds):
        rc0, rt0, samples = {k: tree_cpu(v) for k, v in trees.items()}, time.monotonic(), []
        while time.monotonic() - t0 < seconds * (r + 1) / rounds:
            await asyncio.sleep(1.0)
            samples.append(await concurrency())
        w.concurrency += samples
        span = time.monotonic() - rt0
        w.rounds.append(({k: tree_cpu(v) - rc0[k] for k, v in trees.items()},
                         statistics.fmean(samples) * span / 60 if samples else 0.0))
    w.seconds = time.monotonic() - t0
    h1 = host_cpu()
    w.cpu = {k: tree_cpu(v) - c0[k] for k, v in trees.items()}
    w.host_busy = (h1[0] - h0[0]) / max(1e-9, h1[1] - h0[1])
    return w


# -- the phases ----------------------------------------------------------------------------

async def cost_switch(rig, ports, dsn, pgdata, calls, args, out):
    import asyncpg
    workers = calls // 2 + args.spare_workers
    node = Node(rig, ports, dsn, workers, args)
    conn = await asyncpg.connect(dsn)
    try:
        took = await node.wait_ready(args.start_timeout)
        out(f"  node up: {workers} workers ready in {took:.0f}s")
        ledger_calls = Calls(conn)
        called = Sipp(rig, "b-called", write_called(rig.tmp, "called_talk.xml", args.talk,
                                                    args.spread),
                      sip_port=ports.called, media_port=ports.called_media,
                      ctrl_port=ports.called_ctrl)
        kiosk = Sipp(rig, "b-kiosk", "kiosk.xml", sip_port=ports.kiosk,
                     media_port=ports.kiosk_media, ctrl_port=ports.kiosk_ctrl,
                     remote=f"127.0.0.1:{ports.frontdoor}",
                     args=["-inf", str(rig.tmp / "kiosk.csv"), "-r", "4", "-l", str(calls)])
        try:
            async def full():
                return await ledger_calls.accepted() >= calls * 0.95
            if not await wait_for(full, calls / 4 + args.talk + 30):
                out(f"  only {await ledger_calls.accepted()} of {calls} calls accepted; kiosk "
                    f"errors:\n{kiosk.errors()}\n  called errors:\n{called.errors()}")
            await asyncio.sleep(3)
            t0 = time.time()
            w = await measure(args.window, {"switch": [node.proc.pid],
                                            "postgres": [postmaster_pid(pgdata)]},
                              ledger_calls.accepted, rounds=args.rounds)
            cdrs = await ledger_calls.ended_between(t0, time.time(), talk_min(args))
            tes = called.logged_payload_types()
            mem = tree_memory(node.proc.pid)
            failed = kiosk.count("FailedCall(C)") + called.count("FailedCall(C)")
            out(f"  calls ended in the window, by CDR: {cdrs}")
            return w, workers, tes, mem, failed
        finally:
            kiosk.stop()
            called.stop()
    finally:
        await conn.close()
        node.stop()


async def cost_reference(rig, ports, calls, args, out):
    per = args.ref_calls_per_process
    n = -(-calls // per)
    refs = []
    for i in range(n):
        lo = ports.ref_rtp + i * Ports.RTP_PER_PROCESS
        refs.append(rig.spawn(f"bare-{i}", [
            sys.executable, str(HERE / "bare_echo.py"), "--sip-port", str(ports.ref_sip + i),
            "--rtp-port-min", str(lo), "--rtp-port-max", str(lo + Ports.RTP_PER_PROCESS - 1),
            "--hangup-after", str(args.talk + DTMF_AFTER_ANSWER)]))
    write_injection(rig.tmp / "bare.csv", args.pairs, lambda i: ports.ref_sip + i % n,
                    lines=n * 200)
    await asyncio.sleep(3)
    kiosk = Sipp(rig, "b-bare-kiosk", "kiosk_direct.xml", sip_port=ports.kiosk,
                 media_port=ports.kiosk_media, ctrl_port=ports.kiosk_ctrl,
                 remote=f"127.0.0.1:{ports.ref_sip}", args=["-inf", str(rig.tmp / "bare.csv"), "-r", "4", "-l", str(calls)])
    try:
        async def current():
            return int(kiosk.count("CurrentCall"))

        async def full():
            return await current() >= calls * 0.95
        await wait_for(full, calls / 4 + 30)
        await asyncio.sleep(3)
        w = await measure(args.window, {"bare": [p.pid for p in refs]}, current,
                          rounds=args.rounds)
        return w, n, kiosk.count("FailedCall(C)")
    finally:
        kiosk.stop()
        for p in refs:
            rig.stop(p, timeout=5)


def spare_workers(calls: int, args) -> int:
    """Workers beyond calls/2: the front door reserves a slot per redirected INVITE until a
    heartbeat shows the call, so a node packed exactly full turns new calls away."""
    return max(args.spare_workers, -(-calls // 20))


async def capacity(rig, ports, dsn, steps, args, out):
    """(a): for each step, a node sized for it (step/2 workers and a few spare), `step` concurrent
    calls held for one call turnover."""
    import asyncpg
    results = []
    for step in steps:
        workers = step // 2 + spare_workers(step, args)
        try:
            node = Node(rig, ports, dsn, workers, args)
        except SystemExit as e:
            e.results = results
            raise
        conn = await asyncpg.connect(dsn)
        kiosk = called = None
        try:
            try:
                took = await node.wait_ready(args.start_timeout)
            except SystemExit as e:
                e.results = results
                raise
            await asyncio.sleep(3)
            idle = await measure(8, {"switch": [node.proc.pid]}, _zero)
            ledger_calls = Calls(conn)
            called = Sipp(rig, f"a{step}-called",
                          write_called(rig.tmp, "called_talk.xml", args.talk, args.spread),
                          sip_port=ports.called, media_port=ports.called_media,
                          ctrl_port=ports.called_ctrl)
            kiosk = Sipp(rig, f"a{step}-kiosk", "kiosk.xml", sip_port=ports.kiosk,
                         media_port=ports.kiosk_media, ctrl_port=ports.kiosk_ctrl,
                         remote=f"127.0.0.1:{ports.frontdoor}",
                         args=["-inf", str(rig.tmp / "kiosk.csv"), "-r", str(args.ramp_rate),
                               "-l", str(step)])
            async def offered():          # calls up at the kiosks, set-up ones included
                return kiosk.count("CurrentCall") >= step * 0.97
            reached = await wait_for(offered, step / args.ramp_rate + 20)
            await asyncio.sleep(5)            # the last ones get through the IVR
            k0, c0 = kiosk.count("FailedCall(C)"), called.count("FailedCall(C)")
            made0 = kiosk.count("OutgoingCall(C)")
            t0 = time.time()
            w = await measure(args.talk + DTMF_AFTER_ANSWER + 8,
                              {"switch": [node.proc.pid]}, ledger_calls.accepted)
            t1 = time.time()
            cdrs = await ledger_calls.ended_between(t0, t1, talk_min(args))
            kiosk_failed = kiosk.count("FailedCall(C)") - k0
            called_failed = called.count("FailedCall(C)") - c0
            made = kiosk.count("OutgoingCall(C)") - made0
            vm = psutil.virtual_memory()
            nproc, pss, uss = tree_memory(node.proc.pid)
            errors = kiosk.errors(600)
        finally:
            for sipp in (kiosk, called):
                if sipp is not None:
                    sipp.stop()
            await conn.close()
            node.stop()
        ended = sum(cdrs.values())
        bad_cdrs = ended - cdrs.get("completed", 0)
        attempts = max(made, ended, 1)
        failed = kiosk_failed + bad_cdrs
        r = dict(step=step, workers=workers, reached=reached,
                 held=statistics.median(w.concurrency), low=min(w.concurrency),
                 attempts=attempts, failed=failed, kiosk_failed=kiosk_failed,
                 called_failed=called_failed, cdrs=cdrs, host_busy=w.host_busy,
                 switch_cores=w.cpu["switch"] / w.seconds,
                 idle_cores=idle.cpu["switch"] / idle.seconds,
                 mem_available=vm.available / 2**30, mem_total=vm.total / 2**30,
                 pss=pss, uss=uss, nproc=nproc)
        r["share"] = failed / attempts
        r["ok"] = reached and r["share"] < FAILED_SHARE_MAX
        results.append(r)
        out(f"  step {step:>4}: {workers} workers (ready in {took:.0f}s, idle "
            f"{100 * r['idle_cores']:.0f}% of a core); held {r['held']:.0f} (min {r['low']}), "
            f"{attempts:.0f} calls, failed {failed:.0f} ({100 * r['share']:.2f}%: kiosk "
            f"{kiosk_failed:.0f}, CDRs not completed {bad_cdrs}); host CPU "
            f"{100 * w.host_busy:.0f}% busy, switch {100 * r['switch_cores']:.0f}% of a core; "
            f"switch PSS {pss / 1024:.2f} GB, {r['mem_available']:.1f} GB available -> "
            f"{'holds' if r['ok'] else 'FAILS'}{'' if reached else ' (never reached the step)'}")
        if not r["ok"]:
            out(f"    kiosk errors (tail):\n{_indent(errors)}")
            if bad_cdrs:
                out(f"    CDR dispositions: {cdrs}")
            break
    return results


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.strip().splitlines()[-12:])


async def latency(rig, ports, entry: str, args, out):
    """(c) one side: `entry` is 'switch' (front door, 302, worker) or 'kamailio'."""
    n = int(args.rate * args.latency_seconds)
    called = Sipp(rig, f"c-called-{entry}",
                  write_called(rig.tmp, "called_short.xml", args.latency_talk, 0.0),
                  sip_port=ports.called, media_port=ports.called_media,
                  ctrl_port=ports.called_ctrl)
    kam = None
    if entry == "switch":
        port, scenario, remote = ports.frontdoor, "kiosk.xml", f"127.0.0.1:{ports.frontdoor}"
        inf = rig.tmp / "kiosk.csv"
    else:
        port, scenario, remote = ports.kamailio, "kiosk_direct.xml", f"127.0.0.1:{ports.kamailio}"
        inf = rig.tmp / "kamailio.csv"
        write_injection(inf, args.pairs, lambda i: ports.kamailio)
        kam = rig.spawn("kamailio", [
            "kamailio", "-DD", "-E", "-Y", str(rig.tmp), "-f", str(HERE / "kamailio.cfg"),
            "-A", f"BENCH_LISTEN=udp:127.0.0.1:{ports.kamailio}",
            "-A", f'BENCH_CALLED="sip:127.0.0.1:{ports.called}"'])
        await asyncio.sleep(2)
    sniffer = InviteSniffer([port, ports.called])
    sniffer.start()
    since = time.time()
    kiosk = Sipp(rig, f"c-kiosk-{entry}", scenario, sip_port=ports.kiosk,
                 media_port=ports.kiosk_media, ctrl_port=ports.kiosk_ctrl, remote=remote,
                 args=["-inf", str(inf), "-r", str(args.rate), "-m", str(n)])
    try:
        t0 = time.monotonic()
        while kiosk.proc.poll() is None and time.monotonic() - t0 < (
                args.latency_seconds + args.latency_talk + 40):
            await asyncio.sleep(1)
        lat, lost = setup_latencies(sniffer.invites, port, ports.called, since)
        failed = kiosk.count("FailedCall(C)")
        return lat, lost, failed, n
    finally:
        kiosk.stop()
        sniffer.close()
        called.stop()
        if kam is not None:
            rig.stop(kam, timeout=5)


# -- main ----------------------------------------------------------------------------------

async def main(args) -> int:
    from ops.embedded import EmbeddedServer
    out = lambda *a: print(*a, flush=True)          # noqa: E731
    for tool in ("sipp", "kamailio"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install sip-tester kamailio")
    if os.geteuid() != 0:
        raise SystemExit("needs root: SIPp's pcap play and the packet socket use raw sockets")
    rig = Rig(args.keep)
    ports = Ports(args.port_base)
    server = EmbeddedServer(rig.tmp / "db", fsync=True)
    results: dict = {}
    try:
        t = time.perf_counter()
        dsn = server.start()
        await provision(dsn, args.pairs, ports.called, args.kiosks)
        write_media(rig.tmp, args.te)
        write_injection(rig.tmp / "kiosk.csv", args.pairs, kiosks=args.kiosks)
        out(f"embedded PostgreSQL (fsync on), demo facility and {args.pairs} callers with funded "
            f"prepaid contacts in {time.perf_counter() - t:.1f}s; scratch {rig.tmp}")
        out(f"calls: {args.talk:.0f}s talk after the called party presses 1, recorded, "
            f"{args.period}s billing periods; RTP both ways (A-law, 20 ms)")

        if "b" in args.phases:
            out(f"\n(b) cost at {args.cost_calls} concurrent calls, {args.window:.0f}s window")
            sw, workers, tes, mem, sw_failed = await cost_switch(
                rig, ports, dsn, server.pgdata, args.cost_calls, args, out)
            if tes and tes != {str(args.te)}:
                out(f"  WARNING: the worker offered telephone-event {tes}, dtmf1.pcap uses "
                    f"{args.te}: rerun with --te {min(tes)}")
            sw_only = sw.per_call_minute("switch")
            sw_all = sw.per_call_minute("switch", "postgres")
            out(f"  switch: {workers} workers, {statistics.fmean(sw.concurrency):.1f} accepted "
                f"calls on average, {sw.call_minutes:.1f} call-minutes, ics serve tree "
                f"{sw.cpu['switch']:.1f} CPU-s + PostgreSQL {sw.cpu['postgres']:.1f} CPU-s, "
                f"{sw_failed:.0f} SIPp failures; tree PSS {mem[1] / 1024:.2f} GB over {mem[0]} "
                f"processes, median USS {mem[2]:.0f} MB")
            ref, nref, ref_failed = await cost_reference(rig, ports, args.cost_calls, args, out)
            bare = ref.per_call_minute("bare")
            out(f"  bare pjsua2 reference: {nref} processes x {args.ref_calls_per_process} calls, "
                f"{statistics.fmean(ref.concurrency):.1f} calls on average, "
                f"{ref.call_minutes:.1f} call-minutes, {ref.cpu['bare']:.1f} CPU-s, "
                f"{ref_failed:.0f} SIPp failures")
            out(f"  (b) medians of {args.rounds} rounds: switch {sw_only:.3f} CPU-s per call-minute (with PostgreSQL {sw_all:.3f}); "
                f"bare reference {bare:.3f}; ratio {sw_only / bare:.2f}x "
                f"(with PostgreSQL {sw_all / bare:.2f}x; target <= 1.5x)")
            results["b"] = (sw_only, sw_all, bare)

        if "a" in args.phases:
            steps = [int(x) for x in args.steps.split(",")]
            out(f"\n(a) capacity: steps {steps}, each on a node sized for it, held "
                f"{args.talk + DTMF_AFTER_ANSWER + 8:.0f}s (one call turnover)")
            try:
                res = await capacity(rig, ports, dsn, steps, args, out)
            except SystemExit as e:             # the node did not come up: say so, go on
                rig.keep = True
                out(f"  node failed: {e}")
                res = getattr(e, "results", [])
            if not res:
                out("  (a) measured nothing")
            else:
                good = [r for r in res if r["ok"]]
                best_r = max(good, key=lambda r: r["held"], default=None)
                best = best_r["held"] if best_r else 0
                nxt = next((r for r in res if not r["ok"]), None)
                limiter = ("not found: every step held (add larger --steps)" if nxt is None
                           else _limiter(nxt))
                out(f"  (a) {best:.0f} concurrent accepted calls held (median; SIPp kept "
                    f"{best_r['step'] if best_r else 0} calls up, the rest in set-up) with < "
                    f"{100 * FAILED_SHARE_MAX}% failed (target >= 100); next step: {limiter}")
                last = res[-1]
                out(f"      memory at {last['step']}: switch PSS {last['pss'] / 1024:.2f} GB over "
                    f"{last['nproc']} processes (median worker USS {last['uss']:.0f} MB), "
                    f"{last['mem_available']:.1f} of {last['mem_total']:.1f} GB available; ports: "
                    f"{Ports.RTP_PER_PROCESS} RTP ports per worker, {last['workers']} workers")
                results["a"] = best
        if "c" in args.phases:
            calls_in_flight = args.rate * (args.latency_talk + DTMF_AFTER_ANSWER + 4)
            workers = int(calls_in_flight // 2) + spare_workers(int(calls_in_flight), args)
            out(f"\n(c) setup latency at {args.rate:g} calls/s for {args.latency_seconds:.0f}s, "
                f"{args.latency_talk:g}s talk (kiosk INVITE at the front door -> trunk INVITE "
                f"at the called party, kernel timestamps on lo); node of {workers} workers")
            node = Node(rig, ports, dsn, workers, args)
            try:
                await node.wait_ready(args.start_timeout)
                await asyncio.sleep(3)
                lat, lost, failed, n = await latency(rig, ports, "switch", args, out)
                story = core_story(scrape(ports.http))
            finally:
                node.stop()
            out(f"  switch: {len(lat)}/{n} calls reached the trunk ({lost} did not, {failed:.0f} "
                f"SIPp failures): p50 {1e3 * pct(lat, 50):.2f} ms, p99 {1e3 * pct(lat, 99):.2f} ms")
            for line in story:
                out(f"    {line}")
            for nets in (["127.0.0.1/32"], [f"10.{i}.0.0/16" for i in range(7)] + ["127.0.0.1"]):
                cost = source_check_seconds(nets)
                out(f"    source checks, {len(nets)} registered network(s): {1e6 * cost:.1f} us "
                    f"a call = {100 * cost / pct(lat, 50):.3f}% of the set-up p50")
            klat, klost, kfailed, kn = await latency(rig, ports, "kamailio", args, out)
            out(f"  Kamailio stateful proxy: {len(klat)}/{kn} reached the called party "
                f"({kfailed:.0f} SIPp failures): p50 {1e3 * pct(klat, 50):.3f} ms, "
                f"p99 {1e3 * pct(klat, 99):.3f} ms")
            out(f"  (c) p50 ratio {pct(lat, 50) / pct(klat, 50):.0f}x, p99 ratio "
                f"{pct(lat, 99) / pct(klat, 99):.0f}x (target p99 <= 10x)")
        return 0
    except BaseException:
        rig.keep = True                 # the logs say why
        raise
    finally:
        rig.close()
        server.destroy()
        if args.keep:
            out(f"kept {rig.tmp}")


def talk_min(args) -> int:
    """Talk seconds below which a completed call counts as cut short."""
    return int(args.talk * (1 - args.spread)) - 2


async def _zero() -> int:
    return 0


def _limiter(r: dict) -> str:
    why = []
    if r["host_busy"] >= 0.93:
        why.append(f"CPU (host {100 * r['host_busy']:.0f}% busy)")
    if r["mem_available"] < 0.1 * r["mem_total"]:
        why.append(f"memory ({r['mem_available']:.1f} GB left)")
    if not r["reached"]:
        why.append(f"the kiosks could not keep {r['step']} calls up in time")
    if not why:
        why.append("failed calls with CPU and memory to spare (see the errors above)")
    return (f"{r['step']} failed ({100 * r['share']:.2f}% failed, held {r['held']:.0f}): "
            + ", ".join(why))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phases", default="bac", help="any of b (cost), a (capacity), c (latency)")
    p.add_argument("--steps", default="70,100,130,160",
                   help="(a) calls kept up by the kiosks per step (about 6%% of them are in set-up)")
    p.add_argument("--ramp-rate", type=float, default=8.0, help="(a) new calls/s while ramping")
    p.add_argument("--cost-calls", type=int, default=40, help="(b) concurrent calls")
    p.add_argument("--spare-workers", type=int, default=2,
                   help="(b) workers beyond calls/2: the front door's reservations need room")
    p.add_argument("--ref-calls-per-process", type=int, default=4,
                   help="(b) calls per bare pjsua2 process (the pjsua build holds 4 legs)")
    p.add_argument("--window", type=float, default=60.0, help="(b) measured seconds")
    p.add_argument("--rounds", type=int, default=3, help="(b) the window's parts; medians")
    p.add_argument("--talk", type=float, default=30.0, help="seconds of talk per call")
    p.add_argument("--spread", type=float, default=0.5,
                   help="talk time drawn uniformly from talk * (1 -/+ spread)")
    p.add_argument("--period", type=int, default=5, help="billing period, seconds")
    p.add_argument("--rate", type=float, default=20.0, help="(c) calls/s")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--latency-talk", type=float, default=1.0)
    p.add_argument("--pairs", type=int, default=400, help="callers (inmate + funded contact)")
    p.add_argument("--kiosks", type=int, default=48,
                   help="the facility's kiosks; calls go round them (all call from loopback)")
    p.add_argument("--te", type=int, default=120,
                   help="telephone-event payload type the worker offers on the trunk leg")
    p.add_argument("--worker-setting", action="append", default=[],
                   help="extra [worker] TOML line for the node, e.g. 'poll_active_ms = 20'")
    p.add_argument("--port-base", type=int, default=38000)
    p.add_argument("--start-timeout", type=float, default=400.0)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory and logs")
    p.add_argument("--log-level", default="warning",
                   help="the node's log level (core and workers), e.g. debug to see why calls fail")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(asyncio.run(main(args)))
