"""Logs: one JSON object per line (or plain text), whoever wrote the line, with the fields that
tie it to a call; a worker's records reach the node structured, with one timestamp."""
from __future__ import annotations

import io
import json
import logging
import re
import uuid

import pytest
import structlog
from twisted.logger import Logger, globalLogPublisher

from switch.processes import logs
from ops.config import load
from switch.wire import protocol as wire

from observe_rig import core_over_amp

ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
CLOCK_TIME = re.compile(r"\b\d\d:\d\d:\d\d\.\d{3}\b")


@pytest.fixture
def captured():
    """`configure(fmt, ...)` into a buffer; the process's logging is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffers = []

    def configure(fmt: str, **bound) -> io.StringIO:
        buf = io.StringIO()
        logs.configure(fmt, "info", stream=buf, twisted=False, **bound)
        buffers.append(buf)
        return buf
    observer = logs.TwistedToLogging()
    globalLogPublisher.addObserver(observer)
    yield configure
    globalLogPublisher.removeObserver(observer)
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def records(buf: io.StringIO) -> list[dict]:
    """Every line as JSON (json.loads fails the test on any line that is not one object)."""
    out = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert all(isinstance(r, dict) for r in out)
    return out


def test_every_kind_of_log_call_is_one_json_object_per_line(captured):
    buf = captured("json")
    logging.getLogger("ics.test").info("stdlib %s with 'quotes' and \"doubles\"", "args")
    structlog.get_logger("ics.test").warning("structlog", call_id="c-1")
    Logger(namespace="switch.test").info("twisted {x}", x=1, worker_id="w3", event="spawned")
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        logging.getLogger("ics.test").exception("it failed")
    logs.announce("ics.serve", "ics: serving; AMP :1, HTTP :2", http_port=2)
    got = records(buf)
    assert len(got) == 5 == len(buf.getvalue().splitlines())
    assert got[0]["event"] == "stdlib args with 'quotes' and \"doubles\""
    assert (got[0]["level"], got[0]["logger"]) == ("info", "ics.test")
    assert ISO_TIME.match(got[0]["timestamp"])
    assert got[1]["call_id"] == "c-1" and got[1]["level"] == "warning"
    assert got[2]["event"] == "twisted 1"
    assert (got[2]["worker"], got[2]["event_type"], got[2]["logger"]) == (
        "w3", "spawned", "switch.test")
    assert "x" not in got[2]                      # a format shorthand, already in the text
    assert "line one\\nline two" in json.dumps(got[3]) and "Traceback" in got[3]["exception"]
    assert got[4]["http_port"] == 2


def test_bound_call_fields_stay_with_their_own_task(captured):
    import asyncio
    buf = captured("json")

    async def request(call_id):
        logs.bind_call(call_id=call_id, kiosk="kiosk-a1", facility="riverside", worker="w1")
        await asyncio.sleep(0)
        logging.getLogger("ics.core").info("handled")

    async def both():
        await asyncio.gather(request("c-1"), request("c-2"))
        logging.getLogger("ics.core").info("outside any call")
    asyncio.new_event_loop().run_until_complete(both())
    got = records(buf)
    assert sorted(r["call_id"] for r in got[:2]) == ["c-1", "c-2"]
    assert all(r["facility"] == "riverside" and r["worker"] == "w1" for r in got[:2])
    assert "call_id" not in got[2]


def test_console_format_is_plain_text_for_people(captured):
    buf = captured("console")
    logging.getLogger("ics.node").warning("sweep failed: %s", "timeout")
    Logger(namespace="switch.processes.supervisor").info("worker {worker_id} ready", worker_id="w1")
    text = buf.getvalue()
    assert "\x1b[" not in text                      # no colours off a terminal
    lines = text.splitlines()
    assert len(lines) == 2 and not lines[0].startswith("{")
    assert "warning" in lines[0] and "sweep failed: timeout" in lines[0]
    assert "worker w1 ready" in lines[1] and "worker=w1" in lines[1]


def test_a_workers_call_lines_carry_the_call_and_kiosk(captured):
    from switch.worker.call import SwitchedCall
    buf = captured("json", worker="w2")
    call = SwitchedCall.__new__(SwitchedCall)       # its log wiring only: no SIP here
    call.call_id, call.kiosk_id = "c-9", "kiosk-b2"
    call.log.warn("trunk {t} refused the dial: {e}", t="sip:x", e="timeout")
    [r] = records(buf)
    assert (r["call_id"], r["kiosk"], r["worker"], r["level"]) == (
        "c-9", "kiosk-b2", "w2", "warning")
    assert r["event"] == "trunk sip:x refused the dial: timeout"


def test_the_supervisor_relays_a_workers_json_record_with_its_own_fields(captured):
    from switch.processes.supervisor import WorkerSpec, _Child, _WorkerOutput
    worker_buf = captured("json", worker="w9")       # what the worker process would write
    Logger(namespace="switch.worker.call").info("call {c} ended", c="c-5")
    worker_line = worker_buf.getvalue().splitlines()[0]
    sent = json.loads(worker_line)
    sent["call_id"], sent["kiosk"] = "c-5", "kiosk-a1"
    node_buf = captured("json")                      # the node
    spec = WorkerSpec.__new__(WorkerSpec)
    object.__setattr__(spec, "worker_id", "w1")
    out = _WorkerOutput(supervisor=None, child=_Child(spec))
    pjsip = "04:07:56.515         sip_endpoint.c  .Creating endpoint instance..."
    out.childDataReceived(1, (json.dumps(sent) + "\n" + pjsip + "\n").encode())
    relayed, raw = records(node_buf)
    # The worker's own timestamp, level, logger and fields; the id the supervisor gave it.
    assert relayed["timestamp"] == sent["timestamp"]
    assert (relayed["event"], relayed["logger"], relayed["call_id"], relayed["worker"]) == (
        "call c-5 ended", "switch.worker.call", "c-5", "w1")
    assert not CLOCK_TIME.search(relayed["event"]) and not ISO_TIME.search(relayed["event"])
    assert raw["event"] == "sip_endpoint.c  .Creating endpoint instance..."
    assert (raw["worker"], raw["stream"]) == ("w1", "stdout")


async def test_a_call_through_the_core_logs_its_call_kiosk_facility_and_worker(
        captured, reactor, pg_dsn, tmp_path):
    buf = captured("json")
    cfg = load(overrides={"database": {"url": pg_dsn}, "node": {"data_dir": str(tmp_path)}},
               environ={})
    rig = await core_over_amp(reactor, pg_dsn, cfg)
    try:
        a = await rig.keyed_authorize("+19515550101")
        await rig.call(wire.Accept, call_id=a["call_id"])
        await rig.call(wire.End, call_id=a["call_id"], talk_seconds=30, disposition="completed")
    finally:
        await rig.close()
    got = records(buf)
    [ended] = [r for r in got if r["event"].startswith("call ended")]
    assert (ended["call_id"], ended["kiosk"], ended["facility"], ended["worker"]) == (
        str(uuid.UUID(a["call_id"])), "kiosk-a1", "riverside", "w1")
    assert ended["logger"] == "ics.core"
