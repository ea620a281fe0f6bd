"""Hostile tests of the node's processes, with the real `ics serve` and real media workers (pjsua2):
SIGKILL of the node takes its workers with it and a restarted node serves again; a starting node
ends workers an earlier run left on its ports, and never a stranger's process; `ics serve` exits
within its bound after SIGTERM, run after run; /health lists workers by state and says 503 with
none ready; a worker that cannot start says why. Real PostgreSQL, real processes, free ports."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from ops.config import load
from ops.demo import load_demo_data
from switch.processes.supervisor import STOP_REAP_SECONDS

from tests.security import core_edge  # noqa: F401  (puts tests/switch on the path)
from test_supervisor import _free_udp_range

WORKERS = 2
WORKER_STOP_SECONDS = 2.0
SERVE_STOP_BOUND = WORKER_STOP_SECONDS + STOP_REAP_SECONDS + 5.0   # ops.commands.serve.stop_bound
STANDIN = str(Path(core_edge.SWITCH_TESTS) / "standin_worker.py")


def free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def until(predicate, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: still false after {timeout}s ({value!r})")
        await asyncio.sleep(0.05)


class Node:
    """`ics serve` in its own process, on free ports, against the test's database."""

    def __init__(self, tmp: Path, dsn: str, *, worker_command=None, env=None):
        self.tmp, self.env_extra = tmp, env or {}
        self.sip_base = _free_udp_range(WORKERS)
        self.http = free_tcp()
        rtp = _free_udp_range(16)
        self.door = _free_udp_range(1)
        while rtp <= self.door <= rtp + 17:     # free now, but the workers' RTP range (the node refuses it)
            self.door = _free_udp_range(1)
        command = "" if worker_command is None else f"worker_command = {json.dumps(worker_command)}"
        self.config = tmp / "node.toml"
        self.config.write_text(f"""
[node]
data_dir = "{tmp / 'var'}"
[database]
url = "{dsn}"
pool_min = 1
pool_max = 4
[switch]
workers = {WORKERS}
sip_host = "127.0.0.1"
frontdoor_port = {self.door}
worker_sip_port_base = {self.sip_base}
rtp_port_base = {rtp + rtp % 2}
rtp_ports_per_worker = 8
core_amp_port = {free_tcp()}
heartbeat_seconds = 0.5
worker_silence_seconds = 5.0
worker_stop_seconds = {WORKER_STOP_SECONDS}
restart_backoff_seconds_min = 0.2
restart_backoff_seconds_max = 1.0
{command}
[core]
http_port = {self.http}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
        env.update(self.env_extra)
        self.log = open(self.tmp / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "--config", str(self.config), "serve"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def health(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/health", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        except OSError:
            return None, None

    async def ready(self, timeout=60.0) -> dict:
        async def check():
            status, body = await asyncio.to_thread(self.health)
            return body if status == 200 and len(body["workers"]["ready"]) == WORKERS else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            body = await check()
            if body:
                return body
            assert self.proc.poll() is None, self.output()
            await asyncio.sleep(0.2)
        raise AssertionError(f"node not ready after {timeout}s\n{self.output()}")

    def worker_pids(self) -> list[int]:
        run = self.tmp / "var" / "run"
        return sorted(int(p.read_text().split()[0]) for p in run.glob("worker-*.pid"))

    def output(self, tail: int = 4000) -> str:
        return (self.tmp / "serve.log").read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
async def demo_db(pg_dsn):
    conn = await asyncpg.connect(pg_dsn)
    await load_demo_data(conn, load(environ={}), out=lambda m: None)
    await conn.close()
    return pg_dsn


@pytest.fixture
def nodes():
    started = []
    yield started
    for n in started:
        n.stop()
        for pid in n.worker_pids() if (n.tmp / "var" / "run").exists() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def sip_options(port: int, timeout: float = 5.0) -> bytes:
    """One OPTIONS to 127.0.0.1:port; the answer's first line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        me = s.getsockname()[1]
        s.sendto((f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{time.time_ns()};rport\r\n"
                  f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
                  f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{time.time_ns()}\r\n"
                  f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
        return s.recv(4096).split(b"\r\n", 1)[0]


async def test_sigkill_of_the_node_takes_its_workers_and_a_restarted_node_serves(
        demo_db, tmp_path, nodes):
    node = Node(tmp_path, demo_db)
    nodes.append(node)
    node.start()
    await node.ready()
    first = node.worker_pids()
    assert len(first) == WORKERS and all(alive(p) for p in first)
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    # Workers die with their parent (parent-death signal, then their own watch): no orphans
    # left holding the SIP ports.
    await until(lambda: not any(alive(p) for p in first), 10, "workers outlived the node")
    node.start()
    body = await node.ready()
    second = node.worker_pids()
    assert set(second).isdisjoint(first) and all(alive(p) for p in second)
    assert body["status"] == "ok" and body["workers"]["ready"] == ["w1", "w2"]
    for port in (node.sip_base, node.sip_base + 1):
        assert (await asyncio.to_thread(sip_options, port)).startswith(b"SIP/2.0 200"), port
    assert (await asyncio.to_thread(sip_options, node.door)).startswith(b"SIP/2.0 200")


async def test_a_starting_node_ends_its_stale_workers_and_spares_strangers(
        demo_db, tmp_path, nodes):
    node = Node(tmp_path, demo_db)
    nodes.append(node)
    dead_core = free_tcp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    # A worker of an earlier run whose parent is long gone (no lifeline), on w1's SIP port ...
    orphan = subprocess.Popen(
        [sys.executable, "-m", "switch.worker", "--worker-id", "w1", "--sip-port",
         str(node.sip_base), "--rtp-port-min", "41000", "--rtp-port-max", "41007",
         "--core", f"tcp:127.0.0.1:{dead_core}", "--data-dir", str(tmp_path / "orphan")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # ... and a stranger whose arguments merely look alike.
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "--worker-id", "w2",
         "--sip-port", str(node.sip_base + 1)], env=env, start_new_session=True)
    try:
        await until(lambda: (Path(f"/proc/{orphan.pid}/cmdline").exists()
                             and sip_port_bound(node.sip_base)), 20, "orphan bound its port")
        node.start()
        await node.ready()
        assert orphan.wait(10) is not None                  # ended by the new node
        assert stranger.poll() is None and alive(stranger.pid)
        assert orphan.pid not in node.worker_pids()
        assert f"ending stale worker w1 (pid {orphan.pid})" in node.output(tail=10**7)
    finally:
        for p in (orphan, stranger):
            if p.poll() is None:
                p.kill()
                p.wait(10)


def sip_port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def test_sigterm_ends_the_node_within_its_bound_run_after_run(demo_db, tmp_path, nodes):
    for run in range(3):
        (tmp_path / f"run{run}").mkdir()
        node = Node(tmp_path / f"run{run}", demo_db)
        nodes.append(node)
        node.start()
        await node.ready()
        pids = node.worker_pids()
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(node.proc.wait, SERVE_STOP_BOUND + 5)
        took = time.monotonic() - started
        assert took <= SERVE_STOP_BOUND, (run, took, node.output())
        assert code == 0, node.output()
        await until(lambda: not any(alive(p) for p in pids), 5, "a worker outlived the node")


async def test_a_worker_that_ignores_sigterm_cannot_hold_the_node_past_its_bound(
        demo_db, tmp_path, nodes):
    node = Node(tmp_path, demo_db, worker_command=[sys.executable, STANDIN],
                env={"STANDIN_IGNORE_TERM": "1"})
    nodes.append(node)
    node.start()
    await node.ready()
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(node.proc.wait, SERVE_STOP_BOUND + 5)
    assert time.monotonic() - started <= SERVE_STOP_BOUND


async def test_health_lists_workers_by_state_and_is_503_with_none_ready(demo_db, tmp_path, nodes):
    node = Node(tmp_path, demo_db, worker_command=[sys.executable, STANDIN],
                env={"STANDIN_EXIT": "3"})                 # every worker crash-loops
    nodes.append(node)
    node.start()

    async def unhealthy():
        status, body = await asyncio.to_thread(node.health)
        return (status, body) if status == 503 else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (found := await unhealthy()):
        assert loop.time() < deadline, node.output()
        await asyncio.sleep(0.2)
    status, body = found
    assert body["status"] == "unhealthy" and body["problems"] == ["no_worker_ready"]
    assert body["database"] == "ok" and body["workers"]["ready"] == []
    assert sorted(sum((body["workers"][s] for s in ("starting", "dead")), [])) == ["w1", "w2"]


def test_a_worker_that_cannot_start_says_why(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
        r = subprocess.run(
            [sys.executable, "-m", "switch.worker", "--worker-id", "w1", "--sip-port", str(port),
             "--rtp-port-min", "41100", "--rtp-port-max", "41107", "--core",
             f"tcp:127.0.0.1:{free_tcp()}", "--data-dir", str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    line = next(l for l in r.stderr.splitlines() if "cannot start:" in l)
    reason = line.split("cannot start:", 1)[1].strip()
    assert len(reason) > 10 and reason != "Error:", line


# -- the pure parts: which processes are ours, and the watch on the parent ---------------------

def fake_proc(root: Path, pid: int, argv: list[str], *, ppid: int = 1, start: int = 777,
              uid: int | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    rest = ["S", str(ppid)] + ["0"] * 17 + [str(start)] + ["0"] * 30
    (d / "stat").write_text(f"{pid} (py thon) {' '.join(rest)}\n")
    if uid is not None:
        os.chown(d, uid, -1)


def test_only_our_own_workers_on_our_ports_are_taken_for_stale(tmp_path):
    from switch.processes import stale
    proc, run = tmp_path / "proc", tmp_path / "run"
    tail = ["-m", "switch.worker"]
    worker = lambda wid, port: [sys.executable, *tail, "--worker-id", wid, "--sip-port", str(port),
                                "--core", "tcp:127.0.0.1:1"]
    fake_proc(proc, 4100, worker("w1", 5070))                                  # ours, orphaned
    fake_proc(proc, 4101, [sys.executable, "-c", "pass", "--worker-id", "w2",
                           "--sip-port", "5071"])                              # a stranger
    fake_proc(proc, 4102, worker("w2", 6000))                                  # another node's
    fake_proc(proc, 4103, worker("w2", 5071), uid=os.getuid() + 4242)          # another user's
    fake_proc(proc, 4104, worker("w2", 5071), ppid=os.getpid())                # our own child
    fake_proc(proc, 4105, worker("w2", 5071), start=900)                       # ours, by pid file
    run.mkdir()
    stale.pid_file(run, 5071).write_text("4105 900\n")
    stale.pid_file(run, 5070).write_text("4101 777\n")       # a recycled pid: not a worker
    found = stale.find_stale(run, [("w1", 5070), ("w2", 5071)], tail, proc=proc)
    assert found == {4100: "w1", 4105: "w2"}


def test_a_worker_whose_parent_is_gone_stops_and_exits_within_its_bound():
    from twisted.internet import task

    from switch.processes import lifeline
    clock, stopped, exited = task.Clock(), [], []
    loop = lifeline.watch_parent(clock, lambda: stopped.append(clock.seconds()),
                                 expected=os.getppid(), interval=1.0, exit_bound=5.0,
                                 hard_exit=exited.append)
    clock.advance(10)
    assert stopped == [] and exited == [] and loop.running       # our parent is still there
    loop.stop()
    loop = lifeline.watch_parent(clock, lambda: stopped.append(clock.seconds()),
                                 expected=os.getppid() + 100_000, interval=1.0, exit_bound=5.0,
                                 hard_exit=exited.append)
    assert stopped == [10.0] and not loop.running
    clock.advance(4.9)
    assert exited == []
    clock.advance(0.2)
    assert exited == [1]
    assert lifeline.expected_parent({lifeline.PARENT_PID_ENV: "1"}) is None
    assert lifeline.expected_parent({lifeline.PARENT_PID_ENV: "x"}) is None
    assert lifeline.expected_parent({lifeline.PARENT_PID_ENV: "4242"}) == 4242
