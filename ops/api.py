"""Mounting the operations API (web/) on a node's HTTP site, with its Prometheus metrics."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

from ops.config import Config

__all__ = ["api_mount"]


def api_mount(cfg: Config):
    """A `mount` for `ops.node.start_node`: serves /api/v1 next to /metrics and /health."""
    import web

    def mount(site, *, pool, core, registry, metrics, links) -> list:
        requests = Counter("ics_api_requests_total", "API requests by operation and status",
                           ["operation", "status"], registry=metrics.registry)
        seconds = Histogram("ics_api_request_seconds", "API request time by operation",
                            ["operation"], registry=metrics.registry,
                            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))

        def observe(operation: str, status: int, elapsed: float) -> None:
            requests.labels(operation, str(status)).inc()
            seconds.labels(operation).observe(elapsed)
        from families.settings import FamilySettings
        from web.family import FamilyServices, start_sweeps
        from families.proof_rules import ProofRules
        families = FamilyServices.make(pool, FamilySettings.from_section(cfg.families),
                                       web.Services.clock)
        families.proof = ProofRules.from_section(cfg.families, cfg.worker)
        families.proof_caller_name = cfg.families.proof_caller_name
        services = web.Services(
            pool, cfg.api, currency=cfg.ledger.currency, core=core, workers=registry,
            links=links, data_dir=str(cfg.data_dir), families=families)
        from web.console import ConsoleSettings, secure_cookies_for
        console = ConsoleSettings(secure_cookies=secure_cookies_for(cfg.core.http_host),
                                  body_bytes_max=cfg.api.body_bytes_max)
        web.mount(site, services, observe=observe, console=console)
        from web.sessions import start_purging
        return [start_sweeps(pool, families, services.clock, observe=metrics.observe),
                start_purging(pool, services.clock)]    # the node stops them
    return mount
