"""Keeps this node's media workers running and knows how many call slots each has free.

Two parts, one concept:

- `WorkerTable` (pure: no I/O, time is passed in). Per worker: its state (`WorkerState`, moved only
  by `next_state`), the capacity it announced in Hello, the calls its last Heartbeat listed, the
  slots the front door reserved for INVITEs it just redirected there, and when it was last heard.
  `pick()` chooses the ready worker with the most free slots and reserves one for
  `slot_reservation_seconds`, so a burst of INVITEs is spread before heartbeats catch up.
- `Supervisor` (the Twisted adapter). Spawns the workers planned from `[switch]` with the injected
  reactor's `spawnProcess`, feeds Hello/Heartbeat from the core's AMP responder into the table,
  declares a worker dead when it exits or falls silent, tells the core (`on_worker_lost`, whose
  vanished-worker rule settles that worker's calls) and restarts it after a backoff bounded by
  `restart_backoff_seconds_max` and `restarts_per_minute_max`.

`WorkerTable` and the plan/backoff functions use no Twisted; they live here beside their only
adapter. Worker ids are ``w1`` .. ``wN``; worker i (from 0) listens for SIP on ``worker_sip_port_base + i``
and owns RTP ports ``[rtp_port_base + i*n, rtp_port_base + (i+1)*n - 1]`` with
``n = rtp_ports_per_worker``, so no two workers' ranges overlap. A restarted worker keeps its id
and its ports.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from twisted.internet import defer, error, process, protocol, task
from twisted.logger import Logger, LogLevel

from ivr.flows.machine import IllegalMove
from switch.errors import SwitchError
from switch.settings import SettingsError, SwitchSettings, WorkerProcessSettings
from switch.wire import amp_auth
from switch.processes import lifeline, stale

__all__ = [
    "WorkerState", "WorkerEvent", "next_state", "IllegalWorkerTransition", "UnknownWorker",
    "InvalidHello", "Worker", "Pick", "WorkerTable", "WorkerSpec", "plan_workers",
    "worker_argv", "restart_delay", "Supervisor", "STABLE_RUN_SECONDS", "RESTART_WINDOW_SECONDS",
    "OUTPUT_LINE_LENGTH_MAX",
]

# A worker that ran at least this long before dying is not crash-looping: its next restart waits
# only restart_backoff_seconds_min again.
STABLE_RUN_SECONDS = 60.0
# restarts_per_minute_max counts restarts in a sliding window of this many seconds.
RESTART_WINDOW_SECONDS = 60.0
# A worker's stdout/stderr is logged line by line; longer lines are cut.
OUTPUT_LINE_LENGTH_MAX = 4_096
SIP_PORT_MAX = 65_535
# Heartbeats list a call still in set-up (no call id from the core yet) as SETUP_PREFIX + a token.
SETUP_PREFIX = "setup:"
# After stop()'s SIGKILL, a worker not reaped within this many more seconds is given up on, so a
# node's shutdown is bounded by worker_stop_seconds + STOP_REAP_SECONDS.
STOP_REAP_SECONDS = 2.0
STOP_REAP_INTERVAL_SECONDS = 0.1


class WorkerState(enum.Enum):
    STARTING = "starting"   # process spawned, no Hello yet: takes no calls
    READY = "ready"         # said Hello and keeps heartbeating: the front door sends it calls
    DRAINING = "draining"   # alive, finishing its calls, takes no new ones
    DEAD = "dead"           # exited or presumed dead (silent); the supervisor restarts it


class WorkerEvent(enum.Enum):
    SPAWNED = "spawned"     # the supervisor started a process for it (or it appeared by Hello)
    HELLO = "hello"         # it said Hello on an AMP connection (once per connection)
    HEARTBEAT = "heartbeat"
    DRAIN = "drain"         # an operator or a shutdown asked it to take no new calls
    SILENT = "silent"       # no Hello or Heartbeat within the bound: presumed dead
    EXITED = "exited"       # its process ended


_S, _E = WorkerState, WorkerEvent
_TRANSITIONS: Mapping[tuple[WorkerState, WorkerEvent], WorkerState] = {
    (_S.DEAD, _E.SPAWNED): _S.STARTING,
    (_S.STARTING, _E.HELLO): _S.READY,
    (_S.READY, _E.HELLO): _S.READY,            # its AMP link reconnected
    (_S.DRAINING, _E.HELLO): _S.DRAINING,
    (_S.READY, _E.HEARTBEAT): _S.READY,
    (_S.DRAINING, _E.HEARTBEAT): _S.DRAINING,
    (_S.STARTING, _E.DRAIN): _S.DRAINING,
    (_S.READY, _E.DRAIN): _S.DRAINING,
    (_S.DRAINING, _E.DRAIN): _S.DRAINING,
    (_S.STARTING, _E.SILENT): _S.DEAD,
    (_S.READY, _E.SILENT): _S.DEAD,
    (_S.DRAINING, _E.SILENT): _S.DEAD,
    (_S.STARTING, _E.EXITED): _S.DEAD,
    (_S.READY, _E.EXITED): _S.DEAD,
    (_S.DRAINING, _E.EXITED): _S.DEAD,
    (_S.DEAD, _E.EXITED): _S.DEAD,             # declared silent first, then the process ended
}
del _S, _E


class IllegalWorkerTransition(IllegalMove):
    """An event that cannot happen to a worker in its state (e.g. a Heartbeat before Hello)."""

    def __init__(self, worker_id: str, state: WorkerState, event: WorkerEvent):
        super().__init__(f"worker {worker_id}", state, event,
                         f"worker {worker_id}: {event.value} is not possible while {state.value}")
        self.worker_id = worker_id


class UnknownWorker(SwitchError):
    """A Heartbeat (or command) names a worker this node never heard a Hello from."""

    def __init__(self, worker_id: str):
        super().__init__(f"unknown worker {worker_id!r}", what="unknown worker", where="worker",
                         value=worker_id)
        self.worker_id = worker_id


class InvalidHello(SwitchError):
    """A Hello whose capacity or SIP port is unusable; the message names the field and value."""


def next_state(worker_id: str, state: WorkerState, event: WorkerEvent) -> WorkerState:
    """The state after `event`, or IllegalWorkerTransition."""
    try:
        return _TRANSITIONS[state, event]
    except KeyError:
        raise IllegalWorkerTransition(worker_id, state, event) from None


@dataclasses.dataclass
class Worker:
    """What the core knows about one worker. Mutated only by its WorkerTable."""
    worker_id: str
    host: str
    sip_port: int
    state: WorkerState = WorkerState.DEAD
    capacity: int = 0                       # calls, as announced in Hello
    active_calls: frozenset[str] = frozenset()
    reservations: list[float] = dataclasses.field(default_factory=list)  # expiry times, ascending
    last_seen: float = -math.inf            # last Hello/Heartbeat, or the spawn time
    pid: int | None = None
    last_picked: float = -math.inf
    managed: bool = True                    # started by the supervisor (not joined by Hello)

    def reserved(self, now: float) -> int:
        return sum(1 for expiry in self.reservations if expiry > now)

    def free_slots(self, now: float) -> int:
        if self.state is not WorkerState.READY:
            return 0
        return max(0, self.capacity - len(self.active_calls) - self.reserved(now))


@dataclasses.dataclass(frozen=True)
class Pick:
    """Where the front door sends an INVITE; a slot is reserved there until `reserved_until`."""
    worker_id: str
    host: str
    sip_port: int
    reserved_until: float


class WorkerTable:
    """The node's workers and their free slots. Pure: every method takes the time it happens at."""

    def __init__(self, *, slot_reservation_seconds: float, default_host: str = "127.0.0.1"):
        if not slot_reservation_seconds > 0:
            raise ValueError("slot_reservation_seconds must be > 0")
        self.slot_reservation_seconds = slot_reservation_seconds
        self.default_host = default_host
        self._workers: dict[str, Worker] = {}

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._workers

    def __getitem__(self, worker_id: str) -> Worker:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise UnknownWorker(worker_id) from None

    def get(self, worker_id: str) -> Worker | None:
        return self._workers.get(worker_id)

    def _move(self, worker: Worker, event: WorkerEvent) -> None:
        worker.state = next_state(worker.worker_id, worker.state, event)

    def spawned(self, worker_id: str, *, host: str, sip_port: int, pid: int | None,
                now: float, managed: bool = True) -> Worker:
        """A process was started for `worker_id` (new, or replacing a dead one)."""
        worker = self._workers.get(worker_id)
        if worker is None:
            worker = self._workers[worker_id] = Worker(worker_id, host, sip_port)
        self._move(worker, WorkerEvent.SPAWNED)
        worker.host, worker.sip_port, worker.pid, worker.managed = host, sip_port, pid, managed
        worker.capacity, worker.active_calls, worker.reservations = 0, frozenset(), []
        worker.last_seen = now
        return worker

    def hello(self, worker_id: str, *, capacity: int, sip_port: int, pid: int, now: float,
              host: str | None = None) -> Worker:
        """The worker said Hello. A worker the supervisor did not start (run by hand, or by
        another service manager) joins the table here, and joins again after it died; a worker
        the supervisor manages speaks only after the supervisor spawned it."""
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidHello(f"worker {worker_id}: capacity must be >= 1 call, got {capacity!r}",
                               where="capacity", value=capacity)
        if isinstance(sip_port, bool) or not isinstance(sip_port, int) \
                or not 1 <= sip_port <= SIP_PORT_MAX:
            raise InvalidHello(f"worker {worker_id}: sip_port must be 1..{SIP_PORT_MAX}, "
                               f"got {sip_port!r}", where="sip_port", value=sip_port)
        worker = self._workers.get(worker_id)
        if worker is None or (worker.state is WorkerState.DEAD and not worker.managed):
            worker = self.spawned(worker_id, host=host or self.default_host, sip_port=sip_port,
                                  pid=pid, now=now, managed=False)
        self._move(worker, WorkerEvent.HELLO)
        worker.capacity, worker.sip_port, worker.pid = capacity, sip_port, pid
        if host:
            worker.host = host
        worker.last_seen = now
        return worker

    def heartbeat(self, worker_id: str, active_calls: Iterable[str], now: float) -> Worker:
        """The worker listed the calls it holds. Calls new since its last heartbeat are calls the
        front door redirected there: each uses up the oldest reservation."""
        worker = self[worker_id]
        self._move(worker, WorkerEvent.HEARTBEAT)
        calls = frozenset(active_calls)
        # A call in set-up shows as a placeholder, then by its call id once authorized: a
        # placeholder that gave way to a new call id is the same call, not a second arrival.
        promoted = sum(1 for c in worker.active_calls - calls if c.startswith(SETUP_PREFIX))
        arrived = max(0, len(calls - worker.active_calls) - promoted)
        worker.reservations = [e for e in worker.reservations if e > now][arrived:]
        worker.active_calls = calls
        worker.last_seen = now
        return worker

    def drain(self, worker_id: str) -> Worker:
        worker = self[worker_id]
        self._move(worker, WorkerEvent.DRAIN)
        return worker

    def silent(self, worker_id: str) -> Worker:
        return self._dead(worker_id, WorkerEvent.SILENT)

    def exited(self, worker_id: str) -> Worker:
        return self._dead(worker_id, WorkerEvent.EXITED)

    def _dead(self, worker_id: str, event: WorkerEvent) -> Worker:
        worker = self[worker_id]
        self._move(worker, event)
        worker.active_calls, worker.reservations = frozenset(), []
        return worker

    def silent_workers(self, now: float, *, silence_seconds: float,
                       hello_seconds_max: float) -> list[str]:
        """Workers to presume dead: started but no Hello within `hello_seconds_max`, or no
        Heartbeat within `silence_seconds`."""
        out = []
        for w in self._workers.values():
            if w.state is WorkerState.STARTING:
                bound = hello_seconds_max
            elif w.state in (WorkerState.READY, WorkerState.DRAINING):
                bound = silence_seconds
            else:
                continue
            if now - w.last_seen > bound:
                out.append(w.worker_id)
        return out

    def pick(self, now: float) -> Pick | None:
        """The ready worker with the most free slots (ties: the least recently picked), with one
        slot reserved; None when every worker is full, starting, draining or dead."""
        best: Worker | None = None
        best_key: tuple[int, float, str] | None = None
        for w in self._workers.values():
            free = w.free_slots(now)
            if free <= 0:
                continue
            key = (-free, w.last_picked, w.worker_id)
            if best_key is None or key < best_key:
                best, best_key = w, key
        if best is None:
            return None
        until = now + self.slot_reservation_seconds
        best.reservations = [e for e in best.reservations if e > now] + [until]
        best.last_picked = now
        return Pick(best.worker_id, best.host, best.sip_port, until)

    def counts(self) -> dict[WorkerState, int]:
        out = dict.fromkeys(WorkerState, 0)
        for w in self._workers.values():
            out[w.state] += 1
        return out

    def slots(self, now: float) -> dict[str, int]:
        """Call slots of ready workers: capacity, active, reserved and free."""
        ready = [w for w in self._workers.values() if w.state is WorkerState.READY]
        return {"capacity": sum(w.capacity for w in ready),
                "active": sum(len(w.active_calls) for w in ready),
                "reserved": sum(w.reserved(now) for w in ready),
                "free": sum(w.free_slots(now) for w in ready)}


