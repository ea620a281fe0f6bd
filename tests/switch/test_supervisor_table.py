"""The worker table, the port plan and the restart policy: pure, no processes, time passed in."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.settings import SettingsError, SwitchSettings, WorkerProcessSettings, WorkerSettings
from switch.processes.supervisor import (IllegalWorkerTransition, InvalidHello, UnknownWorker,
                               WorkerEvent, WorkerState, WorkerTable, next_state, plan_workers,
                               restart_delay, worker_argv)

S, E = WorkerState, WorkerEvent

# Written out independently of the module's table: every pair not listed is illegal.
EXPECTED = {
    (S.DEAD, E.SPAWNED): S.STARTING,
    (S.STARTING, E.HELLO): S.READY, (S.READY, E.HELLO): S.READY,
    (S.DRAINING, E.HELLO): S.DRAINING,
    (S.READY, E.HEARTBEAT): S.READY, (S.DRAINING, E.HEARTBEAT): S.DRAINING,
    (S.STARTING, E.DRAIN): S.DRAINING, (S.READY, E.DRAIN): S.DRAINING,
    (S.DRAINING, E.DRAIN): S.DRAINING,
    (S.STARTING, E.SILENT): S.DEAD, (S.READY, E.SILENT): S.DEAD, (S.DRAINING, E.SILENT): S.DEAD,
    (S.STARTING, E.EXITED): S.DEAD, (S.READY, E.EXITED): S.DEAD, (S.DRAINING, E.EXITED): S.DEAD,
    (S.DEAD, E.EXITED): S.DEAD,
}


@pytest.mark.parametrize("state,event", list(itertools.product(WorkerState, WorkerEvent)),
                         ids=lambda v: v.value)
def test_every_state_and_event_moves_as_specified_or_is_refused(state, event):
    if (state, event) in EXPECTED:
        assert next_state("w1", state, event) is EXPECTED[state, event]
    else:
        with pytest.raises(IllegalWorkerTransition) as e:
            next_state("w1", state, event)
        assert (e.value.worker_id, e.value.state, e.value.event) == ("w1", state, event)
        assert state.value in str(e.value) and event.value in str(e.value)


def _table(reservation=5.0):
    return WorkerTable(slot_reservation_seconds=reservation, default_host="10.0.0.5")


def _ready(table, wid, capacity=2, port=5071, now=0.0, calls=()):
    table.spawned(wid, host="10.0.0.5", sip_port=port, pid=100, now=now)
    table.hello(wid, capacity=capacity, sip_port=port, pid=100, now=now)
    if calls:
        table.heartbeat(wid, calls, now)
    return table[wid]


def test_a_spawned_worker_takes_no_calls_until_it_says_hello():
    t = _table()
    t.spawned("w1", host="10.0.0.5", sip_port=5071, pid=7, now=0.0)
    assert t["w1"].state is S.STARTING and t.pick(0.0) is None
    t.hello("w1", capacity=2, sip_port=5071, pid=7, now=1.0)
    pick = t.pick(1.0)
    assert (pick.worker_id, pick.host, pick.sip_port) == ("w1", "10.0.0.5", 5071)


def test_a_heartbeat_before_hello_is_refused():
    t = _table()
    t.spawned("w1", host="h", sip_port=5071, pid=7, now=0.0)
    with pytest.raises(IllegalWorkerTransition):
        t.heartbeat("w1", [], 1.0)


def test_a_heartbeat_from_an_unknown_worker_is_refused():
    with pytest.raises(UnknownWorker, match="w9"):
        _table().heartbeat("w9", [], 0.0)


@pytest.mark.parametrize("capacity,port,field", [
    (0, 5071, "capacity"), (-1, 5071, "capacity"), (True, 5071, "capacity"),
    (2, 0, "sip_port"), (2, 70000, "sip_port"),
])
def test_a_hello_with_an_unusable_capacity_or_port_is_refused_and_changes_nothing(
        capacity, port, field):
    t = _table()
    t.spawned("w1", host="h", sip_port=5071, pid=7, now=0.0)
    with pytest.raises(InvalidHello, match=f"w1: {field}"):
        t.hello("w1", capacity=capacity, sip_port=port, pid=7, now=1.0)
    assert t["w1"].state is S.STARTING and t["w1"].capacity == 0


def test_pick_prefers_the_worker_with_most_free_slots():
    t = _table()
    _ready(t, "w1", capacity=2, calls=["a"])
    _ready(t, "w2", capacity=2, port=5072)
    assert t.pick(1.0).worker_id == "w2"


def test_a_burst_of_invites_is_spread_before_heartbeats_catch_up():
    t = _table()
    for i in range(3):
        _ready(t, f"w{i + 1}", capacity=2, port=5071 + i)
    picks = [t.pick(1.0).worker_id for _ in range(6)]
    assert sorted(picks) == ["w1", "w1", "w2", "w2", "w3", "w3"]
    assert picks[:3] == ["w1", "w2", "w3"]   # round the table before doubling up
    assert t.pick(1.0) is None


def test_a_reservation_lapses_after_its_time():
    t = _table(reservation=5.0)
    _ready(t, "w1", capacity=1)
    assert t.pick(1.0) is not None
    assert t.pick(5.9) is None
    assert t.pick(6.01) is not None


def test_calls_new_in_a_heartbeat_use_up_the_reservations_made_for_them():
    t = _table()
    _ready(t, "w1", capacity=3)
    t.pick(1.0), t.pick(1.0)
    t.heartbeat("w1", ["c1"], 2.0)           # one of the two redirected calls arrived
    assert t["w1"].reserved(2.0) == 1 and t["w1"].free_slots(2.0) == 1
    t.heartbeat("w1", ["c1"], 3.0)           # nothing new: the other reservation stays
    assert t["w1"].reserved(3.0) == 1
    t.heartbeat("w1", ["c1", "c2"], 4.0)
    assert t["w1"].reserved(4.0) == 0 and t["w1"].free_slots(4.0) == 1


def test_full_draining_starting_and_dead_workers_are_never_picked():
    t = _table()
    _ready(t, "full", capacity=1, calls=["x"])
    _ready(t, "draining", port=5072)
    t.drain("draining")
    t.spawned("starting", host="h", sip_port=5073, pid=1, now=0.0)
    _ready(t, "dead", port=5074)
    t.exited("dead")
    assert t.pick(1.0) is None
    assert t.counts() == {S.READY: 1, S.DRAINING: 1, S.STARTING: 1, S.DEAD: 1}
    assert t.slots(1.0) == {"capacity": 1, "active": 1, "reserved": 0, "free": 0}


def test_a_dead_worker_loses_its_calls_and_reservations():
    t = _table()
    _ready(t, "w1", capacity=3, calls=["a"])
    t.pick(0.0)
    w = t.silent("w1")
    assert w.state is S.DEAD and w.active_calls == frozenset() and w.reservations == []


def test_silence_bounds_apply_to_starting_and_live_workers_only():
    t = _table()
    t.spawned("starting", host="h", sip_port=5071, pid=1, now=0.0)
    _ready(t, "ready", port=5072, now=0.0)
    t.heartbeat("ready", [], 8.0)
    _ready(t, "quiet", port=5073, now=0.0)
    _ready(t, "dead", port=5074, now=0.0)
    t.exited("dead")
    assert t.silent_workers(10.0, silence_seconds=5.0, hello_seconds_max=20.0) == ["quiet"]
    assert sorted(t.silent_workers(21.0, silence_seconds=5.0, hello_seconds_max=20.0)) == [
        "quiet", "ready", "starting"]


def test_a_worker_not_started_by_the_supervisor_joins_by_hello_and_rejoins_after_dying():
    t = _table()
    w = t.hello("ext", capacity=2, sip_port=5090, pid=5, now=0.0)
    assert w.state is S.READY and not w.managed and w.host == "10.0.0.5"
    t.silent("ext")
    assert t.hello("ext", capacity=2, sip_port=5090, pid=6, now=1.0).state is S.READY


def test_a_managed_worker_declared_dead_cannot_come_back_by_hello():
    t = _table()
    _ready(t, "w1")
    t.silent("w1")
    with pytest.raises(IllegalWorkerTransition):
        t.hello("w1", capacity=2, sip_port=5071, pid=100, now=1.0)


# -- hypothesis: slots are never over-committed ------------------------------------------------

_ops = st.lists(st.one_of(
    st.tuples(st.just("pick"), st.integers(0, 2)),
    st.tuples(st.just("beat"), st.integers(0, 2), st.integers(0, 4)),
    st.tuples(st.just("wait"), st.floats(0.0, 3.0)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(capacities=st.lists(st.integers(1, 4), min_size=1, max_size=3), ops=_ops)
def test_picks_never_exceed_what_workers_announced_and_reported(capacities, ops):
    t = _table(reservation=2.0)
    ids = [f"w{i}" for i in range(len(capacities))]
    for i, (wid, cap) in enumerate(zip(ids, capacities)):
        _ready(t, wid, capacity=cap, port=5071 + i)
    now, serial = 0.0, 0
    for op in ops:
        if op[0] == "wait":
            now += op[1]
        elif op[0] == "beat":
            wid = ids[op[1] % len(ids)]
            serial += 1
            t.heartbeat(wid, [f"{wid}-{serial}-{k}" for k in range(op[2])], now)
        else:
            free_before = {w.worker_id: w.free_slots(now) for w in t}
            pick = t.pick(now)
            if pick is None:
                assert all(v == 0 for v in free_before.values())
            else:
                assert free_before[pick.worker_id] == max(free_before.values()) > 0
                assert t[pick.worker_id].free_slots(now) == free_before[pick.worker_id] - 1
        for w in t:
            assert w.free_slots(now) >= 0
            assert len(w.active_calls) > w.capacity or \
                len(w.active_calls) + w.reserved(now) <= w.capacity


# -- the port plan and the command line --------------------------------------------------------

def _switch(**kw):
    return dataclasses.replace(SwitchSettings(), **kw)


@settings(max_examples=60, deadline=None)
@given(workers=st.integers(1, 40), per=st.integers(4, 60).map(lambda n: n * 2),
       rtp_base=st.integers(5000, 20000).map(lambda n: n * 2))
def test_every_worker_gets_its_own_sip_port_and_rtp_range(workers, per, rtp_base):
    specs = plan_workers(_switch(workers=workers, rtp_ports_per_worker=per, rtp_port_base=rtp_base,
                                 worker_sip_port_base=5070, frontdoor_port=5060))
    assert [s.worker_id for s in specs] == [f"w{i + 1}" for i in range(workers)]
    assert len({s.sip_port for s in specs}) == workers
    ranges = sorted((s.rtp_port_min, s.rtp_port_max) for s in specs)
    for (lo, hi), (next_lo, _) in zip(ranges, ranges[1:]):
        assert hi - lo + 1 == per and hi < next_lo
    assert all(s.rtp_port_min % 2 == 0 for s in specs)
    assert not any(lo <= s.sip_port <= hi for s in specs for lo, hi in ranges)


@pytest.mark.parametrize("overrides,key", [
    (dict(workers=-1), "switch.workers"),
    (dict(rtp_ports_per_worker=6), "switch.rtp_ports_per_worker"),
    (dict(rtp_ports_per_worker=11), "switch.rtp_ports_per_worker"),
    (dict(rtp_port_base=20001), "switch.rtp_port_base"),
    (dict(worker_sip_port_base=20050), "overlap the RTP ports"),
    (dict(frontdoor_port=5071), "switch.frontdoor_port"),
    (dict(workers=700, rtp_ports_per_worker=100), "ports end at 65535"),
    (dict(core_amp_port=0), "switch.core_amp_port"),
])
def test_a_port_plan_that_cannot_work_is_a_config_error_naming_the_key(overrides, key):
    with pytest.raises(SettingsError, match=key.replace(".", r"\.")):
        plan_workers(_switch(**overrides))


def test_no_workers_is_a_valid_plan_for_a_node_whose_workers_run_elsewhere():
    assert plan_workers(_switch(workers=0)) == ()


def test_the_worker_command_line_carries_its_id_ports_and_core_address():
    s = _switch(workers=2, core_amp_host="127.0.0.2", core_amp_port=7100)
    spec = plan_workers(s)[1]
    told = WorkerProcessSettings(switch=s, worker=WorkerSettings(pin_header="X-Pin"),
                                 log_level="debug")
    argv = worker_argv(spec, s, command=["pyworker"], worker_settings=told, data_dir="/var/ics")
    assert argv == ["pyworker", "--worker-id", "w2", "--sip-port", "5071",
                    "--rtp-port-min", "20100", "--rtp-port-max", "20199",
                    "--core", "tcp:127.0.0.2:7100", "--settings", told.to_json(),
                    "--data-dir", "/var/ics"]
    assert WorkerProcessSettings.from_json(argv[argv.index("--settings") + 1]) == told
    default = worker_argv(spec, s)
    assert default[1:3] == ["-m", "switch.worker"] and "--settings" not in default


# -- the restart policy ------------------------------------------------------------------------

def _delay(restarts=(), failures=1, now=100.0, per_minute=5):
    return restart_delay(restarts, failures, now, backoff_seconds_min=0.5,
                         backoff_seconds_max=30.0, restarts_per_minute_max=per_minute)


def test_restart_waits_double_with_each_consecutive_failure_up_to_the_bound():
    assert [_delay(failures=f) for f in (1, 2, 3, 4, 7, 8, 500)] == [
        0.5, 1.0, 2.0, 4.0, 30.0, 30.0, 30.0]


def test_restarts_beyond_the_per_minute_bound_wait_for_the_window():
    assert _delay(restarts=[50.0, 60.0, 70.0, 80.0], per_minute=5) == 0.5
    assert _delay(restarts=[50.0, 60.0, 70.0, 80.0, 90.0], per_minute=5) == pytest.approx(10.0)
    assert _delay(restarts=[30.0, 60.0, 70.0, 80.0, 90.0], per_minute=5) == 0.5   # 30 has aged out
