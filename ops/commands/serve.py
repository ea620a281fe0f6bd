"""`ics serve`: run this node (core, workers, front door) until interrupted."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys


def register(sub) -> None:
    from ops.cli import count, runs
    p = runs(sub.add_parser("serve", help="run the node: core, media workers, SIP front door, "
                                          "HTTP API; until SIGINT or SIGTERM"))
    p.add_argument("--workers", type=count(0), metavar="N", help="override switch.workers")
    p.set_defaults(func=_serve)


def install_reactor():
    """Twisted's asyncio reactor on a fresh loop, installed before anything imports the reactor."""
    from twisted.internet import asyncioreactor
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor, loop


def release_reactor(reactor) -> None:
    """The reactor is driven through asyncio and never `run()`, so nothing stops its thread pool
    (the metrics resource renders in a thread); its non-daemon threads would keep the process."""
    if getattr(reactor, "threadpool", None) is not None:
        reactor._stopThreadPool()


def setup_logging(cfg) -> None:
    """stdlib logging, structlog and Twisted's logger to stderr as `node.log_format` says."""
    from switch.processes import logs
    logs.configure(cfg.node.log_format, cfg.node.log_level, stream=sys.stderr)


# Beyond the workers' own TERM-then-KILL time: closing listeners and the database pool.
STOP_SLACK_SECONDS = 5.0


def stop_bound(cfg) -> float:
    """The longest `ics serve` takes to exit after SIGTERM."""
    from switch.processes.supervisor import STOP_REAP_SECONDS
    return cfg.switch.worker_stop_seconds + STOP_REAP_SECONDS + STOP_SLACK_SECONDS


def _kill_workers(node) -> None:
    sup = node.supervisor
    if sup is None:
        return
    for spec in sup.specs:
        pid = sup.pid(spec.worker_id)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _exit_now(sig) -> None:
    sys.stderr.flush()
    os._exit(128 + sig if sig else 1)


def _embedded_to_stop(cfg):
    """The embedded PostgreSQL this `ics serve` is about to start (and so stops when it exits),
    or None: a configured DSN, or an embedded server already running (`ics db start`) stays."""
    if cfg.database.url:
        return None
    from ops.db import embedded_server
    server = embedded_server(cfg)
    return None if server.running() else server


def _stop_embedded(server) -> None:
    from ops.embedded import EmbeddedError
    try:
        if server.running():
            server.stop()
    except EmbeddedError as e:      # the command's own outcome (its exit code) stands
        logging.getLogger("ics.serve").warning("could not stop the embedded database: %s", e)


def _serve(args, ctx) -> int:
    cfg = ctx.cfg
    setup_logging(cfg)
    started_db = _embedded_to_stop(cfg)
    reactor, loop = install_reactor()
    from ops.api import api_mount
    from ops.node import start_node
    stopping = asyncio.Event()

    async def run():
        # The database first, so that an unreachable one is its own one-line error (exit 4),
        # told apart from a port in use (exit 6) while the listeners open.
        conn = await ctx.connect(migrated=False)
        await conn.close()
        reactor.startRunning(installSignalHandlers=True)
        node = await start_node(cfg, reactor, workers=args.workers, mount=api_mount(cfg))
        from switch.control import collector
        collector.tune()            # the started heap leaves the collector's walks
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        from switch.processes import logs
        logs.announce("ics.serve", f"ics: serving; AMP :{node.amp_port}, HTTP :{node.http_port} "
                      "(API /api/v1)", amp_port=node.amp_port, http_port=node.http_port)
        await stopping.wait()
        # A second signal, or a stop that overruns its bound, ends the process at once: `ics serve`
        # always exits within stop_bound seconds of SIGTERM (workers got TERM, then KILL).
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _exit_now, sig)
        bound = stop_bound(cfg)
        try:
            await asyncio.wait_for(node.stop(), bound)
        except asyncio.TimeoutError:
            logging.getLogger("ics.serve").error("stop took longer than %.1fs; exiting", bound)
            _kill_workers(node)
            _exit_now(None)
    try:
        loop.run_until_complete(run())
    finally:
        # Whether it stopped on a signal or failed to start (a port in use: exit 6), what it
        # opened is closed: start_node closes its own half-open parts; the database it started
        # is stopped here.
        release_reactor(reactor)
        if started_db is not None:
            _stop_embedded(started_db)
    return 0