# -- the plan: ports and command lines ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    worker_id: str
    sip_port: int
    rtp_port_min: int
    rtp_port_max: int


def plan_workers(settings: SwitchSettings) -> tuple[WorkerSpec, ...]:
    """Each worker's id and ports from `[switch]`, or SettingsError naming the keys that clash."""
    s = settings
    if s.workers < 0:
        raise SettingsError(f"switch.workers must be >= 0, got {s.workers}")
    if s.rtp_ports_per_worker < 8 or s.rtp_ports_per_worker % 2:
        raise SettingsError("switch.rtp_ports_per_worker must be even and >= 8 (RTP and RTCP for "
                          f"at least 4 call legs), got {s.rtp_ports_per_worker}")
    if s.rtp_port_base % 2:
        raise SettingsError(f"switch.rtp_port_base must be even (RTP on even ports), "
                          f"got {s.rtp_port_base}")
    for key in ("frontdoor_port", "worker_sip_port_base", "rtp_port_base", "core_amp_port"):
        if not 1 <= getattr(s, key) <= SIP_PORT_MAX:
            raise SettingsError(f"switch.{key} must be 1..{SIP_PORT_MAX}, got {getattr(s, key)}")
    specs = tuple(
        WorkerSpec(f"w{i + 1}", s.worker_sip_port_base + i,
                   s.rtp_port_base + i * s.rtp_ports_per_worker,
                   s.rtp_port_base + (i + 1) * s.rtp_ports_per_worker - 1)
        for i in range(s.workers))
    if not specs:
        return specs
    sip_lo, sip_hi = specs[0].sip_port, specs[-1].sip_port
    rtp_lo, rtp_hi = specs[0].rtp_port_min, specs[-1].rtp_port_max
    if sip_hi > SIP_PORT_MAX or rtp_hi > SIP_PORT_MAX:
        raise SettingsError(f"switch: {s.workers} workers need SIP ports up to {sip_hi} and RTP "
                          f"ports up to {rtp_hi}; ports end at {SIP_PORT_MAX}")
    if sip_lo <= rtp_hi and rtp_lo <= sip_hi:
        raise SettingsError(f"switch: worker SIP ports {sip_lo}-{sip_hi} overlap the RTP ports "
                          f"{rtp_lo}-{rtp_hi} (worker_sip_port_base, rtp_port_base)")
    if sip_lo <= s.frontdoor_port <= sip_hi or rtp_lo <= s.frontdoor_port <= rtp_hi:
        raise SettingsError(f"switch.frontdoor_port {s.frontdoor_port} is inside the workers' "
                          f"ports (SIP {sip_lo}-{sip_hi}, RTP {rtp_lo}-{rtp_hi})")
    return specs


