"""Fixtures of the hostile tests against a real media worker (tests/security/test_worker_*.py,
which import them by name): the reactor fixtures of tests/switch, a scripted core, a worker
process, and raw UDP peers (tests/security/rawsip.py) playing kiosks, attackers and targets."""
from __future__ import annotations

import pytest

from tests.security.rawsip import RawPeer
from tests.switch.conftest import eventually, reactor, settle  # noqa: F401  (fixtures)
from tests.switch.fakecore import FakeCore, Script, WorkerProcess

WAIT = 20.0                       # a generous bound for anything on a loaded 2-core machine


@pytest.fixture
async def start_worker(reactor, tmp_path, eventually):
    """Start a scripted core and a worker process linked to it; stop both afterwards and check
    the worker exited cleanly (a crash shows up as a non-zero or signal status)."""
    started = []

    async def start(script: Script | None = None, **overrides):
        core = FakeCore(reactor, script or Script())
        port = core.listen()
        worker = WorkerProcess(tmp_path, port, overrides=overrides)
        started.append((core, worker))
        try:
            await eventually(lambda: core.names("Hello") or worker.proc.poll() is not None, WAIT)
        except AssertionError:
            raise AssertionError(f"worker never said Hello:\n{worker.output}") from None
        assert worker.proc.poll() is None, f"worker exited:\n{worker.output}"
        worker.pid_at_start = worker.proc.pid
        return core, worker

    yield start
    for core, worker in started:
        code = await worker.stop()
        core.close()
        assert code == 0, f"worker exit status {code}:\n{worker.output[-4000:]}"


@pytest.fixture
async def peers():
    """`await peers()` opens a raw UDP SIP peer on loopback; all are closed afterwards."""
    opened: list[RawPeer] = []

    async def open_peer() -> RawPeer:
        peer = await RawPeer.open()
        opened.append(peer)
        return peer

    yield open_peer
    for peer in opened:
        peer.close()
