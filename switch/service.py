"""The core's network face: the AMP listener for media workers and the HTTP listener for
/metrics and /health, run on Twisted's asyncio reactor next to asyncpg.

Each AMP responder hands the request to `switch.core.Core` (a coroutine) and maps the core's
domain errors onto the protocol's declared errors; anything that means "the database is not
there" becomes CoreUnavailable, on which the worker applies its fail-safe rule.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import asyncpg
from twisted.internet import defer, protocol
from twisted.protocols import amp
from twisted.web import resource, server

from switch import core as core_mod
from switch import protocol as wire

__all__ = ["WorkerLink", "WorkerLinkFactory", "WorkerRegistry", "HealthResource", "http_site",
           "as_deferred"]

log = logging.getLogger("ics.core")

_ERRORS = {
    core_mod.UnknownCall: wire.UnknownCall,
    core_mod.CallAlreadyEnded: wire.CallAlreadyEnded,
    core_mod.InsufficientFunds: wire.InsufficientFunds,
    core_mod.KioskUnknown: wire.KioskUnknown,
    core_mod.BadRequest: wire.BadRequest,
}
_UNAVAILABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
                asyncio.TimeoutError, asyncpg.exceptions.CannotConnectNowError)


def as_deferred(coro) -> defer.Deferred:
    return defer.Deferred.fromFuture(asyncio.ensure_future(coro))


class WorkerRegistry:
    """Workers known to a core without a supervisor (tests, externally managed workers).
    The supervisor (`switch.supervisor.Supervisor`) offers the same `hello` and `heartbeat`."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.workers: dict[str, dict] = {}

    def hello(self, worker_id: str, capacity: int, sip_port: int, pid: int):
        self.workers[worker_id] = {"capacity": capacity, "sip_port": sip_port, "pid": pid,
                                   "active_calls": [], "last_seen": self.clock()}
        return self.workers[worker_id]

    def heartbeat(self, worker_id: str, active_calls):
        w = self.workers.setdefault(worker_id, {"capacity": 0, "sip_port": 0, "pid": 0})
        w.update(active_calls=list(active_calls), last_seen=self.clock())
        return w


class WorkerLink(amp.AMP):
    """One media worker's connection to the core."""

    def __init__(self, core: core_mod.Core, registry: WorkerRegistry, metrics=None) -> None:
        super().__init__()
        self.core = core
        self.registry = registry
        self.metrics = metrics
        self.worker_id: str | None = None

    def _call(self, command: str, coro, shape) -> defer.Deferred:
        started = time.perf_counter()

        async def run():
            try:
                return shape(await coro)
            except tuple(_ERRORS) as e:
                raise _ERRORS[type(e)](str(e)) from e
            except _UNAVAILABLE as e:
                log.warning("database unavailable during %s: %r", command, e)
                raise wire.CoreUnavailable(str(e)) from e
            finally:
                if self.metrics is not None:
                    self.metrics.request_seconds.labels(command).observe(
                        time.perf_counter() - started)
        return as_deferred(run())

    @wire.Hello.responder
    def hello(self, worker_id, capacity, sip_port, pid):
        self.worker_id = worker_id
        try:
            self.registry.hello(worker_id, capacity, sip_port, pid)
        except Exception as e:       # the supervisor refuses a malformed or unexpected Hello
            raise wire.BadRequest(str(e)) from e
        log.info("worker %s connected: capacity %d calls, SIP port %d", worker_id, capacity,
                 sip_port)
        return {"node": "core"}

    @wire.Heartbeat.responder
    def heartbeat(self, worker_id, active_calls):
        try:
            self.registry.heartbeat(worker_id, active_calls)
        except Exception as e:
            raise wire.BadRequest(str(e)) from e
        return self._call("heartbeat", self.core.touch(active_calls),
                          lambda unknown: {"unknown_calls": unknown})

    @wire.CheckPin.responder
    def check_pin(self, kiosk, pin, source=None, source_ip=None):
        return self._call("check_pin", self.core.check_pin(kiosk, pin, source),
                          lambda a: {"ok": a.ok, "locked": a.locked,
                                     "attempts_left": a.attempts_left, "inmate_id": a.inmate_id,
                                     "language": a.language})

    @wire.Authorize.responder
    def authorize(self, kiosk, inmate_id, number, worker_id=None, source_ip=None,
                  pin_session=None):
        def shape(a: core_mod.AuthAnswer):
            out = {k: v for k, v in a.__dict__.items() if v is not None}
            out["trunks"] = list(a.trunks)
            return out
        return self._call("authorize",
                          self.core.authorize(kiosk, inmate_id, number, worker_id or self.worker_id),
                          shape)

    @staticmethod
    def _grant(g: core_mod.GrantAnswer) -> dict:
        out = {"grant_until": g.grant_until, "last": g.last}
        if g.warn_at is not None:
            out["warn_at"] = g.warn_at
        return out

    @wire.Accept.responder
    def accept(self, call_id):
        return self._call("accept", self.core.accept(call_id), self._grant)

    @wire.Continue.responder
    def continue_(self, call_id, period, talk_seconds):
        return self._call("continue", self.core.continue_(call_id, period, talk_seconds),
                          self._grant)

    @wire.End.responder
    def end(self, call_id, talk_seconds, disposition, recording=None, trunk=None, sip_code=None):
        if disposition not in wire.DISPOSITIONS:
            raise wire.BadRequest(f"unknown disposition {disposition!r}")
        return self._call("end", self.core.end(call_id, talk_seconds, disposition,
                                               recording=recording, trunk=trunk, sip_code=sip_code),
                          lambda e: {"billed_seconds": e.billed_seconds,
                                     "charged_micros": e.charged_micros, "cdr_id": e.cdr_id})

    @wire.Block.responder
    def block(self, call_id, scope):
        return self._call("block", self.core.block(call_id, scope), lambda b: {"blocked": b})


class WorkerLinkFactory(protocol.ServerFactory):
    def __init__(self, core, registry: WorkerRegistry, metrics=None) -> None:
        self.core, self.registry, self.metrics = core, registry, metrics

    def buildProtocol(self, addr):
        p = WorkerLink(self.core, self.registry, self.metrics)
        p.factory = self
        return p


class HealthResource(resource.Resource):
    isLeaf = True

    def __init__(self, pool: asyncpg.Pool, registry: WorkerRegistry) -> None:
        super().__init__()
        self.pool, self.registry = pool, registry

    def render_GET(self, request):
        async def check():
            try:
                async with self.pool.acquire(timeout=2) as conn:
                    await conn.fetchval("SELECT 1")
                db = "ok"
            except Exception as e:     # health reports, it does not raise
                db = f"unavailable: {type(e).__name__}"
            body = {"status": "ok" if db == "ok" else "degraded", "database": db,
                    "workers": self.registry.summary() if hasattr(self.registry, "summary")
                    else len(getattr(self.registry, "workers", ()))}
            request.setResponseCode(200 if db == "ok" else 503)
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(body).encode())
            request.finish()
        as_deferred(check())
        return server.NOT_DONE_YET


def http_site(pool, registry: WorkerRegistry, metrics) -> server.Site:
    from prometheus_client.twisted import MetricsResource
    root = resource.Resource()
    root.putChild(b"metrics", MetricsResource(registry=metrics.registry))
    root.putChild(b"health", HealthResource(pool, registry))
    return server.Site(root)