def worker_argv(spec: WorkerSpec, settings: SwitchSettings, *, command: Sequence[str] = (),
                worker_settings: WorkerProcessSettings | None = None,
                data_dir: str | None = None) -> list[str]:
    """The command line that starts `spec`'s worker (see switch/worker/__main__.py): its ports,
    the core's address and its settings (`--settings`, JSON), so it reads no config file."""
    argv = list(command or settings.worker_command or [sys.executable, "-m", "switch.worker"])
    argv += ["--worker-id", spec.worker_id, "--sip-port", str(spec.sip_port),
             "--rtp-port-min", str(spec.rtp_port_min), "--rtp-port-max", str(spec.rtp_port_max),
             "--core", f"tcp:{settings.core_amp_host}:{settings.core_amp_port}"]
    if worker_settings is not None:
        argv += ["--settings", worker_settings.to_json()]
    if data_dir:
        argv += ["--data-dir", data_dir]
    return argv


def restart_delay(restarts: Sequence[float], failures: int, now: float, *,
                  backoff_seconds_min: float, backoff_seconds_max: float,
                  restarts_per_minute_max: int) -> float:
    """Seconds to wait before starting a dead worker again.

    `failures` counts its consecutive short runs (1 after the first crash): the wait doubles from
    `backoff_seconds_min` up to `backoff_seconds_max`. `restarts` are the times of its earlier
    restarts: never more than `restarts_per_minute_max` of them in any 60-second window.
    """
    wait = 0.0
    if failures > 0:
        wait = min(backoff_seconds_max, backoff_seconds_min * 2 ** min(failures - 1, 32))
    recent = sorted(t for t in restarts if now - t < RESTART_WINDOW_SECONDS)
    if restarts_per_minute_max <= 0:
        return max(wait, backoff_seconds_max)
    if len(recent) >= restarts_per_minute_max:
        wait = max(wait, recent[-restarts_per_minute_max] + RESTART_WINDOW_SECONDS - now)
    return wait


