"""Faults: the client killed mid-batch, the PostgreSQL server killed mid-batch and restarted.
Each batch is all-or-nothing, a retry applies what is missing once, and `verify` passes."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import asyncpg

from ledger import TransferResult as R, balance, create_accounts, submit, verify
from ledger_calls import accounts, call_batch, funding
from ops.embedded import EmbeddedError, EmbeddedServer
from ops.migrate import migrate

FAMILIES = 20
CALLS_PER_BATCH = 400          # 1600 transfers: long enough for a kill to land inside one
RESTART_TIMEOUT_SECONDS = 60


async def _assert_each_batch_all_or_nothing(conn, run: str, batches: int) -> list[int]:
    applied = []
    for b in range(batches):
        ids = [t.id for t in call_batch(run, b, CALLS_PER_BATCH, FAMILIES)]
        n = await conn.fetchval("SELECT count(*) FROM ledger_transfer WHERE id = ANY($1)", ids)
        assert n in (0, len(ids)), f"batch {b} is partly applied: {n} of {len(ids)}"
        applied.append(b) if n else None
    return applied


async def _retry_all_and_check(conn, run: str, batches: int) -> None:
    """Resubmitting every batch completes the ledger: each batch's effect lands exactly once."""
    for b in range(batches):
        results = await submit(conn, call_batch(run, b, CALLS_PER_BATCH, FAMILIES))
        assert {r.result for r in results} <= {R.OK, R.EXISTS}
    assert await conn.fetchval("SELECT count(*) FROM ledger_transfer") \
        == FAMILIES + batches * CALLS_PER_BATCH * 4
    rev = await balance(conn, "rev")
    assert rev.credits_posted == batches * CALLS_PER_BATCH * 740
    assert (await verify(conn)).ok


CLIENT = textwrap.dedent("""
    import asyncio, sys
    import asyncpg
    sys.path.insert(0, sys.argv[3])
    from ledger import submit
    from ledger_calls import call_batch

    async def main(dsn, run):
        conn = await asyncpg.connect(dsn)
        b = 0
        while True:
            print("start", b, flush=True)
            await submit(conn, call_batch(run, b, %d, %d))
            print("done", b, flush=True)
            b += 1

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""" % (CALLS_PER_BATCH, FAMILIES))


async def test_killing_the_client_mid_batch_leaves_each_batch_all_or_nothing(conn, pg_dsn):
    run = "client-kill"
    await create_accounts(conn, accounts(FAMILIES))
    await submit(conn, funding(run, FAMILIES, 10**12))
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, pg_dsn, run, str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    started = 0
    try:
        for line in proc.stdout:
            if line.startswith("start"):
                started = int(line.split()[1]) + 1
                if started == 4:       # three batches done, the fourth in flight
                    await asyncio.sleep(0.005)
                    break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert started == 4, "the client never got going"
    await asyncio.sleep(0.5)   # let the server notice the dead client and finish or abort its batch
    applied = await _assert_each_batch_all_or_nothing(conn, run, started + 1)
    assert applied[:3] == [0, 1, 2]
    assert (await verify(conn)).ok
    await _retry_all_and_check(conn, run, started)


def _forget_dead_postmaster(server: EmbeddedServer) -> None:
    """Where nothing reaps orphans (this machine's init), the killed postmaster stays a zombie and
    `pg_ctl status` still calls it running; its lock file must go for the restart to happen."""
    pid_file = server.pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, IndexError):
        return
    if state == "Z":
        pid_file.unlink()


async def _restart(server: EmbeddedServer) -> None:
    # Orphaned backends hold the old shared memory for a moment after the postmaster dies.
    deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
    while True:
        try:
            _forget_dead_postmaster(server)
            await asyncio.to_thread(server.start)
            return
        except EmbeddedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_killing_the_server_mid_batch_then_restarting_leaves_each_batch_all_or_nothing():
    run = "server-kill"
    # Outside pytest's basetemp, which a concurrent pytest session may rotate away.
    root = Path(tempfile.mkdtemp(prefix="ics-test-kill-"))
    server = EmbeddedServer(root, fsync=True)
    dsn = await asyncio.to_thread(server.start)
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await create_accounts(conn, accounts(FAMILIES))
        await submit(conn, funding(run, FAMILIES, 10**12))
        in_flight = asyncio.Event()
        sent = 0

        async def client():
            nonlocal sent
            while True:
                batch = call_batch(run, sent, CALLS_PER_BATCH, FAMILIES)
                sent += 1
                if sent == 3:
                    in_flight.set()
                await submit(conn, batch)

        task = asyncio.create_task(client())
        await asyncio.wait_for(in_flight.wait(), 60)
        await asyncio.sleep(0.005)
        server.kill()
        try:
            await asyncio.wait_for(task, 30)
            raise AssertionError("the client kept going with its server dead")
        except (asyncpg.PostgresConnectionError, ConnectionError, asyncpg.InterfaceError,
                asyncpg.InternalClientError, asyncpg.PostgresError, OSError):
            pass   # how the loss shows depends on where in the exchange the server died
        conn.terminate()

        await _restart(server)
        conn = await asyncpg.connect(dsn)
        try:
            applied = await _assert_each_batch_all_or_nothing(conn, run, sent)
            assert applied[:2] == [0, 1]
            assert (await verify(conn)).ok
            await _retry_all_and_check(conn, run, sent)
        finally:
            await conn.close()
    finally:
        _forget_dead_postmaster(server)
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(root, ignore_errors=True)
