"""One node, assembled: database pool, the core, its AMP and HTTP listeners, the worker
supervisor, the SIP front door and the sweepers. `ics serve` and `ics demo` run this.

Start-up order matters: the schema is migrated and the house accounts exist before the AMP
listener opens, so a worker's first request never meets a half-made database; calls a crashed
core left open are picked up by the sweeper (they are closed as worker_lost unless their worker
comes back within `core.call_silence_seconds`).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import CollectorRegistry
from twisted.internet import task
from twisted.internet.endpoints import TCP4ServerEndpoint

import ledger
from ops.config import Config
from ops.db import create_pool, resolve_dsn
from ops.metrics import CoreMetrics
from ops.migrate import migrate
from switch.wire import amp_auth
from switch.processes import stale
from switch.control.core import Core
from switch.settings import CoreSettings
from switch.provisioning.directory import ensure_house_accounts
from ops.health import http_site
from switch.control.service import WorkerLinkFactory, WorkerRegistry
from switch.control.tariffs import Pricing
from switch.settings import WorkerProcessSettings

__all__ = ["Node", "start_node", "worker_process_settings"]

log = logging.getLogger("ics.node")

POOL_CLOSE_SECONDS = 2.0        # on stop, queries still running after this long are cut off


def worker_process_settings(cfg: Config) -> WorkerProcessSettings:
    """What this node's supervisor tells each media worker it starts (the worker reads no file)."""
    return WorkerProcessSettings(switch=cfg.switch, worker=cfg.worker, ivr=cfg.ivr,
                                 log_level=cfg.node.log_level, data_dir_path=str(cfg.data_dir))


@dataclass
class Node:
    cfg: Config
    reactor: object
    pool: asyncpg.Pool
    core: Core
    metrics: CoreMetrics
    workers: object                      # Supervisor, or a WorkerRegistry without one
    listening: list = field(default_factory=list)
    loops: list = field(default_factory=list)
    supervisor: object | None = None
    frontdoor: object | None = None
    tasks: list = field(default_factory=list)   # background work a mount started (sweeps)

    @property
    def amp_port(self) -> int:
        return self.listening[0].getHost().port

    @property
    def http_port(self) -> int:
        return self.listening[1].getHost().port

    async def sweep(self) -> None:
        """Close calls whose worker went silent; release expired holds; refresh gauges."""
        try:
            await self.core.close_silent_calls()
            async with self.pool.acquire() as conn:
                expired = await ledger.sweep_expired(conn)
                await self.metrics.refresh(conn, self.core.clock())
        except (asyncpg.PostgresError, OSError) as e:
            self.metrics.observe("hold_sweep", "failed")
            log.warning("sweep failed: %r", e)
        else:
            self.metrics.observe("hold_sweep", "ok", expired=expired, at=self.reactor.seconds())

    async def stop(self) -> None:
        await _close(self.pool, self.listening, self.supervisor, self.loops, self.tasks)


async def _close(pool: asyncpg.Pool, listening: list, supervisor: object | None,
                 loops: list = (), tasks: list = ()) -> None:
    """Close what a node opened, newest first: sweepers, workers, listeners, database pool.
    Also undoes a start that failed half-way (a port in use), so nothing it opened outlives it."""
    loop = asyncio.get_running_loop()
    for background in tasks:            # before the pool closes under them
        background.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sweeper in loops:
        if sweeper.running:
            sweeper.stop()
    if supervisor is not None:
        await supervisor.stop().asFuture(loop)
    for port in listening:
        d = port.stopListening()
        if d is not None:
            await d.asFuture(loop)
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
    except asyncio.TimeoutError:
        log.warning("database connections still busy after %ss; closing them",
                    POOL_CLOSE_SECONDS)
        pool.terminate()


async def start_node(cfg: Config, reactor, *, workers: int | None = None,
                     pricing: Pricing | None = None, amp_port: int | None = None,
                     http_port: int | None = None, frontdoor_port: int | None = None,
                     mount=None) -> Node:
    """Open the node: migrate, listen (AMP, HTTP, the front door), start the workers. If any
    step fails (a port in use), what the earlier steps opened is closed before the error goes on.
    """
    dsn = resolve_dsn(cfg)
    pool = await create_pool(cfg, dsn)
    opened = _Opened()
    try:
        return await _open(cfg, reactor, pool, opened, workers=workers, pricing=pricing,
                           amp_port=amp_port, http_port=http_port,
                           frontdoor_port=frontdoor_port, mount=mount)
    except BaseException:
        await _close(pool, opened.listening, opened.supervisor, tasks=opened.tasks)
        raise