# -- the Twisted adapter -----------------------------------------------------------------------

_log = Logger(namespace="switch.processes.supervisor")


_SLOT_HELP = {
    "capacity": "Call slots announced by ready media workers",
    "busy": "Slots of ready media workers holding a call",
    "reserved": "Slots of ready media workers the front door reserved for a redirected INVITE",
    "free": "Slots of ready media workers free for a new call",
}


class _TableCollector:
    """Exports the table at scrape time, so the gauges never drift from it."""

    def __init__(self, table: WorkerTable, seconds: Callable[[], float]):
        self._table, self._seconds = table, seconds

    def collect(self):
        by_state = GaugeMetricFamily("ics_workers", "Media workers by state", labels=["state"])
        for state, n in self._table.counts().items():
            by_state.add_metric([state.value], n)
        yield by_state
        # One gauge per quantity (free = capacity - busy - reserved): each sums across nodes.
        for kind, n in self._table.slots(self._seconds()).items():
            name = "busy" if kind == "active" else kind
            g = GaugeMetricFamily(f"ics_worker_slots_{name}", _SLOT_HELP[name])
            g.add_metric([], n)
            yield g


_RECORD_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warning": LogLevel.warn,
                  "error": LogLevel.error, "critical": LogLevel.critical}


_PJSIP_TIME = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}\s+")


