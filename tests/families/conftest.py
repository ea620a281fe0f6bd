"""Fixtures of the families' domain tests: a pool on this test's database, facilities under each
regulatory profile with an inmate each, settings, fee schedules, the test provider and a clock."""
from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from families.payments import Fees
from families.providers import TestProvider
from families.settings import FamilySettings
from switch.provisioning import directory

T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.timezone.utc)
PROFILES = ("fcc-2013", "fcc-2021", "fcc-2024", "fcc-2025")


class Clock:
    """An injected clock: tests move it; nothing waits."""

    def __init__(self, at: dt.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, **kw) -> dt.datetime:
        self.at += dt.timedelta(**kw)
        return self.at


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def pool(pg_dsn):
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
def settings():
    return FamilySettings()


@pytest.fixture
def fees(settings):
    return Fees(settings)


@pytest.fixture
def provider(pool, clock):
    return TestProvider(pool, clock)


async def add_facility(conn, facility_id: str, profile: str) -> None:
    await conn.execute(
        "INSERT INTO facility (id, name, state, time_zone, adp, kind, profile) VALUES "
        "($1, $2, 'NY', 'America/New_York', 500, 'jail', $3) ON CONFLICT DO NOTHING",
        facility_id, facility_id.title(), profile)


@pytest.fixture
async def world(pool):
    """One facility per profile (id = the profile's name without the dash), one inmate in each
    (inmate 1000 + index), and the house accounts."""
    async with pool.acquire() as conn:
        await directory.ensure_house_accounts(conn, "USD")
        for i, profile in enumerate(PROFILES):
            fid = profile.replace("-", "")
            await add_facility(conn, fid, profile)
            await directory.add_inmate(conn, str(1000 + i), f"Inmate {profile}", fid, "1234")
    return {p: (p.replace("-", ""), str(1000 + i)) for i, p in enumerate(PROFILES)}


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
