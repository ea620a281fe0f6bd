"""A core under test: the demo directory on a fresh database, a test tariff, an injected clock,
and a real AMP connection to it (the worker's side is the test), authenticated as worker
`WORKER_ID`. `Rig.call(Authorize, ...)` keys the demo inmate's PIN first, as a worker would, unless
the test passes `pin_session` itself (None: no session)."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tomllib
from datetime import datetime, timedelta, timezone

import asyncpg
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.protocols import amp

import ledger
from rating.tariff import Band, Line, PaymentType, RateGroup, Surcharge, SurchargeKind, Tariff, TariffVersion
from switch.wire import amp_auth
from switch.wire import protocol as wire
from switch.control.core import Core
from switch.settings import CoreSettings
from ops.seed import DEMO_DIR, load_directory
from switch.control.service import WorkerLinkFactory, WorkerRegistry
from switch.control.tariffs import Pricing

RATE = 60_000              # 0.06 per minute
WORKER_ID = "w1"
WORKER_SIP_PORT = 5999
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
    registry: WorkerRegistry | None = None

    async def call(self, command, **kw):
        if command is wire.Authorize and "pin_session" not in kw:
            kw["pin_session"] = await self.pin_session(kw["kiosk"], kw["inmate_id"],
                                                       kw.get("source_ip"))
        return await wait(self.client.callRemote(command, **kw))

    async def pin_session(self, kiosk: str, inmate_id: str, source_ip: str | None = None):
        """The token of a CheckPin with the demo inmate's PIN (None if it is refused)."""
        pin = DEMO_PINS.get(inmate_id)
        if pin is None:
            return None
        try:
            a = await wait(self.client.callRemote(wire.CheckPin, kiosk=kiosk, pin=inmate_id + pin,
                                                  source_ip=source_ip))
        except wire.KioskUnknown:
            return None
        return a.get("pin_session")

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


DEMO_PINS = {i["id"]: i["pin"] for i in
             tomllib.loads((DEMO_DIR / "directory.toml").read_text()).get("inmate", [])}


async def authenticated_client(reactor, port: int, key: bytes, worker_id: str = WORKER_ID,
                               sip_port: int = WORKER_SIP_PORT) -> amp.AMP:
    """An AMP connection to a core that said Challenge and Hello as `worker_id` with `key`."""
    client = await wait(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                        amp.AMP()))
    await wait(amp_auth.say_hello(client.callRemote, key, worker_id=worker_id, capacity=2,
                                  sip_port=sip_port, pid=os.getpid()))
    return client


async def keyed_authorize(client: amp.AMP, kiosk: str, inmate_id: str, number: str,
                          source_ip: str | None = "127.0.0.1") -> dict:
    """What a worker does: CheckPin with the demo inmate's PIN, then Authorize with its token
    (from the kiosk's address as the worker saw it: loopback, where the demo kiosks are)."""
    pin = await wait(client.callRemote(wire.CheckPin, kiosk=kiosk,
                                       pin=inmate_id + DEMO_PINS[inmate_id], source_ip=source_ip))
    assert pin["ok"], pin
    return await wait(client.callRemote(wire.Authorize, kiosk=kiosk, inmate_id=inmate_id,
                                        number=number, source_ip=source_ip,
                                        pin_session=pin["pin_session"]))


# Wednesday 2026-11-25 10:00 in Los Angeles
WEDNESDAY_10AM = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)


@contextlib.asynccontextmanager
async def another_core(pg_dsn, clock):
    """A second core on the same database (another node's), pricing by the second, without
    group commit: it moves a call behind the back of the core under test."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    tariff = flat_tariff(increment=1)

    async def load_tariff(conn, facility_id):
        return tariff
    try:
        yield Core(pool, Pricing(load_tariff), CoreSettings(group_commit_window_seconds=0),
                   clock=clock)
    finally:
        await pool.close()


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
    registry = WorkerRegistry()
    port = await wait(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        WorkerLinkFactory(core, registry)))
    client = await authenticated_client(reactor, port.getHost().port,
                                        registry.key_for(WORKER_ID))
    return Rig(pool, core, clock, client, port, registry)


async def close_rig(rig: Rig) -> None:
    rig.client.transport.loseConnection()
    await wait(rig.port.stopListening())
    await rig.pool.close()