def _worker_record(text: str) -> dict | None:
    """A worker's log line as the JSON object it wrote (switch.processes.logs with log_format json), or None
    for any other output."""
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("event"), str) else None


class _WorkerOutput(protocol.ProcessProtocol):
    """One worker process: logs its output by line and reports its end."""

    def __init__(self, supervisor: Supervisor, child: _Child):
        self._supervisor, self._child = supervisor, child
        self._partial = {1: b"", 2: b""}

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()[-OUTPUT_LINE_LENGTH_MAX:]
        for line in lines:
            self._emit(fd, line)

    def _emit(self, fd: int, line: bytes) -> None:
        text = line[:OUTPUT_LINE_LENGTH_MAX].decode("utf-8", "replace").rstrip()
        if not text:
            return
        worker_id = self._child.spec.worker_id
        stream = "stderr" if fd == 2 else "stdout"
        record = _worker_record(text)
        if record is None:          # pjsip's own output, a traceback before logging started
            # pjsip stamps its lines with its own clock; the node's record has the time already.
            _log.info("{output}", event="worker_output", worker_id=worker_id, stream=stream,
                      line=text, output=_PJSIP_TIME.sub("", text, count=1))
            return
        # The worker's own structured record: relayed with its fields (and its timestamp), under
        # the id this supervisor gave it, whatever the line claims.
        record["worker"] = worker_id
        _log.emit(_RECORD_LEVELS.get(record.get("level"), LogLevel.info), "{line}",
                  event="worker_output", worker_id=worker_id, stream=stream,
                  line=str(record.get("event", "")), worker_record=record)

    def processEnded(self, reason) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._emit(fd, rest)
        self._supervisor._exited(self._child, reason.value)


@dataclasses.dataclass
class _Child:
    spec: WorkerSpec
    transport: object | None = None         # IProcessTransport while the process runs
    started_at: float = 0.0
    failures: int = 0                       # consecutive runs shorter than STABLE_RUN_SECONDS
    restarts: deque = dataclasses.field(default_factory=deque)
    pending: object | None = None           # IDelayedCall of a scheduled restart
    ended: defer.Deferred | None = None
    lost_reported: bool = False
    key: bytes | None = None                # this process's AMP key (switch.wire.amp_auth)


