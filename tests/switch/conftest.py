"""Switch test fixtures: the running Twisted reactor, shared by every switch test that does I/O.

How the reactor and pytest-asyncio share one loop (decided once, for the whole suite):
``tests/conftest.py`` installs Twisted's ``AsyncioSelectorReactor`` on ``SESSION_LOOP`` while it
is imported, before any test module can import Twisted (``twisted.protocols.sip`` installs the
default reactor as a side effect of being imported), and its ``pytest_asyncio_loop_factories``
hook makes that loop pytest-asyncio's one session loop. So Twisted and asyncio code run together
in every async test: a ``callLater``, a UDP datagram or a child process exit fires while the test
awaits.

Fixtures and helpers here:
- ``reactor``: the installed reactor, started once per session with its signal handlers (SIGCHLD
  reaps worker processes; SIGINT is handed back to pytest). Code under test takes it by injection;
  nothing here reads the global reactor elsewhere.
- ``settle``: a function; ``await settle(d, timeout)`` is the result of Twisted Deferred ``d``.
- ``eventually``: a function; ``await eventually(predicate, timeout)`` waits until a condition on
  reactor-driven state holds and returns its value (fails with the last value on timeout).

Tests must keep ``loop_scope`` at session (the default in pyproject.toml): a narrower scope would
have pytest-asyncio close the shared loop.
"""
from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
async def reactor():
    """The Twisted reactor on the session's asyncio loop, running (startup fired, SIGCHLD on)."""
    from twisted.internet import asyncioreactor
    from twisted.internet import reactor as installed

    if not isinstance(installed, asyncioreactor.AsyncioSelectorReactor):
        raise RuntimeError(f"tests need the asyncio reactor; {type(installed).__name__} was "
                           "installed first (see tests/conftest.py)")
    if installed._asyncioEventloop is not asyncio.get_running_loop():
        raise RuntimeError("the reactor wraps another loop than the test session's")
    if not installed.running:
        sigint = signal.getsignal(signal.SIGINT)
        installed.startRunning(installSignalHandlers=True)
        signal.signal(signal.SIGINT, sigint)  # Ctrl-C stops pytest, not just the reactor
    yield installed
    # The reactor never stops inside the session, so stop its thread pool (started by e.g. the
    # metrics resource's deferToThread) ourselves: its non-daemon threads would hold the
    # interpreter open at exit.
    if getattr(installed, "threadpool", None) is not None:
        installed._stopThreadPool()


async def _settle(d: Any, timeout: float = 10.0) -> Any:
    """The result of Deferred `d`, awaited on the running loop (raises on failure or timeout)."""
    return await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), timeout)


async def _eventually(predicate: Callable[[], Any], timeout: float = 10.0,
                      interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy; fail with its last value on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {timeout}s: {value!r}")
        await asyncio.sleep(interval)


@pytest.fixture
def settle(reactor):
    return _settle


@pytest.fixture
def eventually(reactor):
    return _eventually
