"""The core as it runs in production (`ics serve` in its own process), killed with SIGKILL in the
middle of calls and started again: the call whose worker comes back goes on and is charged once;
the call whose worker never returns is closed as worker_lost; the ledger verifies."""
import asyncio
import os
import signal
import socket
import subprocess
import sys

import asyncpg
import pytest
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols import amp

import ledger
from switch.wire import amp_auth
from switch.wire import protocol as wire
from ops.demo import load_demo_data
from ops.config import load

from rig import authenticated_client, keyed_authorize

PERIOD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_serve(config_file, amp_port):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.cli", "--config", str(config_file), "serve",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("ICS_")})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        if b"serving" in line:
            break
        if not line:
            raise AssertionError("ics serve exited before serving")
    async def drain():
        while await proc.stderr.readline():
            pass
    asyncio.ensure_future(drain())
    return proc


async def link(reactor, port, data_dir):
    """A worker run outside the node: its key derives from the node secret in data_dir."""
    secret = amp_auth.node_secret(data_dir / amp_auth.SECRET_FILE)
    return await authenticated_client(reactor, port, amp_auth.derived_key(secret, "w1"), "w1")


async def call(client, command, **kw):
    return await asyncio.wait_for(client.callRemote(command, **kw).asFuture(
        asyncio.get_running_loop()), 30)


async def test_core_killed_mid_call_and_restarted_settles_every_call_once(reactor, pg_dsn, tmp_path):
    conn = await asyncpg.connect(pg_dsn)
    await load_demo_data(conn, load(environ={}), out=lambda m: None)
    await conn.close()
    amp_port = free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f"""
[node]
data_dir = "{tmp_path}"
[database]
url = "{pg_dsn}"
[switch]
workers = 0
core_amp_port = {amp_port}
[core]
http_port = {free_port()}
period_seconds = {PERIOD}
call_silence_seconds = 3
sweep_interval_seconds = 0.5
""")
    proc = await start_serve(cfg, amp_port)
    try:
        w = await link(reactor, amp_port, tmp_path)
        a = await keyed_authorize(w, "kiosk-a1", "10001", "+19515550101")
        b = await keyed_authorize(w, "kiosk-a1", "10002", "+19515550101")
        assert a["allow"] and b["allow"]
        ga = await call(w, wire.Accept, call_id=a["call_id"])
        await call(w, wire.Accept, call_id=b["call_id"])
        assert ga["grant_until"] == PERIOD
        await asyncio.sleep(PERIOD)
        ga = await call(w, wire.Continue, call_id=a["call_id"], period=1, talk_seconds=PERIOD)
        assert ga["grant_until"] == 2 * PERIOD

        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        with pytest.raises(Exception):
            await call(w, wire.Continue, call_id=a["call_id"], period=2, talk_seconds=2 * PERIOD)

        proc = await start_serve(cfg, amp_port)
        w = await link(reactor, amp_port, tmp_path)
        # the worker of call a comes back and goes on; call b's worker is never heard of again
        ga = await call(w, wire.Continue, call_id=a["call_id"], period=2, talk_seconds=2 * PERIOD)
        assert ga["grant_until"] == 3 * PERIOD
        again = await call(w, wire.Continue, call_id=a["call_id"], period=2, talk_seconds=2 * PERIOD)
        assert again == ga
        e = await call(w, wire.End, call_id=a["call_id"], talk_seconds=5, disposition="completed")
        assert e["billed_seconds"] == 60       # the demo deck bills the first minute as one block

        conn = await asyncpg.connect(pg_dsn)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while loop.time() < deadline:
                lost = await conn.fetchrow("SELECT * FROM cdr WHERE call_id = $1::uuid", b["call_id"])
                if lost:
                    break
                await asyncio.sleep(0.2)
            assert lost is not None and lost["disposition"] == "worker_lost"
            assert lost["talk_seconds"] == 0           # its first period was never confirmed
            mom = await ledger.balance(conn, "prepaid:+19515550101")
            assert mom.pending == 0
            assert 20_000_000 - mom.available == e["charged_micros"] + lost["total_micros"]
            assert (await ledger.verify(conn)).ok
        finally:
            await conn.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                proc.kill()