class Supervisor:
    """Spawns the planned workers, keeps them alive, and holds the table the front door picks from.

    The core's AMP responder calls `hello` and `heartbeat` as those commands arrive (mapping
    UnknownWorker, InvalidHello and IllegalWorkerTransition to BadRequest), and passes
    `on_worker_lost(worker_id, reason)` to settle the calls of a worker that died ("exited") or
    went quiet ("silent"); it is called once per worker process.

    `settings.core_amp_port` must be the port the core's AMP listener is bound to (workers are
    told to connect there), so build the supervisor once that port is known. Metrics register on
    `registry` (prometheus' default one unless given; None for none): one supervisor per registry.
    """

    def __init__(self, reactor, settings: SwitchSettings, *,
                 command: Sequence[str] = (),
                 worker_settings: WorkerProcessSettings | None = None,
                 data_dir: str | None = None, env: Mapping[str, str] | None = None,
                 table: WorkerTable | None = None,
                 on_worker_lost: Callable[[str, str], object] | None = None,
                 registry: CollectorRegistry | None = REGISTRY):
        self._reactor = reactor
        self.settings = settings
        self.specs = plan_workers(settings)
        self.table = table or WorkerTable(slot_reservation_seconds=settings.slot_reservation_seconds,
                                          default_host=settings.sip_host)
        self._command = tuple(command)
        # What each worker is told; the node builds it from its config (ivr, worker, log level).
        self._worker_settings = worker_settings or WorkerProcessSettings(switch=settings)
        self._data_dir = data_dir
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._on_worker_lost = on_worker_lost
        self._children = {spec.worker_id: _Child(spec) for spec in self.specs}
        self._watch: task.LoopingCall | None = None
        self._stopping = False
        self._registry = registry
        self._collector = _TableCollector(self.table, reactor.seconds)
        self._restarts_total = Counter(
            "ics_worker_restarts_total", "Media worker restarts after an exit or silence",
            ["worker"], registry=None)
        if registry is not None:
            registry.register(self._collector)
            registry.register(self._restarts_total)

    # -- lifecycle

    def start(self) -> None:
        """Spawn every planned worker and start watching for silent ones."""
        for child in self._children.values():
            self._spawn(child)
        s = self.settings
        interval = max(0.05, min(1.0, s.worker_silence_seconds / 4, s.worker_hello_seconds_max / 4))
        self._watch = task.LoopingCall(self._check)
        self._watch.clock = self._reactor
        self._watch.start(interval, now=False)

    def stop(self) -> defer.Deferred:
        """Stop restarting; TERM every worker, KILL those still running after
        `worker_stop_seconds`. Fires when all have ended."""
        self._stopping = True
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        if self._registry is not None:
            for collector in (self._collector, self._restarts_total):
                try:
                    self._registry.unregister(collector)
                except KeyError:
                    pass
            self._registry = None
        waits = []
        bound = self.settings.worker_stop_seconds + STOP_REAP_SECONDS
        for child in self._children.values():
            if child.pending is not None and child.pending.active():
                child.pending.cancel()
            child.pending = None
            if child.transport is not None and child.ended is not None:
                waits.append(child.ended)
                self._signal(child, "TERM")
                kill = self._reactor.callLater(self.settings.worker_stop_seconds,
                                               self._signal, child, "KILL")
                give_up = self._reactor.callLater(bound, self._abandon, child)
                child.ended.addBoth(lambda r, k=kill, g=give_up: (
                    [c.cancel() for c in (k, g) if c.active()], r)[1])
        # Exits are noticed through SIGCHLD; reap as well while stopping, so a missed signal
        # cannot leave a zombie that keeps `ics serve` waiting.
        reaper = task.LoopingCall(process.reapAllProcesses)
        reaper.clock = self._reactor
        if waits:
            reaper.start(STOP_REAP_INTERVAL_SECONDS, now=False)
        done = defer.DeferredList(waits, consumeErrors=True)
        done.addBoth(lambda _: reaper.stop() if reaper.running else None)
        return done.addCallback(lambda _: None)

    def _abandon(self, child: _Child) -> None:
        """A worker still not reaped long after SIGKILL: stop waiting for it (it is logged)."""
        if child.ended is None:
            return
        _log.error("worker {worker_id} not reaped {bound}s after stop; giving up on it",
                   event="worker_stop_abandoned", worker_id=child.spec.worker_id,
                   bound=self.settings.worker_stop_seconds + STOP_REAP_SECONDS,
                   pid=getattr(child.transport, "pid", None))
        ended, child.ended = child.ended, None
        ended.callback(None)

    # -- what the core's AMP responder reports

    def hello(self, worker_id: str, capacity: int, sip_port: int, pid: int) -> Worker:
        now = self._reactor.seconds()
        child = self._children.get(worker_id)
        worker = self.table.hello(worker_id, capacity=capacity, sip_port=sip_port, pid=pid,
                                  now=now)
        if child is not None and child.spec.sip_port != sip_port:
            _log.warn("worker {worker_id} listens on {sip_port}, planned {planned}",
                      event="worker_port_mismatch", worker_id=worker_id, sip_port=sip_port,
                      planned=child.spec.sip_port)
        _log.info("worker {worker_id} ready: {capacity} calls on SIP port {sip_port} (pid {pid})",
                  event="worker_ready", worker_id=worker_id, capacity=capacity,
                  sip_port=sip_port, pid=pid, external=child is None)
        return worker

    def heartbeat(self, worker_id: str, active_calls: Iterable[str]) -> Worker:
        return self.table.heartbeat(worker_id, active_calls, self._reactor.seconds())

    @property
    def run_dir(self) -> Path | None:
        """Where the workers' pid files are kept (one per SIP port), if the node has a data_dir."""
        return Path(self._data_dir) / "run" if self._data_dir else None

    def stale_workers(self) -> dict[int, str]:
        """Processes left over from an earlier run of this node on our workers' ids and ports."""
        command = list(self._command or self.settings.worker_command
                       or [sys.executable, "-m", "switch.worker"])
        return stale.find_stale(self.run_dir, [(s.worker_id, s.sip_port) for s in self.specs],
                                command[1:])

    def credentials(self, worker_id: str) -> amp_auth.Credentials | None:
        """What a Hello claiming `worker_id` must prove: the key of the process we started for
        it, its planned SIP port and its pid. None for ids we did not start or not running."""
        child = self._children.get(worker_id)
        if child is None or child.transport is None or child.key is None:
            return None
        return amp_auth.Credentials(child.key, child.spec.sip_port,
                                    getattr(child.transport, "pid", None))

    def summary(self) -> dict[str, list[str]]:
        """Worker ids by state, for /health."""
        out: dict[str, list[str]] = {state.value: [] for state in WorkerState}
        for w in self.table:
            out[w.state.value].append(w.worker_id)
        return {state: sorted(ids) for state, ids in out.items()}

    def drain(self, worker_id: str) -> Worker:
        """Send no new calls to `worker_id`; its current calls go on."""
        worker = self.table.drain(worker_id)
        _log.info("worker {worker_id} draining", event="worker_draining", worker_id=worker_id)
        return worker

    # -- internals

    def pid(self, worker_id: str) -> int | None:
        """The pid of the running process for `worker_id`, if any."""
        child = self._children.get(worker_id)
        return getattr(child.transport, "pid", None) if child else None

    def restarts(self, worker_id: str) -> list[float]:
        """When `worker_id` was restarted (reactor seconds), oldest first."""
        return list(self._children[worker_id].restarts)

    def pending_restart(self, worker_id: str) -> float | None:
        """Seconds until `worker_id`'s scheduled restart, or None if none is scheduled."""
        pending = self._children[worker_id].pending
        if pending is None or not pending.active():
            return None
        return pending.getTime() - self._reactor.seconds()

    def _spawn(self, child: _Child) -> None:
        child.pending = None
        if self._stopping:
            return
        spec = child.spec
        leftover = self.table.get(spec.worker_id)
        if leftover is not None and leftover.state is not WorkerState.DEAD:
            # A process we did not start took this id (e.g. a worker left over from an earlier
            # core): ours replaces it in the table.
            _log.warn("worker {worker_id} was already known ({state}); replacing it",
                      event="worker_replaced", worker_id=spec.worker_id,
                      state=leftover.state.value)
            self.table.exited(spec.worker_id)
        argv = worker_argv(spec, self.settings, command=self._command,
                           worker_settings=self._worker_settings, data_dir=self._data_dir)
        executable = shutil.which(argv[0]) or argv[0]
        now = self._reactor.seconds()
        child.started_at, child.lost_reported = now, False
        child.ended = defer.Deferred()
        child.key = amp_auth.new_key()      # a new key per process: an orphan's key is void
        env = {**self._env, amp_auth.KEY_ENV: child.key.hex(),
               lifeline.PARENT_PID_ENV: str(os.getpid())}
        proto = _WorkerOutput(self, child)
        try:
            child.transport = self._reactor.spawnProcess(proto, executable, argv, env=env)
        except Exception as e:  # e.g. the executable is missing: treat as a crash
            _log.error("worker {worker_id} could not be started: {error}", event="worker_spawn_failed",
                       worker_id=spec.worker_id, error=str(e))
            child.transport = None
            self.table.spawned(spec.worker_id, host=self.settings.sip_host,
                               sip_port=spec.sip_port, pid=None, now=now)
            self._exited(child, e)
            return
        pid = getattr(child.transport, "pid", None)
        if self.run_dir is not None and pid is not None:
            try:
                stale.write_pid_file(self.run_dir, spec.sip_port, pid)
            except OSError as e:
                _log.warn("cannot write the pid file of {worker_id}: {error}",
                          event="worker_pid_file_failed", worker_id=spec.worker_id, error=str(e))
        self.table.spawned(spec.worker_id, host=self.settings.sip_host, sip_port=spec.sip_port,
                           pid=pid, now=now)
        _log.info("worker {worker_id} started (pid {pid})", event="worker_spawned",
                  worker_id=spec.worker_id, pid=pid, argv=argv)

    def _exited(self, child: _Child, reason: BaseException) -> None:
        wid = child.spec.worker_id
        now = self._reactor.seconds()
        pid = getattr(child.transport, "pid", None)
        if self.run_dir is not None and pid is not None:
            stale.remove_pid_file(self.run_dir, child.spec.sip_port, pid)
        child.transport = None
        if wid in self.table:
            self.table.exited(wid)
        _log.info("worker {worker_id} ended: {reason}", event="worker_exited", worker_id=wid,
                  reason=str(reason), exit_code=getattr(reason, "exitCode", None),
                  signal=getattr(reason, "signal", None), ran_seconds=now - child.started_at)
        self._lost(child, "exited")
        ended, child.ended = child.ended, None
        if ended is not None:
            ended.callback(None)
        if self._stopping:
            return
        s = self.settings
        child.failures = child.failures + 1 if now - child.started_at < STABLE_RUN_SECONDS else 1
        delay = restart_delay(child.restarts, child.failures, now,
                              backoff_seconds_min=s.restart_backoff_seconds_min,
                              backoff_seconds_max=s.restart_backoff_seconds_max,
                              restarts_per_minute_max=s.restarts_per_minute_max)
        _log.info("worker {worker_id} restarts in {delay:.2f}s", event="worker_restart_scheduled",
                  worker_id=wid, delay=delay, failures=child.failures)
        child.pending = self._reactor.callLater(delay, self._restart, child)

    def _restart(self, child: _Child) -> None:
        now = self._reactor.seconds()
        child.restarts.append(now)
        while child.restarts and now - child.restarts[0] >= RESTART_WINDOW_SECONDS:
            child.restarts.popleft()
        self._restarts_total.labels(worker=child.spec.worker_id).inc()
        self._spawn(child)

    def _lost(self, child: _Child, reason: str) -> None:
        if child.lost_reported:
            return
        child.lost_reported = True
        self._report_lost(child.spec.worker_id, reason)

    def _report_lost(self, worker_id: str, reason: str) -> None:
        if self._on_worker_lost is None:
            return
        try:
            self._on_worker_lost(worker_id, reason)
        except Exception:
            _log.failure("on_worker_lost failed for {worker_id}", event="worker_lost_failed",
                         worker_id=worker_id)

    def _signal(self, child: _Child, signal_name: str) -> None:
        if child.transport is None:
            return
        try:
            child.transport.signalProcess(signal_name)
        except error.ProcessExitedAlready:
            pass

    def _check(self) -> None:
        # Exits are normally noticed through SIGCHLD; reaping here as well keeps a reactor run
        # without signal handlers (an asyncio loop driven directly) from missing one.
        process.reapAllProcesses()
        s = self.settings
        now = self._reactor.seconds()
        for wid in self.table.silent_workers(now, silence_seconds=s.worker_silence_seconds,
                                             hello_seconds_max=s.worker_hello_seconds_max):
            self.table.silent(wid)
            _log.warn("worker {worker_id} silent: presumed dead", event="worker_silent",
                      worker_id=wid)
            child = self._children.get(wid)
            if child is None:      # a worker we did not start: nothing to kill or restart
                self._report_lost(wid, "silent")
                continue
            self._lost(child, "silent")
            self._signal(child, "KILL")
