"""The simulator: a seeded scenario of calls and faults, run against the real core one message at a
time on a simulated clock, then checked (`checks`).

Time is a heap of timers in simulated milliseconds. The core gets each message whole before the
next is delivered (the order, not the wall clock, decides every race), so a seed's run is one
sequence of database statements and replays exactly. Real parts: PostgreSQL, the ledger, the
core (`switch.control.core.Core`), its AMP responders (`switch.control.service.WorkerLink`, over loopback TCP)
and the node's sweep (`ops.node.Node.sweep`). Simulated: workers (`worker`), the network
between them and the core (`network`), the clock (`clock`), the core process's death and the
database's absence (`storage`, `host`). What happens is drawn up front from the seed (`scenario`).

A core crash is modelled, not done with SIGKILL: the core dies at the n-th database statement of
the message (or sweep) it is handling, its open transaction rolls back, its links drop, and after
a downtime a new `Core` with new connections and an empty tariff cache serves the same database.
That is what a SIGKILL leaves behind, at a statement chosen by the seed.
"""
from __future__ import annotations

import asyncio
import hashlib
import heapq
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols import amp

from rating import store
from switch.wire import protocol as wire
from switch.control.core import Core

from . import checks
from .clock import SimClock
from .host import CoreHost, check_clock
from .host import wait as _wait
from .network import reply_fate, request_fate
from .scenario import Fault, Scenario, _hangup_ms, draw_scenario, replay_line
from .storage import CoreCrashed
from .worker import CallPlan, SimCall, SimWorker, WorkerSettings
from .world import FACILITY, build_world, draw_version

__all__ = ["Simulation", "Outcome", "run_seed", "Fault", "Scenario", "draw_scenario",
           "replay_line", "_hangup_ms"]

REAL_ANSWER_SECONDS_MAX = 60.0      # a core that takes longer than this (real time) is hung
WORKERS = 3
SWEEP_MS = 2_000                    # core.sweep_interval_seconds
LINK_DROPS_MAX = 40                 # a core that drops links this often is stuck: stop the run
DRAIN_MS_MAX = 1_500_000            # after the last call starts: the longest call (900 s), the
                                    # longest outage and the silence rule are over by then


@dataclass
class Outcome:
    seed: int
    calls: int
    violations: list[str]
    stats: dict
    digest: str
    records: list = field(default_factory=list, repr=False)
    timing: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


class _Timer:
    __slots__ = ("ms", "seq", "fn", "args", "cancelled")

    def __init__(self, ms, seq, fn, args):
        self.ms, self.seq, self.fn, self.args, self.cancelled = ms, seq, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other):
        return (self.ms, self.seq) < (other.ms, other.seq)


# Fields whose values are random by design (tokens): the trace keeps only that they were there.
_RANDOM_FIELDS = frozenset({"pin_session", "nonce", "proof"})


def _scrub(fields: dict | None):
    if fields is None:
        return None
    return sorted((k, "<random>" if k in _RANDOM_FIELDS and v else v) for k, v in fields.items())


class _CoreDied(Exception):
    """The core process died while handling something."""


class _ClientLink(amp.AMP):
    """The worker's end of one AMP connection (real TCP to the core's listener)."""