@dataclass
class _Opened:
    """What a starting node has opened so far (so a failed start can close it)."""
    listening: list = field(default_factory=list)
    supervisor: object | None = None
    tasks: list = field(default_factory=list)


async def _open(cfg: Config, reactor, pool: asyncpg.Pool, opened: _Opened, *, workers, pricing,
                amp_port, http_port, frontdoor_port, mount) -> Node:
    async with pool.acquire() as conn:
        await migrate(conn)
        await ensure_house_accounts(conn, cfg.ledger.currency, shards=cfg.ledger.revenue_shards)
    metrics = CoreMetrics(currency=cfg.ledger.currency)
    metrics.watch_pool(pool)
    core = Core(pool, pricing or Pricing(), cfg.core, observer=metrics.observe)
    loop = asyncio.get_running_loop()

    n_workers = cfg.switch.workers if workers is None else workers
    # Without a supervisor, workers run elsewhere prove keys derived from the node secret file;
    # with one, only the processes it started (each with its own key) are accepted.
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    secret = amp_auth.node_secret(cfg.data_dir / amp_auth.SECRET_FILE) if n_workers == 0 else None
    links = WorkerLinkFactory(core, WorkerRegistry(secret=secret), metrics)
    amp = await TCP4ServerEndpoint(
        reactor, cfg.switch.core_amp_port if amp_port is None else amp_port,
        interface=cfg.switch.core_amp_host).listen(links).asFuture(loop)
    opened.listening.append(amp)
    supervisor = None
    if n_workers > 0:
        import dataclasses

        from switch.processes.supervisor import Supervisor
        # Workers are told the port actually bound (amp_port=0 picks a free one).
        settings = dataclasses.replace(cfg.switch, workers=n_workers,
                                       core_amp_port=amp.getHost().port)

        def worker_lost(worker_id: str, reason: str) -> None:
            log.warning("worker %s lost (%s); its calls are closed by the silence rule",
                        worker_id, reason)
        supervisor = Supervisor(reactor, settings,
                                worker_settings=dataclasses.replace(
                                    worker_process_settings(cfg), switch=settings),
                                data_dir=str(cfg.data_dir), on_worker_lost=worker_lost,
                                registry=metrics.registry)
        opened.supervisor = supervisor
        links.registry = supervisor
    registry = links.registry
    site = http_site(pool, registry, metrics)
    if mount is not None:            # a higher floor's resources (ops mounts the API, web/)
        # A mount returns the background tasks it started (or None), stopped with the node.
        opened.tasks.extend(mount(site, pool=pool, core=core, registry=registry,
                                  metrics=metrics, links=links.links) or ())
    http = await TCP4ServerEndpoint(
        reactor, cfg.core.http_port if http_port is None else http_port,
        interface=cfg.core.http_host).listen(site).asFuture(loop)
    opened.listening.append(http)
    node = Node(cfg, reactor, pool, core, metrics, registry, [amp, http], supervisor=supervisor,
                tasks=opened.tasks)

    if supervisor is not None:
        from switch.processes.frontdoor import listen
        door, udp = listen(reactor, supervisor.table, cfg.switch, registry=metrics.registry,
                           port=frontdoor_port)
        opened.listening.append(udp)
        node.frontdoor = door
        links.on_kiosk_arrived = door.kiosk_arrived     # a followed redirect is no longer pending
        node.listening.append(udp)
        # Workers an earlier run left behind (it was killed) hold our ports: end them first.
        leftovers = supervisor.stale_workers()
        if leftovers:
            await stale.clear_stale(leftovers)
        supervisor.start()

    sweeper = task.LoopingCall(lambda: asyncio.ensure_future(node.sweep()))
    sweeper.clock = reactor
    sweeper.start(cfg.core.sweep_interval_seconds, now=False)
    node.loops.append(sweeper)
    log.info("node up: AMP %s:%d, HTTP %s:%d, %d worker(s)", cfg.switch.core_amp_host,
             node.amp_port, cfg.core.http_host, node.http_port, n_workers)
    return node
