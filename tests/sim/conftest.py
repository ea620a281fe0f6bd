"""The simulator's tests need the running Twisted reactor on the session loop (as the switch
tests do: see tests/switch/conftest.py for how the two share one loop)."""
from __future__ import annotations

import asyncio
import signal

import pytest


@pytest.fixture(scope="session")
async def reactor():
    from twisted.internet import asyncioreactor
    from twisted.internet import reactor as installed

    if not isinstance(installed, asyncioreactor.AsyncioSelectorReactor):
        raise RuntimeError("the simulator needs the asyncio reactor (see tests/conftest.py)")
    if installed._asyncioEventloop is not asyncio.get_running_loop():
        raise RuntimeError("the reactor wraps another loop than the test session's")
    if not installed.running:
        sigint = signal.getsignal(signal.SIGINT)
        installed.startRunning(installSignalHandlers=True)
        signal.signal(signal.SIGINT, sigint)
    yield installed
    if getattr(installed, "threadpool", None) is not None:
        installed._stopThreadPool()