class Simulation:
    def __init__(self, scenario: Scenario, dsn: str, reactor) -> None:
        self.scenario = scenario
        self.dsn = dsn
        self.reactor = reactor
        seed_rng = random.Random(scenario.seed)
        # The run's own draws (network fates, backoff jitter, ids) follow the scenario's.
        self.rng = random.Random(seed_rng.getrandbits(64) ^ 0x5EED)
        self.clock = SimClock()
        self.now = 0
        self._heap: list[_Timer] = []
        self._seq = 0
        self._hash = hashlib.sha256()
        self.host = CoreHost(self)
        self.workers: list[SimWorker] = []
        self.calls: list[SimCall] = []
        self.db_out = False
        self.crash_armed: int | None = None
        self.crash_downtime_ms = 0
        self.started_calls = 0
        self.stats = {"delivered": 0, "lost": 0, "duplicated": 0, "answers_lost": 0,
                      "link_drops": 0, "core_errors": 0, "crashes": 0, "outages": 0,
                      "worker_losses": 0, "tariff_versions": 0, "sweep_errors": 0}
        self.admin: asyncpg.Connection | None = None
        self.show = None                        # a print function: the run's trace, for replays
        self.stuck: str | None = None           # why the run stopped early, if it did
        self.drain_ms = DRAIN_MS_MAX
        self.core_class = Core                  # tests swap in a deliberately broken core
        self.timing: dict[str, float] = {}      # wall-clock seconds, reported, never decided on
        self.world = None

    # -- time ----------------------------------------------------------------------------------
    def at(self, ms: int, fn, *args) -> _Timer:
        self._seq += 1
        t = _Timer(max(ms, self.now), self._seq, fn, args)
        heapq.heappush(self._heap, t)
        return t

    def after(self, delay_ms: int, fn, *args) -> _Timer:
        return self.at(self.now + delay_ms, fn, *args)

    def soon(self, fn, *args) -> _Timer:
        return self.at(self.now, fn, *args)

    def _trace(self, *parts) -> None:
        line = repr((self.now,) + parts)
        self._hash.update(line.encode())
        if self.show is not None:
            self.show(f"{self.now / 1000:10.3f} " + " ".join(str(p) for p in parts))

    # -- the network ---------------------------------------------------------------------------
    def send(self, worker: SimWorker, ask) -> None:
        copies = request_fate(self.rng, self.scenario.net)
        if not copies:
            self.stats["lost"] += 1
        if len(copies) > 1:
            self.stats["duplicated"] += 1
        for delay in copies:
            self.after(delay, self._deliver, worker, ask.id, ask.gen, ask.command, ask.kw)

    async def _deliver(self, worker: SimWorker, ask_id: int, gen: int, command, kw: dict):
        if worker.dead or worker.gen != gen or worker.proto is None or not self.host.up:
            return                      # the connection it was sent on is gone
        proto = worker.proto
        self._arm_crash()
        await self.clock.sync(self.admin)
        answer, error, unhandled = None, None, False
        try:
            answer = await self._unless_core_dies(proto.callRemote(command, **kw),
                                                  f"{command.__name__} {kw}")
        except _CoreDied:
            answer, error = None, CoreCrashed("no answer: the core died")
        except (wire.UnknownCall, wire.CallAlreadyEnded, wire.KioskUnknown, wire.InsufficientFunds,
                wire.CoreUnavailable, wire.BadRequest) as e:
            error = e
        except amp.UnknownRemoteError as e:
            error, unhandled = e, True
        except Exception as e:          # the connection died under the request
            error, unhandled = e, True
        self.stats["delivered"] += 1
        self._trace(worker.id, command.__name__, _scrub(kw),
                    _scrub(answer) if error is None else type(error).__name__)
        if await self._crash_if_due():
            return
        if unhandled:
            # The core raised something it does not declare: AMP answers UNKNOWN and drops the
            # link (switch.control.service); the worker sees the error, then the connection close.
            self.stats["core_errors"] += 1
            self.stats["link_drops"] += 1
            if self.stats["link_drops"] >= LINK_DROPS_MAX and self.stuck is None:
                self.stuck = (f"the core dropped worker links {LINK_DROPS_MAX} times (last on "
                              f"{command.__name__} {dict(kw)}): a worker's requests can never "
                              "all be answered")
            worker.answered(ask_id, gen, None, error)
            worker.link_lost()
            return
        delay = reply_fate(self.rng, self.scenario.net)
        if delay is None:
            self.stats["answers_lost"] += 1
            return
        self.after(delay, worker.answered, ask_id, gen, answer, error)

    async def _unless_core_dies(self, d, what: str):
        """The result of Deferred `d`, unless the core process dies first (then _CoreDied: what it
        had in hand is never answered). A live core that takes REAL_ANSWER_SECONDS_MAX of real
        time is hung: the run fails."""
        loop = asyncio.get_running_loop()
        answer = d.asFuture(loop)
        died = loop.create_task(self.host.pool.died.wait())
        try:
            done, _ = await asyncio.wait({answer, died}, timeout=REAL_ANSWER_SECONDS_MAX,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            died.cancel()
        if answer in done:
            return answer.result()
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())   # never looked at
        if died in done:
            raise _CoreDied()
        raise AssertionError(f"the core did not finish {what} within {REAL_ANSWER_SECONDS_MAX}s "
                             "(real time): hung")

    async def reconnect(self, worker: SimWorker) -> None:
        if worker.dead or worker.reachable:
            return
        if not self.host.up:
            worker.reconnect_failed()
            return
        # The core holds one live connection per worker id: let it see the old one close first
        # (real time, bounded), so whether a Hello is refused never depends on the wall clock.
        await self.host.closed(worker.id)
        port = self.host.port.getHost().port
        proto = await _wait(connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", port),
                                            _ClientLink()))
        hello = dict(worker_id=worker.id, capacity=2, sip_port=0, pid=0)
        if hasattr(wire, "Challenge"):
            # An authenticated link (switch.wire.amp_auth): Challenge, then Hello with its proof under
            # the key the registry derives for this worker id.
            from switch.wire import amp_auth
            nonce = (await _wait(proto.callRemote(wire.Challenge)))["nonce"]
            hello["proof"] = amp_auth.hello_proof(self.host.registry.key_for(worker.id), nonce,
                                                  **hello)
        await _wait(proto.callRemote(wire.Hello, **hello))
        self.host.greeted(worker.id)
        self._trace(worker.id, "hello")
        worker.greeted(proto)

    # -- faults --------------------------------------------------------------------------------
    def _arm_crash(self) -> None:
        if self.crash_armed is not None:
            self.host.pool.arm_crash(self.crash_armed)
            self.crash_armed = None

    async def _crash_if_due(self) -> bool:
        """After a core operation: the core died during it, or dies now before answering."""
        pool = self.host.pool
        if not self.host.up or (not pool.crashed and pool.crash_in is None):
            return False
        self.stats["crashes"] += 1
        self._trace("crash", pool.crash_in)
        pool.crash_in = None
        await self.host.stop(crash=True)
        for w in self.workers:
            w.link_lost()
        self.after(self.crash_downtime_ms, self._restart)
        return True

    async def _restart(self) -> None:
        await self.host.start()
        self._trace("restart", self.host.incarnation)
        self.after(SWEEP_MS, self._sweep, self.host.incarnation)

    async def _fault(self, f: Fault) -> None:
        self._trace("fault", f)
        if f.kind == "outage":
            if self.db_out:
                return
            self.stats["outages"] += 1
            self.db_out = True
            if self.host.pool is not None:
                self.host.pool.out = True
            self.after(f.length_ms, self._outage_over)
        elif f.kind == "crash":
            if self.host.up and self.crash_armed is None and self.host.pool.crash_in is None:
                self.crash_armed = f.statement
                self.crash_downtime_ms = f.length_ms
        elif f.kind == "worker_loss":
            alive = [w for w in self.workers if not w.dead]
            if len(alive) > 1:
                victim = alive[self.rng.randrange(len(alive))]
                self.stats["worker_losses"] += 1
                victim.die()
                # The supervisor starts a new worker process in its place.
                fresh = SimWorker(self, f"w{len(self.workers) + 1}", WorkerSettings())
                self.workers.append(fresh)
                self.after(self.rng.randint(500, 5_000), self.reconnect, fresh)
        elif f.kind == "tariff" and not self.db_out:
            # `ics rates import`: a new version, effective now unless told otherwise.
            base = self.rng.choice((21_000, 60_000, 137_000))
            lines, taxes = draw_version(self.rng, self.clock(),
                                        base_rate=base * f.factor_pct // 100)
            v = await store.save_version(self.admin, FACILITY,
                                         self.clock() + timedelta(milliseconds=f.shift_ms),
                                         lines, taxes, source="sim import")
            self.world.versions.append(v)
            self.stats["tariff_versions"] += 1

    def _outage_over(self) -> None:
        self.db_out = False
        if self.host.pool is not None:
            self.host.pool.out = False

    # -- the node's sweep ------------------------------------------------------------------------
    async def _sweep(self, incarnation: int) -> None:
        """The node's sweeper: a loop that starts SWEEP_MS after its core and dies with it."""
        if not self.host.up or self.host.incarnation != incarnation:
            return
        self.after(SWEEP_MS, self._sweep, incarnation)
        self._arm_crash()
        await self.clock.sync(self.admin)
        try:
            await self._unless_core_dies(
                defer.Deferred.fromFuture(asyncio.ensure_future(self.host.node.sweep())), "a sweep")
        except (CoreCrashed, _CoreDied):
            pass
        except Exception as e:
            # The node runs its sweep as a fire-and-forget task: an exception ends that sweep
            # (and is lost to a log line); the next one starts from the top again.
            self.stats["sweep_errors"] += 1
            self._trace("sweep_error", type(e).__name__)
        await self._crash_if_due()

    # -- calls ---------------------------------------------------------------------------------
    def _start_call(self, plan: CallPlan) -> None:
        alive = [w for w in self.workers if not w.dead]
        w = alive[self.rng.randrange(len(alive))]
        call = SimCall(w, plan)
        self.calls.append(call)
        self.started_calls += 1
        call.start()

    def _settled(self) -> bool:
        return (self.started_calls == len(self.scenario.calls) and self.host.up
                and not self.db_out and not any(w.busy for w in self.workers if not w.dead))

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> Outcome:
        sc = self.scenario
        self.admin = await asyncpg.connect(self.dsn,
                                           server_settings={"synchronous_commit": "off"})
        real_uuid4 = uuid.uuid4
        ids = random.Random(self.rng.getrandbits(64))
        uuid.uuid4 = lambda: uuid.UUID(int=ids.getrandbits(128), version=4)
        try:
            await self.clock.install(self.admin)
            started = time.perf_counter()
            self.world = await build_world(self.admin, self.rng, self.clock(), inmates=sc.inmates)
            self.timing["setup_s"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            await self.host.start()
            await check_clock(self.host.pool)
            for i in range(WORKERS):
                w = SimWorker(self, f"w{i + 1}", WorkerSettings())
                self.workers.append(w)
                self.soon(self.reconnect, w)
            for p in sc.calls:
                self.at(p.start_ms, self._start_call, p)
            for f in sc.faults:
                self.at(f.at_ms, self._fault, f)
            self.at(SWEEP_MS, self._sweep, self.host.incarnation)
            last_start = max((p.start_ms for p in sc.calls), default=0)
            deadline = last_start + self.drain_ms
            open_calls = None
            while self._heap:
                t = heapq.heappop(self._heap)
                if t.cancelled:
                    continue
                if t.ms > deadline or self.stuck:
                    break
                self.now = t.ms
                self.clock.advance_to(t.ms)
                r = t.fn(*t.args)
                if asyncio.iscoroutine(r):
                    await r
                if t.fn == self._sweep and self._settled():
                    open_calls = await self.admin.fetchval(
                        "SELECT count(*) FROM call WHERE state <> 'ended'")
                    if open_calls == 0:
                        break
            self.stats["sim_seconds"] = self.now // 1000
            self.timing["run_s"] = round(time.perf_counter() - started, 1)
            for w in self.workers:
                if w.proto is not None and w.proto.transport is not None:
                    w.proto.transport.loseConnection()
            if self.host.up:
                await self.host.stop(crash=False)
            records = [c.record for c in self.calls]
            violations = await checks.check_run(self.admin, self.world, records,
                                                settled=open_calls == 0)
            self.coverage = await checks.coverage(
                self.admin, records, sc.settings.period_seconds,
                WorkerSettings().continue_lead_seconds)
            if self.stuck:
                violations.insert(0, f"stuck at {self.now / 1000:.1f}s: {self.stuck}")
            return Outcome(sc.seed, len(sc.calls), violations, self.stats,
                           self._hash.hexdigest()[:16], records, self.timing, self.coverage)
        finally:
            uuid.uuid4 = real_uuid4
            await self.admin.close()


async def run_seed(seed: int, calls: int, dsn: str, reactor, *, faults: bool = True,
                   show=None) -> Outcome:
    """Run one seed on the database at `dsn` (freshly migrated, used by nothing else); `show`
    gets every line of the run's trace (what was delivered, what the core answered, faults)."""
    sim = Simulation(draw_scenario(seed, calls, faults=faults), dsn, reactor)
    sim.show = show
    return await sim.run()
