"""Prometheus metrics of a node; names follow Prometheus conventions (units last, _total)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CoreMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CoreMetrics:
    """The core's metrics on their own registry (tests build as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("ics_calls_active", "Calls authorized and not yet ended",
                                  registry=r)
        self.calls = Counter("ics_calls_total", "Ended calls by disposition", ["disposition"],
                             registry=r)
        self.authorizations = Counter("ics_authorizations_total",
                                      "Authorization decisions by outcome", ["outcome"], registry=r)
        self.request_seconds = Histogram("ics_core_request_seconds",
                                         "Latency of worker requests by command", ["command"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.billed_seconds = Counter("ics_billed_seconds_total", "Billed talk time", ["facility"],
                                      registry=r)
        self.revenue_micros = Counter("ics_revenue_micros_total",
                                      "Call charges posted (micro-units, before tax)", ["facility"],
                                      registry=r)
        self.charging = Counter("ics_charging_outcomes_total",
                                "Charging steps that met a ledger refusal or a fallback, by outcome "
                                "(hold_lost, shortfall, ledger_conflict, refused_<result>, ...)",
                                ["outcome"], registry=r)
        self.ledger_seconds = Histogram("ics_ledger_submit_seconds",
                                        "Latency of ledger batches submitted by the core",
                                        buckets=LATENCY_BUCKETS, registry=r)

        self.pin_attempts = Counter("ics_pin_attempts_total", "PIN checks by audited outcome",
                                    ["outcome"], registry=r)
        self.pin_lockouts = Counter("ics_pin_lockouts_total",
                                    "PINs locked by the failure that reached the limit", registry=r)
        self.pin_throttled = Counter("ics_pin_throttled_total",
                                     "PIN attempts refused unchecked: kiosk or source throttled",
                                     ["scope"], registry=r)
        self.kiosk_source_mismatches = Counter(
            "ics_kiosk_source_mismatch_total",
            "Requests refused: the source address is not the claimed kiosk's", ["command"],
            registry=r)
        self.hello_refused = Counter("ics_amp_hello_refused_total",
                                     "AMP Hellos refused (not a worker this node started)",
                                     ["reason"], registry=r)

    def observe(self, what: str, outcome: str, **kw) -> None:
        """The core's observer hook (see switch.core.Core)."""
        # calls_active is set from the database by the node's sweeper: it survives restarts.
        if what == "authorization":
            self.authorizations.labels(outcome).inc()
        elif what == "pin":
            self.pin_attempts.labels(outcome).inc()
        elif what == "pin_lockout":
            self.pin_lockouts.inc()
        elif what == "pin_throttled":
            self.pin_throttled.labels(outcome).inc()
        elif what == "kiosk_source_mismatch":
            self.kiosk_source_mismatches.labels(outcome).inc()
        elif what == "ledger":
            self.ledger_seconds.observe(kw["seconds"])
        elif what == "charging":
            self.charging.labels(outcome).inc()
        elif what in ("call_end", "call_amend"):
            if what == "call_end":      # an amended CDR (a late End) is not another call
                self.calls.labels(outcome).inc()
            facility = kw.get("facility", "")
            self.billed_seconds.labels(facility).inc(max(0, kw.get("billed_seconds", 0)))
            self.revenue_micros.labels(facility).inc(max(0, kw.get("revenue", 0)))
