"""A live node for the API tests: `ics serve --workers 0` in its own process, on a database of
its own (cloned from the migrated template), its HTTP port chosen by the kernel and read from the
node's start-up line. Tests talk to it over HTTP and look at the same database with asyncpg.
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest
import requests

TEMPLATE_DB = "ics_t_template"           # made by tests/conftest.py's pg_template


def _with_database(dsn: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


NODE_START_SECONDS_MAX = 60.0


class Api:
    """requests against /api/v1 with one operator's token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token

    def as_(self, token: str | None) -> "Api":
        return Api(self.base, token)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)


@pytest.fixture(scope="module")
async def api_dsn(pg_template):
    admin_dsn = pg_template
    name = f"ics_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    yield _with_database(admin_dsn, name)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def _wait_for_port(proc: subprocess.Popen, deadline: float) -> tuple[int, int, list[str]]:
    lines: list[str] = []
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if proc.poll() is not None and not ready:
            break
        if not ready:
            continue
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode(errors="replace")
            lines.append(text)
            m = re.search(r"serving; AMP :(\d+), HTTP :(\d+)", text)
            if m:
                return int(m.group(2)), int(m.group(1)), lines
    raise RuntimeError("the node did not start:\n" + "\n".join(lines[-40:]))


@pytest.fixture(scope="module")
def node_url(node):
    return node[0]


@pytest.fixture(scope="module")
def node_amp_port(node):
    return node[1]


@pytest.fixture(scope="module")
def node_data_dir(node):
    return node[2]


@pytest.fixture(scope="module")
def node(api_dsn, tmp_path_factory):
    """(base URL of a live node serving the API, its AMP port); no media workers."""
    root = tmp_path_factory.mktemp("node")
    config = root / "ics.toml"
    config.write_text(f'[database]\nurl = "{api_dsn}"\n[node]\ndata_dir = "{root}"\n'
                      '[core]\nhttp_port = 0\n[switch]\ncore_amp_port = 0\n'
                      '[api]\nbody_bytes_max = 1048576\nadjustment_approval_micros = 50000000\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "--config", str(config), "serve",
                             "--workers", "0"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        port, amp_port, _ = _wait_for_port(proc, time.monotonic() + NODE_START_SECONDS_MAX)
        # Keep draining the node's log so it never blocks on a full pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in iter(
            lambda: proc.stderr.read(65536), b"")], daemon=True).start()
        yield f"http://127.0.0.1:{port}/api/v1", amp_port, root
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
async def db(api_dsn):
    conn = await asyncpg.connect(api_dsn)
    yield conn
    await conn.close()


async def make_operator(conn, operator_id: str, role: str, facilities=()) -> str:
    """An operator and a token for them, made the way `ics operator add --token` makes them."""
    from web.operators import add_operator, issue_token
    await add_operator(conn, operator_id, role, list(facilities), actor="cli:test", via="cli")
    return (await issue_token(conn, operator_id, actor="cli:test", via="cli")).token


@pytest.fixture(scope="module")
async def admin(node_url, db) -> Api:
    return Api(node_url, await make_operator(db, "root", "admin"))


@pytest.fixture(scope="session")
async def reactor():
    """The Twisted reactor on the session's loop, running (as tests/switch/conftest.py has it)."""
    import asyncio
    import signal as signals

    from twisted.internet import reactor as installed
    if installed._asyncioEventloop is not asyncio.get_running_loop():
        raise RuntimeError("the reactor wraps another loop than the test session's")
    if not installed.running:
        sigint = signals.getsignal(signals.SIGINT)
        installed.startRunning(installSignalHandlers=True)
        signals.signal(signals.SIGINT, sigint)
    yield installed
    if getattr(installed, "threadpool", None) is not None:
        installed._stopThreadPool()
