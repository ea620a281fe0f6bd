"""A live node seen from outside: the alert rules and the Grafana dashboard against its /metrics
through a real Prometheus, and its log file.

Each rule's expression is evaluated by a real Prometheus (Debian's) that scrapes a live `ics serve`
every second, rather than by `promtool test rules` on series written by hand: hand-written series
would only restate what the rule's author believed the metrics look like, while a live scrape
fails when a name, a label or a unit differs from what the node really exports. `promtool check
rules` still checks the file's syntax and templates.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest
import yaml

import asyncpg

from observe_rig import DASHBOARD, RULES, SipPeer, eventually

pytestmark = pytest.mark.timeout(240)

METRIC = re.compile(r"\b(ics_[a-z0-9_]+)")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
CLOCK_TIME = re.compile(r"\b\d\d:\d\d:\d\d\.\d{3}\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def family(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported(text: str) -> tuple[set[str], set[str]]:
    """(families declared by # TYPE, sample names with at least one sample) of an exposition."""
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    samples = {re.split(r"[{ ]", line, 1)[0] for line in text.splitlines()
               if line and not line.startswith("#")}
    return families, samples


def test_promtool_accepts_the_alert_rules():
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_the_rules_cover_what_operations_asked_for():
    names = {r["alert"] for r in rules()}
    assert names == {"IcsNoWorkerReady", "IcsContinueLatencyHigh", "IcsLedgerErrors",
                     "IcsHoldSweeperStalled", "IcsRevenueFlatInCallingHours"}
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {"Calls up", "Call setup latency (core's share)", "Continue latency",
            "Workers by state", "Ledger batch latency", "Revenue rate", "PIN lockouts",
            "Front-door refusals"} <= titles


async def test_every_metric_the_dashboard_and_the_rules_use_is_on_a_live_node(live_node):
    families, samples = exported(live_node.metrics())
    for expr in dashboard_exprs() + [r["expr"] for r in rules()]:
        for name in METRIC.findall(expr):
            assert family(name) in families or name in samples, (name, expr)
    # The rules' own series have samples from the start (at 0), so increase() sees a first event.
    for rule in rules():
        for name in METRIC.findall(rule["expr"]):
            assert name in samples or f"{name}_bucket" in samples, (rule["alert"], name)


async def test_each_rule_evaluates_as_the_live_node_stands(live_node, prometheus):
    open_facilities = [line for line in live_node.metrics().splitlines()
                       if line.startswith("ics_facility_calling_hours{") and
                       line.endswith(" 1.0")]
    for rule in rules():
        answer = prometheus.query(rule["expr"])
        assert answer["status"] == "success", (rule["alert"], answer)
        result = answer["data"]["result"]
        if rule["alert"] == "IcsRevenueFlatInCallingHours":
            # No call has been charged yet: revenue is flat wherever calling hours are open now.
            assert bool(result) == bool(open_facilities), (result, open_facilities)
        else:
            # A healthy node: worker ready, sweeper running, no ledger errors, no slow Continue.
            assert result == [], (rule["alert"], result)


async def test_a_live_node_writes_only_json_lines_and_its_workers_arrive_structured(live_node):
    lines = live_node.log_lines()
    got = [json.loads(line) for line in lines]       # every line, or the test fails here
    assert all(isinstance(r, dict) and "timestamp" in r and "level" in r for r in got)
    from_worker = [r for r in got if r.get("logger", "").startswith("switch.worker")]
    assert from_worker, lines[:20]
    assert all(r["worker"] == "w1" for r in from_worker)
    ready = [r for r in from_worker if "SIP 127.0.0.1:" in r["event"]]
    assert ready and ready[0]["legs"] == 4           # a field the worker logged, kept as one
    # No line carries a second timestamp inside its text (the old relay wrapped the worker's
    # own text log line, time and all, into the node's line).
    assert not [r for r in got if ISO_TIME.search(r["event"])]
    assert not [r for r in got if r.get("event_type") == "worker_output"
                and CLOCK_TIME.match(r["event"])]
    assert any(r.get("http_port") == live_node.http_port for r in got)


async def test_a_call_on_the_live_node_logs_json_with_its_call_kiosk_facility_and_worker(
        live_node, observe_dsn):
    """A trusted kiosk calls (PIN in its INVITE), the called party is busy: the core's lines and
    the worker's relayed lines of that call carry call_id, kiosk, facility and worker."""
    called, kiosk = SipPeer(busy_code=486), SipPeer()
    conn = await asyncpg.connect(observe_dsn)
    try:
        await conn.execute("UPDATE route SET trunk = $1",
                           f"sip:{{e164}}@127.0.0.1:{called.port}")
        # A trusted kiosk may put its PIN in the INVITE only from a source registered for it.
        await conn.execute("UPDATE kiosk SET sources = '{127.0.0.1/32}' WHERE id = 'kiosk-a1'")
        before = len(live_node.log_lines())
        kiosk.invite(("127.0.0.1", live_node.worker_sip_port), "9515550101", "kiosk-a1",
                     "100011234")

        def ended():
            called.poll()
            kiosk.poll()
            got = [json.loads(line) for line in live_node.log_lines()[before:]]
            core = [r for r in got if r["logger"] == "ics.core"
                    and r["event"].startswith("call ended")]
            return (core, got) if core else None
        core, got = eventually(ended, "the core logs the call's end", 60)
        call_id = await conn.fetchval("SELECT call_id::text FROM cdr WHERE disposition = 'busy'")
    finally:
        await conn.close()
        called.close()
        kiosk.close()
    assert call_id is not None
    [end] = core
    assert (end["call_id"], end["kiosk"], end["facility"], end["worker"]) == (
        call_id, "kiosk-a1", "riverside", "w1")
    worker_lines = [r for r in got if r.get("call_id") == call_id
                    and r["logger"].startswith("switch.worker")]
    assert worker_lines, [r["event"] for r in got]
    assert all((r["kiosk"], r["worker"]) == ("kiosk-a1", "w1") for r in worker_lines)


async def test_no_worker_ready_fires_when_the_only_worker_dies(live_node, prometheus):
    """Last in this module: it kills the node's worker (restarts are 10 minutes away)."""
    rule = next(r for r in rules() if r["alert"] == "IcsNoWorkerReady")
    assert prometheus.query(rule["expr"])["data"]["result"] == []
    assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == rule["alert"]]
    [worker] = live_node.worker_pids()
    os.kill(worker, signal.SIGKILL)
    eventually(lambda: prometheus.query(rule["expr"])["data"]["result"],
               "the expression sees no ready worker")
    pending = eventually(lambda: [a for a in prometheus.alerts()
                                  if a["labels"]["alertname"] == rule["alert"]],
                         "Prometheus holds the alert (pending for its `for`)")
    assert pending[0]["state"] in ("pending", "firing")
    assert pending[0]["labels"]["severity"] == "critical"
