"""A node that cannot listen (a port in use) closes what it opened before it gives up: the
listeners it did open, its database pool, and the embedded PostgreSQL `ics serve` started."""
import asyncio
import os
import socket
import subprocess
import sys

import asyncpg
import pytest
from twisted.internet.error import CannotListenError

from ops.cli import ExitCode
from ops.embedded import EmbeddedServer
from ops.node import start_node

WAIT_SECONDS = 10.0


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def _ics_connections(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND application_name = 'ics'")


async def _until(predicate, timeout: float = WAIT_SECONDS):
    """Wait until ``await predicate()`` is true (a backend leaves pg_stat_activity a moment after
    its client closed the connection); the last value otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_a_node_that_cannot_listen_closes_its_pool_and_the_listeners_it_opened(cfg, conn):
    from twisted.internet import reactor

    from ops.api import api_mount
    started = []

    def mount(site, **parts):           # the API's mount, whose family sweeps run in the background
        tasks = api_mount(cfg)(site, **parts)
        started.extend(tasks)
        return tasks
    amp_port = _free_tcp_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        http_port = taken.getsockname()[1]
        with pytest.raises(CannotListenError):
            await start_node(cfg, reactor, workers=0, amp_port=amp_port, http_port=http_port,
                             mount=mount)
    # The AMP listener, opened before the HTTP one failed, is closed: its port is free again.
    assert _bindable(amp_port)
    # The sweeps the mount started are stopped, not left to fail on a closed pool.
    assert started and all(t.done() for t in started)

    async def pool_closed():
        return await _ics_connections(conn) == 0
    assert await _until(pool_closed), "the node's database connections are still open"


def test_ics_serve_with_a_port_in_use_exits_6_and_stops_the_embedded_database_it_started(
        tmp_path):
    server = EmbeddedServer(tmp_path, fsync=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "ics.toml"
        config.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[database]\nembedded_fsync = false\n'
                          f'[core]\nhttp_host = "127.0.0.1"\nhttp_port = {port}\n'
                          '[switch]\ncore_amp_port = 0\n')
        try:
            r = subprocess.run([sys.executable, "-m", "ops.cli", "--config", str(config), "serve",
                                "--workers", "0"], env=env, capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == ExitCode.PORT_IN_USE, r.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in r.stderr.splitlines()[-1]
            assert "Traceback" not in r.stderr
            assert server.initialised(), "the embedded database was never started"
            assert not server.running(), "ics serve left the embedded database it started running"
        finally:
            if server.running():
                server.stop("immediate")


async def test_a_database_someone_else_started_is_left_running(tmp_path):
    """`ics db start` then a failing `ics serve`: the server is not serve's to stop."""
    server = EmbeddedServer(tmp_path, fsync=False)
    dsn = await asyncio.to_thread(server.start)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = tmp_path / "ics.toml"
            config.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[core]\nhttp_host = "127.0.0.1"\n'
                              f'http_port = {port}\n[switch]\ncore_amp_port = 0\n')
            r = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "ops.cli", "--config", str(config),
                                 "serve", "--workers", "0"],
                env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == ExitCode.PORT_IN_USE, r.stderr
        assert server.running()
        c = await asyncpg.connect(dsn)
        await c.close()
    finally:
        await asyncio.to_thread(server.stop, "immediate")
