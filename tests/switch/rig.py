"""A core under test: the demo directory on a fresh database, a test tariff, an injected clock,
and a real AMP connection to it (the worker's side is the test)."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone

import asyncpg
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.protocols import amp

import ledger
from rating.tariff import Band, Line, PaymentType, RateGroup, Surcharge, SurchargeKind, Tariff, TariffVersion
from switch.core import Core, CoreSettings
from switch.seed import DEMO_DIR, load_directory
from switch.service import WorkerLinkFactory, WorkerRegistry
from switch.tariffs import Pricing

RATE = 60_000              # 0.06 per minute
TAX_PPM = 50_000           # 5 %


def flat_tariff(facility_id: str = "riverside", rate: int = RATE, increment: int = 60) -> Tariff:
    lines = tuple(
        Line(name=f"{dest}", destination=dest, payment=PaymentType.ANY, band=Band(),
             groups=(RateGroup(0, rate, 60, increment),))
        for dest in ("local", "intrastate", "interstate", "international"))
    version = TariffVersion(1, datetime(2020, 1, 1, tzinfo=timezone.utc), lines,
                            (Surcharge(SurchargeKind.TAX, "state tax", percent_ppm=TAX_PPM),),
                            facility_id=facility_id)
    return Tariff(facility_id, "America/Los_Angeles", (version,))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclasses.dataclass
class Rig:
    pool: asyncpg.Pool
    core: Core
    clock: Clock
    client: amp.AMP
    port: object

    async def call(self, command, **kw):
        return await wait(self.client.callRemote(command, **kw))

    async def verify(self):
        async with self.pool.acquire() as c:
            report = await ledger.verify(c)
        assert report.ok, report
        return report

    async def balance(self, account: str) -> ledger.Balance:
        async with self.pool.acquire() as c:
            return await ledger.balance(c, account)


async def wait(d, timeout: float = 30):
    return await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), timeout)


# Wednesday 2026-11-25 10:00 in Los Angeles
WEDNESDAY_10AM = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)


async def make_rig(reactor, pg_dsn, *, tariff: Tariff | None = None, settings=None,
                   now: datetime = WEDNESDAY_10AM) -> Rig:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await load_directory(conn, DEMO_DIR / "directory.toml")
    tariff = tariff or flat_tariff()

    async def load_tariff(conn, facility_id):
        return tariff
    clock = Clock(now)
    core = Core(pool, Pricing(load_tariff), settings or CoreSettings(), clock=clock)
    port = await wait(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        WorkerLinkFactory(core, WorkerRegistry())))
    client = await wait(connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), amp.AMP()))
    return Rig(pool, core, clock, client, port)


async def close_rig(rig: Rig) -> None:
    rig.client.transport.loseConnection()
    await wait(rig.port.stopListening())
    await rig.pool.close()
