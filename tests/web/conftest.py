"""A live node for the API tests: `ics serve --workers 0` in its own process (tests/live_node.py),
one per test module, on a database of its own in the migrated state, its HTTP port chosen by the
kernel and read from the node's start-up line. Tests talk to it over HTTP and look at the same
database with asyncpg.
"""
from __future__ import annotations

import asyncpg
import pytest
import requests

from tests.live_node import node_config, serve


def _with_database(dsn: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


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
async def api_dsn(databases):
    dsn = await databases.take()
    yield dsn
    await databases.give_back(dsn)


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
    """(base URL of a live node serving the API, its AMP port, its data dir); no media workers."""
    root = tmp_path_factory.mktemp("node")
    config = node_config(root, api_dsn, '[api]\nbody_bytes_max = 1048576\n'
                                        'adjustment_approval_micros = 50000000\n')
    with serve(config, root, workers=0) as live:
        yield f"{live.url}/api/v1", live.amp_port, root


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
