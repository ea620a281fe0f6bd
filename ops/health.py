# twisted.web is untyped: its calls are the only untyped ones here.
# mypy: disable-error-code="no-untyped-call"
"""The node's HTTP site: /health for load balancers and orchestrators, /metrics for Prometheus.

It belongs to the node's assembly (ops.node), not to the switch: /health answers for the whole
node (its database and its workers), and higher floors (the API, web/) mount their own resources
on the same site.
"""
from __future__ import annotations

import json
from typing import Any, Protocol

import asyncpg
from twisted.web import resource, server
from twisted.web.server import Request

from switch.control.service import as_deferred

__all__ = ["HealthResource", "http_site"]

DB_CHECK_SECONDS = 2.0     # a database slower than this to hand out a connection is unavailable


class Workers(Protocol):
    """What /health needs of the workers: a WorkerRegistry or the supervisor."""

    def summary(self) -> dict[str, Any]: ...


class HealthResource(resource.Resource):
    isLeaf = True

    def __init__(self, pool: asyncpg.Pool, registry: Workers) -> None:
        super().__init__()
        self.pool, self.registry = pool, registry

    def render_GET(self, request: Request) -> int:
        async def check() -> None:
            try:
                async with self.pool.acquire(timeout=DB_CHECK_SECONDS) as conn:
                    await conn.fetchval("SELECT 1")
                db = "ok"
            except Exception as e:     # health reports, it does not raise
                db = f"unavailable: {type(e).__name__}"
            workers = self.registry.summary()
            # A node that runs its own workers is unhealthy with none ready to take a call.
            supervised = bool(getattr(self.registry, "specs", ()))
            healthy = db == "ok" and bool(workers["ready"] or not supervised)
            body = {"status": "ok" if healthy else "unhealthy", "database": db,
                    "workers": workers,
                    "problems": ([] if db == "ok" else ["database"]) +
                                ([] if workers["ready"] or not supervised
                                 else ["no_worker_ready"])}
            request.setResponseCode(200 if healthy else 503)
            request.setHeader(b"content-type", b"application/json")
            request.write(json.dumps(body).encode())
            request.finish()
        as_deferred(check())
        return server.NOT_DONE_YET


def http_site(pool: asyncpg.Pool, registry: Workers, metrics: Any) -> server.Site:
    from prometheus_client.twisted import MetricsResource
    root = resource.Resource()
    # Both are IResource by zope's @implementer, which mypy does not see.
    root.putChild(b"metrics", MetricsResource(registry=metrics.registry))  # type: ignore[arg-type]
    root.putChild(b"health", HealthResource(pool, registry))  # type: ignore[arg-type]
    return server.Site(root)
