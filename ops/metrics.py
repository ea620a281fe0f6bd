"""Prometheus metrics of a node; names follow Prometheus conventions (base units, `_total`).

Money is counted as integer micro-units (`MoneyTotals`) and converted to the currency's unit
exactly once, when a scrape renders it: Prometheus values are floats, which is fine for a graph
and never for money handling, so no float ever accumulates here.

Every label has a bounded set of values: dispositions, deny reasons, commands and outcomes come
from the product's own enumerations (anything else is counted as "other"); facilities and
currencies are what the operator configured; never a call id, kiosk, number or source address.

Metric list (the dashboards in config/grafana/ and the rules in config/prometheus/ use these):

| metric | type | labels |
| --- | --- | --- |
| ics_calls_active | gauge (from the database, refreshed by the sweeper) | |
| ics_calls_total | counter | disposition |
| ics_authorizations_total | counter | outcome |
| ics_called_party_decisions_total | counter | decision (accept, refuse, block) |
| ics_core_request_seconds | histogram | command |
| ics_billed_seconds_total | counter | facility |
| ics_revenue_total | counter, currency unit | facility, currency |
| ics_deposits_total, ics_deposit_amount_total | counters (ledger-wide, from the database) | currency |
| ics_charging_outcomes_total | counter | outcome |
| ics_ledger_submit_seconds | histogram | |
| ics_group_commit_calls | histogram | |
| ics_hold_sweeps_total | counter | outcome (ok, failed) |
| ics_holds_expired_total | counter | |
| ics_hold_sweep_last_success_timestamp_seconds | gauge | |
| ics_facility_calling_hours | gauge (1 open, 0 closed; from the database) | facility |
| ics_pin_attempts_total, ics_pin_lockouts_total, ics_pin_throttled_total | counters | outcome / - / scope |
| ics_kiosk_source_mismatch_total | counter | command |
| ics_call_setup_failures_total | counter | reason (switch.wire.protocol.SETUP_FAILURES) |
| ics_pin_verify_total | counter | how (kdf, remembered, busy) |
| ics_call_setups_shed_total | counter | command (check_pin, admit_kiosk) |
| ics_amp_hello_refused_total | counter | reason |
| ics_family_refund_attempts_total | counter | outcome (sent, retry, held) |
| ics_family_refunds_undelivered, ics_family_refunds_undelivered_oldest_seconds | gauges (from the database) | state (pending, held) / - |
| ics_db_pool_connections, _connections_max, _connections_in_use, ics_db_pool_waiters | gauges | |

The supervisor adds ics_workers{state}, ics_worker_slots_{capacity,busy,reserved,free} and
ics_worker_restarts_total{worker}; the front door ics_frontdoor_requests_total{method,response} and
ics_frontdoor_dropped_total{reason}; the API ics_api_requests_total and ics_api_request_seconds.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from families.proof_rules import CodeRefusal, RequestRefusal
from switch.wire.proof import OUTCOMES as PROOF_OUTCOMES
from switch.wire.protocol import DENY_REASONS, DISPOSITIONS, SETUP_FAILURES
from switch.rules.schedule import Schedule, ScheduleError, parse_window

__all__ = ["CoreMetrics", "MoneyTotals", "PoolCollector", "MICROS_PER_UNIT", "read_deposits",
           "read_calling_hours", "read_undelivered_refunds"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
MICROS_PER_UNIT = 1_000_000          # money in code and database is micro-units of the currency
REFUND_OUTCOMES = ("sent", "retry", "held")   # families.refund_delivery.DeliveryOutcome
OTHER = "other"                      # the label value of anything outside a known set

COMMANDS = frozenset({"heartbeat", "admit_kiosk", "check_pin", "authorize", "accept", "continue",
                      "end", "block", "proof_call_ended", "setup_failed"})
AUTH_OUTCOMES = frozenset({"allow", *DENY_REASONS})
PROOF_CALL_OUTCOMES = frozenset({"placed", "no_worker", "lost",
                                 *(f"ended_{o}" for o in PROOF_OUTCOMES)})
PROOF_REQUEST_DECISIONS = frozenset({"allow", *(r.value for r in RequestRefusal)})
PROOF_CODE_RESULTS = frozenset({"ok", *(c.value for c in CodeRefusal)})
DECISIONS = {"refused": "refuse", "blocked": "block"}   # End dispositions that are the party's word
# Charging outcomes that are errors (config/prometheus alerts on them); the others are refusals
# the charging loop settles by itself.
LEDGER_ERRORS = ("ledger_anomaly", "group_commit_failed", "close_failed")


def bounded(value: str, known: Iterable[str]) -> str:
    """`value` if it is one of `known`, else "other": a label never grows with hostile input."""
    return value if value in known else OTHER


class MoneyTotals:
    """A money counter: integer micro-units per label set, rendered in the currency's unit.

    Adds are exact integers under a lock (the metrics resource renders in a thread); the one
    conversion to a float happens in `collect`, for the exposition only."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._micros: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()

    def add(self, micros: int, *values: str) -> None:
        if isinstance(micros, bool) or not isinstance(micros, int):
            raise TypeError(f"{self.name}: money is integer micro-units, got {micros!r}")
        if micros < 0:
            raise ValueError(f"{self.name}: a counter only grows, got {micros}")
        with self._lock:
            self._micros[values] = self._micros.get(values, 0) + micros

    def set_total(self, micros: int, *values: str) -> None:
        """For totals read from the ledger (which only grow): keep the larger value."""
        with self._lock:
            self._micros[values] = max(self._micros.get(values, 0), int(micros))

    def micros(self, *values: str) -> int:
        with self._lock:
            return self._micros.get(values, 0)

    def collect(self):
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        with self._lock:
            items = list(self._micros.items())
        for values, micros in items:
            family.add_metric(list(values), micros / MICROS_PER_UNIT)
        yield family


