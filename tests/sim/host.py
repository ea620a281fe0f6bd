"""The core as a process the simulator can kill: one `switch.control.core.Core` after another on the same
database, each with its own connections, tariff cache, AMP listener and node sweep."""
from __future__ import annotations

import asyncio

import asyncpg
from twisted.internet.endpoints import TCP4ServerEndpoint

from ops.metrics import CoreMetrics
from ops.node import Node
from switch.control.service import WorkerLinkFactory, WorkerRegistry
from switch.control.tariffs import Pricing

from .clock import CORE_SEARCH_PATH
from .storage import FaultyPool

__all__ = ["CoreHost", "check_clock", "wait"]


class CoreHost:
    """One core process after another on the same database: start, crash, start again.
    `sim` gives the database, clock, scenario settings and the core class to run."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.up = False
        self.pool: FaultyPool | None = None
        self.core = None
        self.node: Node | None = None
        self.port = None
        self.server_links: list = []
        self.registry = None
        self._open: dict = {}
        self.incarnation = 0

    async def start(self) -> None:
        sim = self.sim
        raw = await asyncpg.create_pool(sim.dsn, min_size=1, max_size=4,
                                        server_settings={"search_path": CORE_SEARCH_PATH,
                                                         "synchronous_commit": "off"})
        self.pool = FaultyPool(raw)
        self.pool.out = sim.db_out
        self.core = sim.core_class(self.pool, Pricing(monotonic=sim.clock.monotonic),
                                   sim.scenario.settings, clock=sim.clock)
        registry = self.registry = WorkerRegistry(clock=sim.clock.monotonic)
        factory = WorkerLinkFactory(self.core, registry)
        build = factory.buildProtocol
        links = self.server_links = []
        self._open = {}

        def build_and_keep(addr):
            p = build(addr)
            links.append(p)
            p.sim_closed = asyncio.get_running_loop().create_future()
            lost = p.connectionLost

            def connection_lost(reason, p=p, lost=lost):
                if not p.sim_closed.done():
                    p.sim_closed.set_result(None)
                return lost(reason)
            p.connectionLost = connection_lost
            return p
        factory.buildProtocol = build_and_keep
        self.port = await wait(TCP4ServerEndpoint(sim.reactor, 0, interface="127.0.0.1")
                                .listen(factory))
        self.node = Node(None, sim.reactor, self.pool, self.core, CoreMetrics(), registry)
        self.incarnation += 1
        self.up = True

    def greeted(self, worker_id: str) -> None:
        """The newest server-side link is this worker's (its Hello was just answered)."""
        self._open[worker_id] = self.server_links[-1]

    async def closed(self, worker_id: str) -> None:
        """Wait until the core has seen this worker's previous connection close."""
        old = self._open.pop(worker_id, None)
        if old is not None and old.transport is not None:
            old.transport.loseConnection()
            await asyncio.wait_for(asyncio.shield(old.sim_closed), 10)

    async def stop(self, *, crash: bool) -> None:
        self.up = False
        if crash:
            self.pool.crashed = True
        for p in self.server_links:
            if p.transport is not None:
                p.transport.abortConnection()
        await wait(self.port.stopListening())
        if crash:
            self.pool.terminate()
        else:
            await self.pool.close()


async def check_clock(pool: FaultyPool) -> None:
    """Refuse to run if the core's connections would not read the simulated clock."""
    async with pool.acquire() as conn:
        db, sim = await conn.fetchval("SELECT now()"), await conn.fetchval("SELECT simclock.now()")
    if db != sim:
        raise RuntimeError(f"the core's now() is {db}, not the simulated {sim}: the search path "
                           f"override did not take")


async def wait(d, timeout: float = 30.0):
    return await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), timeout)
