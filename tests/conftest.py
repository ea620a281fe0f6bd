"""Shared fixtures: one real PostgreSQL per test session, a database in the migrated state per test.

With ``ICS_TEST_DATABASE_URL`` set, tests use that server (they create and drop databases named
``ics_t_*`` on it); otherwise an embedded server runs in a temporary directory with fsync off.
The migrations run once per session, into a template; each test gets a database cloned from it,
or one a previous test used and that was reset to the template's state (tests/databases.py), so
tests never see each other's money and need no cleanup. Every other ``ICS_*`` variable is removed
from the environment first.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Twisted's reactor is process-global and must wrap the session's asyncio loop. Install it first,
# before anything imports Twisted (importing twisted.protocols.sip installs the default reactor),
# and hand pytest-asyncio that same loop for the whole session. Tests that need the running
# reactor take the `reactor` fixture (tests/switch/conftest.py).
import asyncio

# A developer's environment must never steer a test: with ICS_DATABASE_URL exported, every
# in-process `load()` and every `ics` subprocess would use *their* database instead of the
# test's (the environment overrides a config file). Cleared once, here, before anything reads it;
# tests that want a variable set it themselves. ICS_TEST_DATABASE_URL is the tests' own.
KEPT_ICS_VARIABLES = ("ICS_TEST_DATABASE_URL", "ICS_TEST_FRESH_DATABASES", "ICS_TRACEBACK")
for _name in [n for n in os.environ if n.startswith("ICS_") and n not in KEPT_ICS_VARIABLES]:
    del os.environ[_name]

from twisted.internet import asyncioreactor

SESSION_LOOP = asyncio.new_event_loop()
asyncioreactor.install(SESSION_LOOP)

import asyncpg
import pytest

from ops.config import load
from ops.embedded import EmbeddedServer
from ops.migrate import migrate
from tests.databases import TEMPLATE_DB, Databases


def _session_loop() -> asyncio.AbstractEventLoop:
    return SESSION_LOOP


def pytest_asyncio_loop_factories(config, item):
    """Every test runs on SESSION_LOOP, the loop the Twisted reactor wraps."""
    return {"asyncio+twisted": _session_loop}


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """Admin DSN of the test PostgreSQL server, plus the embedded server object when embedded."""
    dsn = os.environ.get("ICS_TEST_DATABASE_URL")
    if dsn:
        yield dsn, None
        return
    # Not under pytest's basetemp: another pytest session starting meanwhile may rotate that away
    # (its lock is gone by then), and PostgreSQL shuts down when its data directory disappears.
    import shutil, tempfile
    root = tempfile.mkdtemp(prefix="ics-test-pg-")
    server = EmbeddedServer(Path(root), fsync=False)
    dsn = server.start()
    yield dsn, server
    server.destroy()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg_template(pg_server):
    admin_dsn, _ = pg_server
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(admin_dsn, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return admin_dsn


@pytest.fixture(scope="session")
async def databases(pg_template):
    """Databases in the template's state: `await databases.take()` a DSN, `give_back` it after."""
    # ICS_TEST_FRESH_DATABASES=1: a fresh clone for every test (to rule the reuse out).
    pool = Databases(pg_template, recycling=os.environ.get("ICS_TEST_FRESH_DATABASES") != "1")
    await pool.learn_template()
    yield pool
    await pool.drop_all()


@pytest.fixture
async def pg_dsn(databases):
    """DSN of a database with every migration applied and nothing else, for this test alone."""
    dsn = await databases.take()
    yield dsn
    await databases.give_back(dsn)


@pytest.fixture
async def conn(pg_dsn):
    c = await asyncpg.connect(pg_dsn)
    yield c
    await c.close()


@pytest.fixture
def cfg(tmp_path, pg_dsn):
    """A Config pointing at this test's database, with its data directory in tmp_path."""
    return load(overrides={"database": {"url": pg_dsn}, "node": {"data_dir": str(tmp_path)}},
                environ={})
