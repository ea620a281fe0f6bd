"""The supervisor with real processes: stand-in workers (standin_worker.py) authenticate and speak
Hello/Heartbeat over AMP to the core's real responder (switch.control.service) on the test reactor."""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from switch.settings import SwitchSettings
from switch.control.service import WorkerLinkFactory
from switch.processes.supervisor import (IllegalWorkerTransition, InvalidHello, Supervisor,
                               UnknownWorker, WorkerState)

STANDIN = [sys.executable, str(Path(__file__).with_name("standin_worker.py"))]


class NoCalls:
    """The core behind the real AMP responder: these tests are about workers, not calls."""

    async def touch(self, call_ids, worker_id):
        return []


def _free_udp_range(n: int) -> int:
    """A base port with n consecutive free UDP ports on loopback."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
        probe.close()
        if base + n > 65_000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


@pytest.fixture
async def node(reactor, settle):
    """Builds a supervisor of stand-ins against a core AMP port; stops it after the test."""
    factory = WorkerLinkFactory(NoCalls(), None)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    started = []

    def make(workers=3, env=None, **overrides):
        values = dict(
            workers=workers, sip_host="127.0.0.1", core_amp_port=listening.getHost().port,
            worker_sip_port_base=_free_udp_range(workers), rtp_port_base=40_000,
            rtp_ports_per_worker=8, frontdoor_port=1, worker_silence_seconds=2.0,
            worker_hello_seconds_max=10.0, worker_stop_seconds=2.0,
            restart_backoff_seconds_min=0.05, restart_backoff_seconds_max=0.4,
            restarts_per_minute_max=20)
        settings = dataclasses.replace(SwitchSettings(), **{**values, **overrides})
        lost: list[tuple[str, str]] = []
        registry = CollectorRegistry()
        sup = Supervisor(reactor, settings, command=STANDIN, env=env or {}, registry=registry,
                         on_worker_lost=lambda wid, why: lost.append((wid, why)))
        sup.lost, sup.registry = lost, registry
        factory.registry = sup
        sup.start()
        started.append(sup)
        return sup

    yield make
    for sup in started:
        await settle(sup.stop(), timeout=15)
    await settle(listening.stopListening())


def _ready(sup, *ids):
    ids = ids or tuple(w.worker_id for w in sup.table)
    return all(sup.table[w].state is WorkerState.READY for w in ids) and len(sup.table) > 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_supervisor_starts_every_planned_worker_and_each_says_hello(node, eventually):
    sup = node(workers=3, env={"STANDIN_CAPACITY": "2"})
    await eventually(lambda: _ready(sup, "w1", "w2", "w3"))
    workers = {w.worker_id: w for w in sup.table}
    assert sorted(workers) == ["w1", "w2", "w3"]
    assert [workers[s.worker_id].sip_port for s in sup.specs] == [s.sip_port for s in sup.specs]
    assert {w.capacity for w in workers.values()} == {2}
    pids = {w.pid for w in workers.values()}
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    assert sup.registry.get_sample_value("ics_workers", {"state": "ready"}) == 3
    assert sup.registry.get_sample_value("ics_worker_slots_free") == 6
    assert sup.registry.get_sample_value("ics_worker_slots_capacity") == 6
    assert sup.registry.get_sample_value("ics_worker_slots_busy") == 0


async def test_heartbeats_keep_a_worker_ready_and_report_its_calls(node, eventually):
    sup = node(workers=1, env={"STANDIN_CALLS": "call-a,call-b", "STANDIN_CAPACITY": "3"},
               worker_silence_seconds=1.0)
    await eventually(lambda: sup.table["w1"].active_calls == {"call-a", "call-b"})
    assert sup.table["w1"].free_slots(sup._reactor.seconds()) == 1
    assert sup.registry.get_sample_value("ics_worker_slots_busy") == 2
    assert sup.registry.get_sample_value("ics_worker_slots_capacity") == 3
    first_seen = sup.table["w1"].last_seen
    await eventually(lambda: sup.table["w1"].last_seen > first_seen + 1.2, timeout=5)
    assert sup.table["w1"].state is WorkerState.READY and sup.lost == []


async def test_a_killed_worker_is_settled_restarted_and_says_hello_again(node, eventually):
    sup = node(workers=3)
    await eventually(lambda: _ready(sup, "w1", "w2", "w3"))
    before = {w.worker_id: w.pid for w in sup.table}
    os.kill(before["w2"], signal.SIGKILL)
    await eventually(lambda: ("w2", "exited") in sup.lost)
    await eventually(lambda: _ready(sup, "w2") and sup.table["w2"].pid != before["w2"])
    assert _alive(sup.table["w2"].pid) and not _alive(before["w2"])
    assert {w: sup.table[w].pid for w in ("w1", "w3")} == {w: before[w] for w in ("w1", "w3")}
    assert sup.lost == [("w2", "exited")]
    assert sup.registry.get_sample_value("ics_worker_restarts_total", {"worker": "w2"}) == 1
    assert sup.registry.get_sample_value("ics_worker_restarts_total", {"worker": "w1"}) is None


async def test_a_crash_looping_worker_is_backed_off(node, eventually):
    sup = node(workers=2, env={"STANDIN_ONLY": "w1", "STANDIN_EXIT": "3"},
               restart_backoff_seconds_min=0.1, restart_backoff_seconds_max=0.4,
               restarts_per_minute_max=4)
    await eventually(lambda: len(sup.restarts("w1")) == 4 and sup.pending_restart("w1"),
                     timeout=20)
    times = sup.restarts("w1")
    gaps = [b - a for a, b in zip(times, times[1:])]
    # waits of 0.2, 0.4, 0.4 s after each exit (0.1 doubling, capped): the gaps include start-up
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.4, gaps
    # the fifth restart waits for the one-minute window to admit it
    assert sup.pending_restart("w1") > 55
    assert sup.table["w1"].state is WorkerState.DEAD
    assert _ready(sup, "w2") and sup.restarts("w2") == []
    assert sup.lost.count(("w1", "exited")) == 5


async def test_a_silent_worker_is_presumed_dead_killed_and_restarted(node, eventually):
    sup = node(workers=2, env={"STANDIN_ONLY": "w2", "STANDIN_MUTE": "1"},
               worker_silence_seconds=0.6)
    await eventually(lambda: _ready(sup, "w2"))
    mute_pid = sup.table["w2"].pid
    await eventually(lambda: ("w2", "silent") in sup.lost)
    await eventually(lambda: not _alive(mute_pid))
    await eventually(lambda: sup.restarts("w2"))
    assert ("w2", "exited") not in sup.lost[:sup.lost.index(("w2", "silent")) + 1]
    assert sup.lost.count(("w2", "silent")) >= 1
    assert all(why == "silent" for wid, why in sup.lost if wid == "w2")
    assert ("w1", "silent") not in sup.lost and sup.table["w1"].state is WorkerState.READY


async def test_a_worker_that_never_says_hello_is_restarted(node, eventually):
    sup = node(workers=1, env={"STANDIN_NO_HELLO": "1"}, worker_hello_seconds_max=0.5)
    await eventually(lambda: sup.table.get("w1") is not None)
    first_pid = sup.pid("w1")
    await eventually(lambda: ("w1", "silent") in sup.lost)
    await eventually(lambda: sup.pid("w1") not in (None, first_pid))
    assert sup.table["w1"].state is WorkerState.STARTING


async def test_stop_ends_every_worker_and_restarts_none(node, eventually, settle):
    sup = node(workers=2)
    await eventually(lambda: _ready(sup))
    pids = [w.pid for w in sup.table]
    await settle(sup.stop(), timeout=10)
    assert not any(_alive(p) for p in pids)
    assert all(w.state is WorkerState.DEAD for w in sup.table)
    assert sup.pending_restart("w1") is None and sup.pending_restart("w2") is None


async def test_stop_kills_a_worker_that_ignores_term(node, eventually, settle, reactor):
    sup = node(workers=1, env={"STANDIN_IGNORE_TERM": "1"}, worker_stop_seconds=0.5)
    await eventually(lambda: _ready(sup))
    pid = sup.table["w1"].pid
    began = reactor.seconds()
    await settle(sup.stop(), timeout=10)
    assert not _alive(pid)
    assert reactor.seconds() - began >= 0.5
