"""The observability tests' shared live node and Prometheus (see observe_rig.py)."""
import pytest

from observe_rig import live_node, observe_dsn, prometheus  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
async def reactor():
    """The Twisted reactor on the session's loop, running (as tests/switch/conftest.py has it)."""
    import asyncio
    import signal

    from twisted.internet import reactor as installed
    if installed._asyncioEventloop is not asyncio.get_running_loop():
        raise RuntimeError("the reactor wraps another loop than the test session's")
    if not installed.running:
        sigint = signal.getsignal(signal.SIGINT)
        installed.startRunning(installSignalHandlers=True)
        signal.signal(signal.SIGINT, sigint)
    yield installed
    if getattr(installed, "threadpool", None) is not None:
        installed._stopThreadPool()