class PoolCollector:
    """The database pool's use at scrape time: open connections, the bound, in use, waiters."""

    def __init__(self, pool) -> None:
        self._pool = pool

    def collect(self):
        pool = self._pool
        size, idle, max_size = pool.get_size(), pool.get_idle_size(), pool.get_max_size()
        # asyncpg has no public count of waiting acquirers; its queue's getters are those.
        queue = getattr(pool, "_queue", None)
        waiters = sum(1 for g in getattr(queue, "_getters", ()) if not g.done())
        for name, doc, value in (
                ("ics_db_pool_connections", "Open database connections of the core's pool", size),
                ("ics_db_pool_connections_max", "The pool's bound on open connections", max_size),
                ("ics_db_pool_connections_in_use", "Pool connections acquired and not released",
                 max(0, size - idle)),
                ("ics_db_pool_waiters", "Tasks waiting for a pool connection", waiters)):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g


async def read_deposits(conn) -> dict[str, tuple[int, int]]:
    """Deposits the ledger holds, per currency: (count, micro-units). Read from funding_credit
    (one row per deposit, written in the deposit's transaction), so a deposit is counted however
    it was made (API, CLI, another node) and the count survives restarts."""
    rows = await conn.fetch(
        """SELECT a.currency, count(*) AS n, coalesce(sum(f.amount), 0)::bigint AS micros
             FROM funding_credit f JOIN ledger_account a ON a.id = f.account
            GROUP BY a.currency""")
    return {r["currency"]: (r["n"], r["micros"]) for r in rows}


async def read_undelivered_refunds(conn) -> dict[str, tuple[int, datetime | None]]:
    """Refund lines the provider has not taken, per state: (count, oldest creation time)."""
    out: dict[str, tuple[int, datetime | None]] = {s: (0, None) for s in ("pending", "held")}
    if not await conn.fetchval("SELECT to_regclass('family_refund') IS NOT NULL"):
        return out
    for r in await conn.fetch("SELECT state, count(*) AS n, min(created_at) AS oldest FROM "
                              "family_refund WHERE state <> 'sent' GROUP BY state"):
        out[r["state"]] = (r["n"], r["oldest"])
    return out


