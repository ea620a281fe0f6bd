"""Simulated media workers: the worker's side of the charging loop, as `switch.worker` keeps it.

A `SimWorker` is one worker process: its link to the core (`switch.worker.link.CoreLink`: asks
with an answer deadline, End reports resent until answered or finally refused, heartbeats, a
reconnect with bounded backoff) and its calls. A `SimCall` is one call's life on it, from
Authorize to End, with the talk phase of `switch.worker.call.SwitchedCall`: the same pure grant
rules (`switch.worker.grant`: when to send Continue, with what talk_seconds, when the grant held
is the last, how a call that reaches its grant is reported), the same retry of a failed Continue
and the same fail-safe. It measures the talk seconds a real worker would report; it never
decides anything about money.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from switch.wire import protocol as wire
from switch.worker import grant as g
from switch.worker.call import CONTINUE_RETRY_SECONDS
from switch.worker.link import RECONNECT_DELAY_SECONDS_MAX, REPORT_RETRY_SECONDS

__all__ = ["SimWorker", "SimCall", "CallPlan", "CallRecord", "WorkerSettings", "CoreUnreachable"]


class CoreUnreachable(Exception):
    """No link to the core, the link was lost, or no answer in time (the worker's fail-safe)."""


KIOSK = "kiosk-a1"                  # the demo's trusted kiosk
KIOSK_SOURCE_IP = "127.0.0.1"
PIN_SECRET = "2468"                 # every simulated inmate's


def _takes(command, argument: str) -> bool:
    """Does this version of the protocol have `argument` (added to CheckPin/Authorize later)?"""
    return argument.encode() in dict(command.arguments)


# Errors after which a report is not sent again (switch.worker.link._FINAL).
FINAL_ERRORS = (wire.UnknownCall, wire.BadRequest, wire.CallAlreadyEnded)


@dataclass(frozen=True)
class WorkerSettings:
    answer_ms: int = 3_000            # worker.core_answer_seconds
    heartbeat_ms: int = 5_000         # switch.heartbeat_seconds
    continue_lead_seconds: float = 5.0
    warning_seconds: int = 60
    report_retry_ms: int = int(REPORT_RETRY_SECONDS * 1000)
    reconnect_ms_max: int = int(RECONNECT_DELAY_SECONDS_MAX * 1000)


@dataclass(frozen=True)
class CallPlan:
    """What the people on a call will do: who calls whom, when, and when someone hangs up."""
    index: int
    start_ms: int
    inmate: str
    number: str
    ring_ms: int                  # from the Authorize answer to the called party's choice
    choice: str                   # accept | refuse | abandon
    hangup_talk_ms: int           # talk time after which a party hangs up (if the grant allows)


@dataclass
class CallRecord:
    """What the worker saw of one call: the ground truth the checks compare the money with."""
    plan: CallPlan
    worker: str
    call_id: str | None = None
    denied: str | None = None
    bridged: bool = False
    talk: int = 0                 # talk seconds measured (what End reports, or what was talked)
    disposition: str | None = None
    ended: bool = False           # End answered by the core
    end_refused: str | None = None  # End dropped after a final error
    worker_died: bool = False
    grants: list[tuple[int, bool]] = field(default_factory=list)


class _Ask:
    __slots__ = ("id", "command", "kw", "ok", "fail", "gen", "done", "timer")

    def __init__(self, id_, command, kw, ok, fail, gen):
        self.id, self.command, self.kw, self.gen = id_, command, kw, gen
        self.ok, self.fail = ok, fail
        self.done = False
        self.timer = None


class SimWorker:
    def __init__(self, sim, worker_id: str, settings: WorkerSettings) -> None:
        self.sim, self.id, self.s = sim, worker_id, settings
        self.gen = 0                  # the connection generation; asks belong to one
        self.proto = None             # the AMP client protocol while connected
        self.reachable = False
        self.dead = False
        self.calls: list[SimCall] = []
        self._asks: dict[int, _Ask] = {}
        self._next_ask = 0
        self._reports: list[tuple[type, dict, object, object]] = []
        self._flushing = False
        self._backoff_ms = 100
        self._heartbeat = None

    # -- the link ------------------------------------------------------------------------------
    def ask(self, command, kw: dict, ok, fail) -> None:
        if self.dead:
            return
        if not self.reachable:
            self.sim.soon(fail, CoreUnreachable(f"no link to the core for {command.__name__}"))
            return
        self._next_ask += 1
        a = _Ask(self._next_ask, command, kw, ok, fail, self.gen)
        self._asks[a.id] = a
        a.timer = self.sim.after(self.s.answer_ms, self._timed_out, a)
        self.sim.send(self, a)

    def _timed_out(self, a: _Ask) -> None:
        if a.done or self.dead:
            return
        a.done = True
        self._asks.pop(a.id, None)
        a.fail(CoreUnreachable(f"{a.command.__name__} unanswered after {self.s.answer_ms} ms"))

    def answered(self, ask_id: int, gen: int, answer, error) -> None:
        """An answer (or a declared error) arrives for ask `ask_id` sent on connection `gen`."""
        a = self._asks.get(ask_id)
        if self.dead or a is None or a.done or a.gen != gen:
            return                    # too late: the worker already gave up on it
        a.done = True
        del self._asks[ask_id]
        a.timer.cancel()
        if error is None:
            a.ok(answer)
        else:
            a.fail(error)

    def link_lost(self) -> None:
        """The connection dropped: every ask on it fails now; reconnect with backoff."""
        if self.proto is None and not self.reachable:
            return
        self.gen += 1
        self.proto, self.reachable = None, False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        asks, self._asks = list(self._asks.values()), {}
        for a in asks:
            a.done = True
            a.timer.cancel()
            a.fail(CoreUnreachable(f"link lost during {a.command.__name__}"))
        if not self.dead:
            self._backoff_ms = 100
            self.sim.after(self._backoff_ms, self.sim.reconnect, self)

    def reconnect_failed(self) -> None:
        self._backoff_ms = min(self._backoff_ms * 2, self.s.reconnect_ms_max)
        jitter = self.sim.rng.randint(0, self._backoff_ms // 4)
        self.sim.after(self._backoff_ms + jitter, self.sim.reconnect, self)

    def greeted(self, proto) -> None:
        self.proto, self.reachable = proto, True
        self._beat()
        self._flush()

    def _beat(self) -> None:
        if self.dead or not self.reachable:
            return
        active = sorted(c.record.call_id for c in self.calls
                        if c.record.call_id and c.disposition is None)
        # As switch.worker.link does: calls whose End waits in the report queue are named too.
        ending = sorted({kw["call_id"] for command, kw, *_ in self._reports
                         if command is wire.End})
        self.ask(wire.Heartbeat, {"worker_id": self.id, "active_calls": active,
                                  "ending_calls": ending},
                 self._heartbeat_answered, lambda e: None)
        self._heartbeat = self.sim.after(self.s.heartbeat_ms, self._beat)

    def _heartbeat_answered(self, answer) -> None:
        unknown = set(answer["unknown_calls"])
        for c in list(self.calls):
            if c.record.call_id in unknown:
                c.finish("worker_lost")     # the core closed it: no grant stands behind it

    # -- reports (End): resent until answered, in order, behind each other ---------------------
    def report(self, command, kw: dict, ok, fail) -> None:
        self._reports.append((command, kw, ok, fail))
        self._flush()

    def _flush(self) -> None:
        if self._flushing or self.dead or not self._reports or not self.reachable:
            return
        self._flushing = True
        command, kw, ok, fail = self._reports[0]

        def answered(answer):
            self._reports.pop(0)
            self._flushing = False
            ok(answer)
            self._flush()

        def failed(error):
            self._flushing = False
            if isinstance(error, FINAL_ERRORS):
                self._reports.pop(0)
                fail(error)
                self._flush()
            else:
                self.sim.after(self.s.report_retry_ms, self._flush)
        self.ask(command, kw, answered, failed)

    @property
    def busy(self) -> bool:
        return bool(self._reports) or any(c.disposition is None for c in self.calls)

    # -- death ---------------------------------------------------------------------------------
    def die(self) -> None:
        """The worker process is killed: its calls drop where they are, nothing more is sent."""
        for c in self.calls:
            c.die()
        self.dead = True
        self.reachable = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for a in self._asks.values():
            a.timer.cancel()
        self._asks.clear()
        self._reports.clear()
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.loseConnection()
        self.proto = None


class SimCall:
    """One call on a simulated worker (switch.worker.call.SwitchedCall, without media)."""

    def __init__(self, worker: SimWorker, plan: CallPlan) -> None:
        self.w, self.sim = worker, worker.sim
        self.record = CallRecord(plan, worker.id)
        self.disposition: str | None = None
        self.talk_state: g.TalkState | None = None
        self.grant: g.Grant | None = None
        self.period = 0
        self.previous_until = 0
        self.bridged_ms: int | None = None
        self.talked = 0
        self.warned = False
        self.accepting = False
        self._timers: list = []
        self._talk_timers: list = []
        worker.calls.append(self)

    # -- before talk ---------------------------------------------------------------------------
    def start(self) -> None:
        """The trusted kiosk sends the PIN (inmate number and secret) in its INVITE."""
        p = self.record.plan
        kw = {"kiosk": KIOSK, "pin": p.inmate + PIN_SECRET, "source": "sip_header"}
        if _takes(wire.CheckPin, "source_ip"):
            kw["source_ip"] = KIOSK_SOURCE_IP
        self.w.ask(wire.CheckPin, kw, self._pin_checked, self._authorize_failed)

    def _pin_checked(self, a) -> None:
        if self.disposition is not None:
            return
        if not a["ok"]:
            self.record.denied = "pin_locked" if a["locked"] else "pin_invalid"
            self.disposition = "denied"
            return
        p = self.record.plan
        kw = {"kiosk": KIOSK, "inmate_id": a["inmate_id"], "number": p.number,
              "worker_id": self.w.id}
        if _takes(wire.Authorize, "pin_session"):
            kw.update(source_ip=KIOSK_SOURCE_IP, pin_session=a.get("pin_session"))
        self.w.ask(wire.Authorize, kw, self._authorized, self._authorize_failed)

    def _authorized(self, a) -> None:
        if self.disposition is not None:
            return
        if not a["allow"]:
            self.record.denied = a.get("reason") or "denied"
            self.disposition = "denied"       # no call id: nothing to report
            return
        self.record.call_id = a["call_id"]
        self.sim.after(self.record.plan.ring_ms, self._party_chose)

    def _authorize_failed(self, error) -> None:
        if self.disposition is None:
            self.record.denied = "system_unavailable"
            self.disposition = "failed"

    def _party_chose(self) -> None:
        if self.disposition is not None:
            return
        choice = self.record.plan.choice
        if choice == "refuse":
            self.finish("refused")
        elif choice == "abandon":
            self.finish("abandoned")
        else:
            self.accepting = True
            self.w.ask(wire.Accept, {"call_id": self.record.call_id}, self._accept_granted,
                       self._accept_failed)

    def _accept_failed(self, error) -> None:
        if self.disposition is not None or not self.accepting:
            return
        self.accepting = False
        self.finish("denied" if isinstance(error, wire.InsufficientFunds) else "failed")

    def _accept_granted(self, a) -> None:
        if self.disposition is not None or not self.accepting:
            return
        self.accepting = False
        self.grant = g.Grant(a["grant_until"], a["last"], a.get("warn_at"))
        self.record.grants.append((self.grant.until, self.grant.last))
        # bridge
        self.record.bridged = True
        self.talk_state = g.TalkState.LAST if self.grant.last else g.TalkState.GRANTED
        self.period = 1
        self.bridged_ms = self.sim.now
        self._timers.append(self.sim.after(self.record.plan.hangup_talk_ms,
                                           self.finish, "completed"))
        self._replan()

    # -- talk ----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return 0.0 if self.bridged_ms is None else (self.sim.now - self.bridged_ms) / 1000

    def _at(self, talk_second: float, fn, *args) -> None:
        at = self.bridged_ms + round(talk_second * 1000)
        self._talk_timers.append(self.sim.at(max(at, self.sim.now), fn, *args))

    def _replan(self) -> None:
        for t in self._talk_timers:
            t.cancel()
        self._talk_timers = []
        p = g.plan(self.talk_state, self.grant, previous_until=self.previous_until,
                   continue_lead=self.w.s.continue_lead_seconds,
                   warning_seconds=self.w.s.warning_seconds, warned=self.warned)
        if p.continue_at is not None:
            self._at(p.continue_at, self._send_continue)
        if p.warn_at is not None:
            self._at(p.warn_at, self._warn)
        self._at(p.end_at, self._deadline)

    def _talk(self, event: g.TalkEvent) -> None:
        self.talk_state = g.next_state(self.talk_state, event)

    def _send_continue(self) -> None:
        if self.disposition is not None or self.talk_state is not g.TalkState.GRANTED:
            return
        self._talk(g.TalkEvent.CONTINUE_SENT)
        self._try_continue(self.grant)

    def _try_continue(self, held: g.Grant) -> None:
        if self.disposition is not None or self.talk_state is not g.TalkState.CONTINUING \
                or self.grant is not held:
            return
        self.w.ask(wire.Continue, {"call_id": self.record.call_id, "period": self.period,
                                   "talk_seconds": g.talk_seconds(self.elapsed(), held.until)},
                   lambda a: self._granted_more(a, held), lambda e: self._continue_failed(e, held))

    def _granted_more(self, a, held: g.Grant) -> None:
        if self.disposition is not None or self.talk_state is not g.TalkState.CONTINUING \
                or self.grant is not held:
            return
        new = g.Grant(a["grant_until"], a["last"], a.get("warn_at"))
        self.record.grants.append((new.until, new.last))
        if new.until > held.until:
            self.period += 1
            self.previous_until = held.until
        self.grant = new
        self._talk(g.TalkEvent.GRANTED_LAST if new.last or new.until <= held.until
                   else g.TalkEvent.GRANTED)
        self._replan()

    def _continue_failed(self, error, held: g.Grant) -> None:
        if self.disposition is not None or self.talk_state is not g.TalkState.CONTINUING \
                or self.grant is not held:
            return
        final = isinstance(error, FINAL_ERRORS)
        left = held.until - self.elapsed()
        if final or left <= CONTINUE_RETRY_SECONDS + self.w.s.answer_ms / 1000 / 10:
            self._talk(g.TalkEvent.CORE_LOST)
            return
        self.sim.after(round(CONTINUE_RETRY_SECONDS * 1000), self._try_continue, held)

    def _warn(self) -> None:
        if self.disposition is None:
            self.warned = True

    def _deadline(self) -> None:
        if self.disposition is not None:
            return
        state = self.talk_state
        self._talk(g.TalkEvent.DEADLINE)
        self.talked = self.grant.until
        self.finish(g.deadline_disposition(state))

    # -- the end -------------------------------------------------------------------------------
    def finish(self, disposition: str) -> None:
        if self.disposition is not None or self.w.dead:
            return
        self.disposition = disposition
        self.accepting = False
        if self.talk_state is not None and self.talk_state is not g.TalkState.ENDED:
            self._talk(g.TalkEvent.HANGUP)
        if self.bridged_ms is not None and not self.talked:
            self.talked = g.talk_seconds(self.elapsed(), self.grant.until)
        for t in self._timers + self._talk_timers:
            t.cancel()
        self.record.talk = self.talked
        self.record.disposition = disposition
        if self.record.call_id is None:
            return
        self.w.report(wire.End, {"call_id": self.record.call_id, "talk_seconds": self.talked,
                                 "disposition": disposition},
                      self._end_answered, self._end_refused)

    def _end_answered(self, a) -> None:
        self.record.ended = True

    def _end_refused(self, error) -> None:
        self.record.end_refused = type(error).__name__

    def die(self) -> None:
        """The worker died under this call: the legs drop now; what was talked was talked."""
        if not self.record.ended:
            self.record.worker_died = True
        if self.disposition is None:
            if self.bridged_ms is not None:
                self.record.talk = g.talk_seconds(self.elapsed(), self.grant.until)
            self.disposition = "worker_died"
        for t in self._timers + self._talk_timers:
            t.cancel()
