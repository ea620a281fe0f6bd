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
from switch import amp_auth, stale
from switch.core import Core, CoreSettings
from switch.directory import ensure_house_accounts
from switch.service import WorkerLinkFactory, WorkerRegistry, http_site
from switch.tariffs import Pricing

__all__ = ["Node", "core_settings", "start_node"]

log = logging.getLogger("ics.node")

POOL_CLOSE_SECONDS = 2.0        # on stop, queries still running after this long are cut off


def core_settings(cfg: Config) -> CoreSettings:
    c = cfg.core
    return CoreSettings(
        period_seconds=c.period_seconds, warning_seconds=c.warning_seconds,
        hold_slack_seconds=c.hold_slack_seconds, min_call_seconds=c.min_call_seconds,
        funding_order=tuple(c.funding_order), refused_classes=frozenset(c.refused_classes),
        pin_secret_digits=c.pin_secret_digits, pin_failures_max=c.pin_failures_max,
        pin_window_seconds=c.pin_window_seconds,
        pin_kiosk_failures_max=c.pin_kiosk_failures_max,
        pin_source_failures_max=c.pin_source_failures_max,
        pin_throttle_window_seconds=c.pin_throttle_window_seconds,
        pin_session_seconds=c.pin_session_seconds, pin_sessions_max=c.pin_sessions_max,
        pin_checks_concurrent_max=c.pin_checks_concurrent_max,
        setups_concurrent_max=c.setups_concurrent_max,
        setup_wait_seconds_max=c.setup_wait_seconds_max,
        pin_remembered_max=c.pin_remembered_max,
        kiosk_source_required=c.kiosk_source_required,
        worker_silence_seconds=c.call_silence_seconds,
        group_commit_window_seconds=c.group_commit_window_seconds,
        group_commit_size_max=c.group_commit_size_max)


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
        from switch.service import as_deferred  # noqa: F401  (keeps import order obvious)
        for loop in self.loops:
            if loop.running:
                loop.stop()
        if self.supervisor is not None:
            await self.supervisor.stop().asFuture(asyncio.get_running_loop())
        for port in self.listening:
            d = port.stopListening()
            if d is not None:
                await d.asFuture(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(self.pool.close(), POOL_CLOSE_SECONDS)
        except asyncio.TimeoutError:
            log.warning("database connections still busy after %ss; closing them",
                        POOL_CLOSE_SECONDS)
            self.pool.terminate()


async def start_node(cfg: Config, reactor, *, workers: int | None = None,
                     pricing: Pricing | None = None, amp_port: int | None = None,
                     http_port: int | None = None, frontdoor_port: int | None = None,
                     config_file: str | None = None, mount=None) -> Node:
    dsn = resolve_dsn(cfg)
    pool = await create_pool(cfg, dsn)
    async with pool.acquire() as conn:
        await migrate(conn)
        await ensure_house_accounts(conn, cfg.ledger.currency, shards=cfg.ledger.revenue_shards)
    metrics = CoreMetrics(currency=cfg.ledger.currency)
    metrics.watch_pool(pool)
    core = Core(pool, pricing or Pricing(), core_settings(cfg), observer=metrics.observe)
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
    supervisor = None
    if n_workers > 0:
        import dataclasses

        from switch.supervisor import Supervisor
        # Workers are told the port actually bound (amp_port=0 picks a free one).
        settings = dataclasses.replace(cfg.switch, workers=n_workers,
                                       core_amp_port=amp.getHost().port)

        def worker_lost(worker_id: str, reason: str) -> None:
            log.warning("worker %s lost (%s); its calls are closed by the silence rule",
                        worker_id, reason)
        supervisor = Supervisor(reactor, settings, config_file=config_file,
                                data_dir=str(cfg.data_dir), on_worker_lost=worker_lost,
                                registry=metrics.registry)
        links.registry = supervisor
    registry = links.registry
    site = http_site(pool, registry, metrics)
    if mount is not None:            # a higher floor's resources (ops mounts the API, web/)
        mount(site, pool=pool, core=core, registry=registry, metrics=metrics, links=links.links)
    http = await TCP4ServerEndpoint(
        reactor, cfg.core.http_port if http_port is None else http_port,
        interface=cfg.core.http_host).listen(site).asFuture(loop)
    node = Node(cfg, reactor, pool, core, metrics, registry, [amp, http], supervisor=supervisor)

    if supervisor is not None:
        from switch.frontdoor import listen
        door, udp = listen(reactor, supervisor.table, cfg.switch, registry=metrics.registry,
                           port=frontdoor_port)
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