async def read_calling_hours(conn, now: datetime) -> dict[str, bool]:
    """Per facility: is `now` inside its facility-wide calling windows (in its time zone)? An
    alert on flat revenue only means something while people may call."""
    rows = await conn.fetch(
        """SELECT f.id, f.time_zone,
                  coalesce(array_agg(w.spec ORDER BY w.id) FILTER (WHERE w.id IS NOT NULL),
                           '{}') AS windows
             FROM facility f LEFT JOIN calling_window w ON w.facility_id = f.id AND w.unit IS NULL
            GROUP BY f.id, f.time_zone""")
    out = {}
    for r in rows:
        try:
            schedule = Schedule(tuple(parse_window(w) for w in r["windows"]),
                                ZoneInfo(r["time_zone"]))
        except (ScheduleError, ValueError, KeyError):
            continue                     # a facility the core cannot schedule has no hours
        out[r["id"]] = schedule.allows(now)
    return out


class CoreMetrics:
    """The core's metrics on their own registry (tests build as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 currency: str = "USD") -> None:
        self.registry = registry or CollectorRegistry()
        self.currency = currency
        r = self.registry
        self.calls_active = Gauge("ics_calls_active", "Calls authorized and not yet ended",
                                  registry=r)
        self.calls = Counter("ics_calls_total", "Ended calls by disposition", ["disposition"],
                             registry=r)
        self.authorizations = Counter("ics_authorizations_total",
                                      "Authorization decisions by outcome", ["outcome"], registry=r)
        self.decisions = Counter("ics_called_party_decisions_total",
                                 "The called party's answer in the IVR: accept, refuse or block",
                                 ["decision"], registry=r)
        self.request_seconds = Histogram("ics_core_request_seconds",
                                         "Latency of worker requests by command", ["command"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.billed_seconds = Counter("ics_billed_seconds_total", "Billed talk time", ["facility"],
                                      registry=r)
        self.revenue = MoneyTotals(
            "ics_revenue_total", "Call charges posted, before tax, in units of the currency",
            ("facility", "currency"))
        r.register(self.revenue)
        self.deposits = _DepositCollector()
        r.register(self.deposits)
        self.charging = Counter("ics_charging_outcomes_total",
                                "Charging steps that met a ledger refusal or a fallback, by outcome "
                                "(hold_lost, shortfall, ledger_conflict, refused_<result>, ...)",
                                ["outcome"], registry=r)
        self.ledger_seconds = Histogram("ics_ledger_submit_seconds",
                                        "Latency of ledger batches submitted by the core",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.group_commit_calls = Histogram("ics_group_commit_calls",
                                            "Calls carried by one group-commit ledger batch",
                                            buckets=BATCH_BUCKETS, registry=r)
        self.calling_hours = Gauge("ics_facility_calling_hours",
                                   "1 while the facility's calling windows are open, else 0",
                                   ["facility"], registry=r)
        self.hold_sweeps = Counter("ics_hold_sweeps_total",
                                   "Sweeps of expired holds and silent calls, by outcome",
                                   ["outcome"], registry=r)
        self.holds_expired = Counter("ics_holds_expired_total",
                                     "Holds released by the sweeper at their expiry", registry=r)
        self.hold_sweep_success = Gauge("ics_hold_sweep_last_success_timestamp_seconds",
                                        "When the last sweep completed (Unix time)", registry=r)
        for outcome in ("ok", "failed"):
            self.hold_sweeps.labels(outcome)
        self.refund_attempts = Counter("ics_family_refund_attempts_total",
                                       "Refunds sent to the payment provider, by outcome (sent; "
                                       "retry: failed, tried again later; held: for an operator)",
                                       ["outcome"], registry=r)
        for outcome in REFUND_OUTCOMES:
            self.refund_attempts.labels(outcome)
        self.refunds_undelivered = Gauge("ics_family_refunds_undelivered",
                                         "Refund lines owed that the provider has not taken, by "
                                         "state", ["state"], registry=r)
        self.refunds_oldest = Gauge("ics_family_refunds_undelivered_oldest_seconds",
                                    "Age of the oldest refund line the provider has not taken "
                                    "(0 when none)", registry=r)

        self.pin_attempts = Counter("ics_pin_attempts_total", "PIN checks by audited outcome",
                                    ["outcome"], registry=r)
        self.setup_failures = Counter(
            "ics_call_setup_failures_total",
            "Kiosk calls that ended before any trunk was dialled, by reason (workers report them)",
            ["reason"], registry=r)
        self.setups_shed = Counter("ics_call_setups_shed_total",
                                   "Call set-ups the core refused unprocessed (CORE_BUSY: no room "
                                   "within core.setup_wait_seconds_max), by command",
                                   ["command"], registry=r)
        self.pin_verify = Counter("ics_pin_verify_total",
                                  "PIN secret checks by how: kdf (scrypt), remembered (keyed tag), "
                                  "busy (shed: none could start in time)", ["how"], registry=r)
        self.pin_lockouts = Counter("ics_pin_lockouts_total",
                                    "PINs locked by the failure that reached the limit", registry=r)
        self.pin_throttled = Counter("ics_pin_throttled_total",
                                     "PIN attempts refused unchecked: kiosk or source throttled",
                                     ["scope"], registry=r)
        self.kiosk_source_mismatches = Counter(
            "ics_kiosk_source_mismatch_total",
            "Requests refused: the source address is not the claimed kiosk's", ["command"],
            registry=r)
        self.proof_calls = Counter("ics_number_proof_calls_total",
                                   "Proof calls (a code spoken to prove a number), by outcome: "
                                   "placed, no_worker, lost (the worker died mid-call), "
                                   "ended_<outcome>", ["outcome"], registry=r)
        self.proof_requests = Counter("ics_number_proof_requests_total",
                                      "Requests for a proof call: allowed or the refusing rule",
                                      ["decision"], registry=r)
        self.proof_codes = Counter("ics_number_proof_codes_total",
                                   "Codes entered to prove a number, by result", ["result"],
                                   registry=r)
        self.hello_refused = Counter("ics_amp_hello_refused_total",
                                     "AMP Hellos refused (not a worker this node started)",
                                     ["reason"], registry=r)
        # Series that alerts and dashboards rate exist from the start, at 0: Prometheus'
        # increase() cannot see the first event of a series that appears with it.
        for decision in ("accept", "refuse", "block"):
            self.decisions.labels(decision)
        for disposition in DISPOSITIONS:
            self.calls.labels(disposition)
        for outcome in sorted(AUTH_OUTCOMES):
            self.authorizations.labels(outcome)
        for outcome in LEDGER_ERRORS:
            self.charging.labels(outcome)
        for command in sorted(COMMANDS):
            self.request_seconds.labels(command)
        self.deposits.set(currency, 0, 0)

    def watch_pool(self, pool) -> None:
        """Export the database pool's use (size, in use, waiters) at every scrape."""
        self.registry.register(PoolCollector(pool))

    async def refresh(self, conn, now: datetime | None = None) -> None:
        """The gauges and ledger-wide totals read from the database (the node's sweeper)."""
        self.calls_active.set(
            await conn.fetchval("SELECT count(*) FROM call WHERE state <> 'ended'"))
        for currency, (n, micros) in (await read_deposits(conn)).items():
            self.deposits.set(currency, n, micros)
        now = now or datetime.now(timezone.utc)
        undelivered = await read_undelivered_refunds(conn)
        for state, (count, _) in undelivered.items():
            self.refunds_undelivered.labels(state).set(count)
        self.refunds_oldest.set(max((now.timestamp() - oldest.timestamp() for _, oldest in
                                     undelivered.values() if oldest is not None), default=0))
        hours = await read_calling_hours(conn, now)
        for facility, open_ in hours.items():
            self.calling_hours.labels(facility).set(1 if open_ else 0)
            self.revenue.add(0, facility, self.currency)     # a facility's series from 0
            self.billed_seconds.labels(facility)

    def observe(self, what: str, outcome: str, **kw) -> None:
        """The core's observer hook (see switch.control.core.Core)."""
        # calls_active is set from the database by the node's sweeper: it survives restarts.
        if what == "authorization":
            self.authorizations.labels(bounded(outcome, AUTH_OUTCOMES)).inc()
        elif what == "called_party":
            self.decisions.labels(bounded(outcome, ("accept", "refuse", "block"))).inc()
        elif what == "pin":
            self.pin_attempts.labels(outcome).inc()
        elif what == "setup_failure":
            self.setup_failures.labels(bounded(outcome, SETUP_FAILURES)).inc()
        elif what == "setup_shed":
            self.setups_shed.labels(bounded(outcome, COMMANDS)).inc()
        elif what == "pin_verify":
            self.pin_verify.labels(bounded(outcome, ("kdf", "remembered", "busy"))).inc()
        elif what == "pin_lockout":
            self.pin_lockouts.inc()
        elif what == "pin_throttled":
            self.pin_throttled.labels(outcome).inc()
        elif what == "kiosk_source_mismatch":
            self.kiosk_source_mismatches.labels(bounded(outcome, COMMANDS)).inc()
        elif what == "proof_call":
            self.proof_calls.labels(bounded(outcome, PROOF_CALL_OUTCOMES)).inc()
        elif what == "proof_request":
            self.proof_requests.labels(bounded(outcome, PROOF_REQUEST_DECISIONS)).inc()
        elif what == "proof_code":
            self.proof_codes.labels(bounded(outcome, PROOF_CODE_RESULTS)).inc()
        elif what == "ledger":
            self.ledger_seconds.observe(kw["seconds"])
        elif what == "group_commit":
            self.group_commit_calls.observe(kw["size"])
        elif what == "charging":
            self.charging.labels(outcome).inc()
        elif what == "refund_delivery":
            self.refund_attempts.labels(bounded(outcome, REFUND_OUTCOMES)).inc()
        elif what == "hold_sweep":
            self.hold_sweeps.labels(outcome).inc()
            if outcome == "ok":
                self.holds_expired.inc(kw.get("expired", 0))
                self.hold_sweep_success.set(kw["at"])
        elif what in ("call_end", "call_amend"):
            disposition = bounded(outcome, DISPOSITIONS)
            if what == "call_end":      # an amended CDR (a late End) is not another call
                self.calls.labels(disposition).inc()
                if disposition in DECISIONS:
                    self.decisions.labels(DECISIONS[disposition]).inc()
            facility = kw.get("facility") or ""
            self.billed_seconds.labels(facility).inc(max(0, kw.get("billed_seconds", 0)))
            self.revenue.add(max(0, kw.get("revenue", 0)), facility, self.currency)


class _DepositCollector:
    """Deposits the ledger holds, per currency: a count and an amount in the currency's unit.
    Ledger-wide: every node sharing the database reports the same totals (aggregate with max)."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self.amount = MoneyTotals("ics_deposit_amount", "", ("currency",))
        self._lock = threading.Lock()

    def set(self, currency: str, count: int, micros: int) -> None:
        with self._lock:
            self._count[currency] = max(self._count.get(currency, 0), int(count))
        self.amount.set_total(micros, currency)

    def count(self, currency: str) -> int:
        with self._lock:
            return self._count.get(currency, 0)

    def collect(self):
        n = CounterMetricFamily("ics_deposits", "Deposits held by the ledger (ledger-wide: "
                                "every node reports the same count)", labels=["currency"])
        amount = CounterMetricFamily("ics_deposit_amount", "Money deposited, in units of the "
                                     "currency (ledger-wide)", labels=["currency"])
        with self._lock:
            counts = dict(self._count)
        for currency, c in counts.items():
            n.add_metric([currency], c)
            amount.add_metric([currency], self.amount.micros(currency) / MICROS_PER_UNIT)
        yield n
        yield amount
