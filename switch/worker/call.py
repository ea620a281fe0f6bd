"""One switched call on a worker: the kiosk leg, the called leg, and the adapter that runs the IVR
flows on them, asks the core, dials the trunks, bridges, records and keeps the grant.

This is the one place where flow actions meet media and the core link (`_perform`). Its phases:

    IVR --authorized--> DIALING --answered--> ANNOUNCING --accepted--> ACCEPTING --granted--> TALKING
    every live phase --finish--> ENDED

Fail safe: the legs are bridged only under a grant the core answered, never past its `until`;
a Continue not answered in time makes the grant held the last one (disposition core_unreachable).
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

from switch import protocol as wire
from switch.worker import flows as f
from switch.worker import grant as g
from switch.worker.link import CoreLink, CoreUnreachable
from switch.worker.media import Endpoint, Incoming, Leg, LegState, Prompt, Recording
from switch.worker.prompts import Prompts

__all__ = ["SwitchedCall", "CallSettings", "Phase", "IllegalPhaseMove", "FAILOVER_CODES",
           "trusted_request"]

log = Logger()

FAILOVER_CODES = frozenset({408, 503})     # the next trunk is tried on these (and on no answer)
BUSY_CODES = frozenset({486, 600})
NO_ANSWER_CODES = frozenset({480, 487})
CONTINUE_RETRY_SECONDS = 0.25              # a failed Continue is resent after this long
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass(frozen=True)
class CallSettings:
    digit_seconds: float = 10.0           # the inmate's time to key the next digit
    choice_seconds: float = 10.0          # the called party's time to choose, per announcement
    trunk_setup_seconds: float = 5.0      # no provisional answer by then: the next trunk
    trunk_answer_seconds: float = 45.0    # ringing this long: no_answer
    continue_lead_seconds: float = 5.0    # ask for more grant this long before it runs out
    warning_seconds: int = 60             # warn this long before the last grant ends
    pin_header: str = "X-ICS-PIN"         # a trusted kiosk's PIN; the number is in the R-URI
    block_scope: str = "facility"


def trusted_request(incoming: Incoming, pin_header: str) -> tuple[str, str] | None:
    """(pin, number) when the INVITE carries both, so the inmate flow is skipped."""
    pin = incoming.headers.get(pin_header.lower())
    if pin and _NUMBER.match(incoming.request_user):
        return pin.strip(), incoming.request_user
    return None


class Phase(enum.Enum):
    IVR = "ivr"                # the inmate flow runs on the kiosk leg
    DIALING = "dialing"        # trying the trunks
    ANNOUNCING = "announcing"  # the called-party flow runs
    ACCEPTING = "accepting"    # Accept sent to the core
    TALKING = "talking"        # bridged under a grant
    ENDED = "ended"


class IllegalPhaseMove(Exception):
    pass


_P = Phase
_PHASE_MOVES = {(_P.IVR, _P.DIALING), (_P.DIALING, _P.ANNOUNCING), (_P.ANNOUNCING, _P.ACCEPTING),
                (_P.ACCEPTING, _P.TALKING)} | {(p, _P.ENDED) for p in _P if p is not _P.ENDED}


def next_phase(phase: Phase, to: Phase) -> Phase:
    if (phase, to) not in _PHASE_MOVES:
        raise IllegalPhaseMove(f"{phase.value} -> {to.value}")
    return to


class SwitchedCall:
    """A kiosk call from INVITE to End. `on_done(call)` fires once both legs are released."""

    def __init__(self, reactor, endpoint: Endpoint, link: CoreLink, prompts: Prompts,
                 settings: CallSettings, kiosk: Leg, incoming: Incoming, *, recordings_dir: Path,
                 on_done: Callable[["SwitchedCall"], None] = lambda call: None):
        self.reactor, self.endpoint, self.link = reactor, endpoint, link
        self.prompts, self.s = prompts, settings
        self.kiosk, self.incoming = kiosk, incoming
        self.kiosk_id = incoming.from_user
        self.recordings_dir = recordings_dir
        self.on_done = on_done
        self.phase = Phase.IVR
        self.call_id: str | None = None
        self.auth: dict = {}
        self.language: str | None = None
        self.inmate_id: str | None = None
        self.called: Leg | None = None
        self.disposition: str | None = None
        self.talk_state: g.TalkState | None = None
        self.grant: g.Grant | None = None
        self.period = 0
        self.bridged_at: float | None = None
        self.talked: int = 0
        self.warned = False
        self.recording: Recording | None = None
        self.recording_path: str | None = None
        self.trunk: str | None = None
        self.sip_code: int | None = None
        self.end_answer: dict | None = None
        self.ended = defer.Deferred()      # the End report's answer (or failure)
        self._trunks: list[str] = []
        self._trunk_timer = None
        self._answer_timer = None
        self._talk_timers: list = []
        self._collect = {"kiosk": None, "called": None}
        self._playing: dict[str, tuple[object, Prompt | None]] = {"kiosk": (None, None),
                                                                  "called": (None, None)}
        self._previous_until = 0
        self._released = {"kiosk": False, "called": True}
        pin_number = trusted_request(incoming, settings.pin_header)
        self.trusted = pin_number is not None
        self.inmate_flow = f.InmateFlow(digit_seconds=settings.digit_seconds,
                                        pin=pin_number[0] if pin_number else None,
                                        number=pin_number[1] if pin_number else None)
        self.called_flow: f.CalledPartyFlow | None = None
        kiosk.on_state = self._kiosk_state
        kiosk.on_media = lambda leg: self._kiosk_media()
        kiosk.on_digit = lambda leg, digit, method: self._digit("kiosk", digit)

    @property
    def holds_slots(self) -> bool:
        """Some leg of this call still holds a pjsua call slot."""
        return not self.kiosk.gone or (self.called is not None and not self.called.gone)

    # -- the kiosk leg ------------------------------------------------------------------------
    def start(self) -> None:
        self.kiosk.answer()

    def _kiosk_media(self) -> None:
        if self.phase is Phase.IVR and not getattr(self, "_ivr_started", False):
            self._ivr_started = True
            self._perform("kiosk", self.inmate_flow.start())

    def _kiosk_state(self, leg: Leg, state: LegState, code: int) -> None:
        if state is LegState.DISCONNECTED:
            self._released["kiosk"] = True
            if self.phase is not Phase.ENDED:
                self.finish("completed" if self.phase is Phase.TALKING else "abandoned")
            self._maybe_done()

    # -- the flows' actions, performed (the adapter) -------------------------------------------
    def _flow(self, role: str):
        return self.inmate_flow if role == "kiosk" else self.called_flow

    def _feed(self, role: str, event) -> None:
        if self.phase is Phase.ENDED:
            return
        if role == "kiosk" and self.phase is not Phase.IVR and isinstance(event, (f.Digit,
                                                                                  f.Timeout)):
            return
        if role == "called" and self.phase is not Phase.ANNOUNCING:
            return
        flow = self._flow(role)
        if flow is not None:
            self._perform(role, flow.on(event))

    def _digit(self, role: str, digit: str) -> None:
        self._cancel_collect(role)
        self._feed(role, f.Digit(digit))

    def _perform(self, role: str, actions: list) -> None:
        for action in actions:
            if self.phase is Phase.ENDED:
                return
            if isinstance(action, f.Play):
                self._play(role, action.prompts)
            elif isinstance(action, f.Collect):
                self._cancel_collect(role)
                self._collect[role] = self.reactor.callLater(
                    action.seconds, self._collect_timeout, role)
            elif isinstance(action, f.CheckPin):
                self._check_pin(action.pin)
            elif isinstance(action, f.Authorize):
                self._authorize(action.number)
            elif isinstance(action, f.Dial):
                self._dial()
            elif isinstance(action, f.Accept):
                self._accept()
            elif isinstance(action, f.Refuse):
                pass                         # reported in End as disposition refused
            elif isinstance(action, f.Block):
                self.link.report(wire.Block, call_id=self.call_id, scope=self.s.block_scope
                                 ).addErrback(lambda fl: log.warn("Block failed: {e}",
                                                                  e=fl.getErrorMessage()))
            elif isinstance(action, f.HangUp):
                self.finish(action.disposition)
            else:
                raise TypeError(f"unknown flow action {action!r}")

    def _collect_timeout(self, role: str) -> None:
        self._collect[role] = None
        self._feed(role, f.Timeout())

    def _cancel_collect(self, role: str) -> None:
        t, self._collect[role] = self._collect[role], None
        if t is not None and t.active():
            t.cancel()

    def _leg(self, role: str) -> Leg | None:
        return self.kiosk if role == "kiosk" else self.called

    def _play(self, role: str, prompt_ids: tuple[str, ...], *, then=None) -> None:
        """Play `prompt_ids` in order on `role`'s leg, then feed PromptDone (or call `then`)."""
        self._stop_prompt(role)
        token = object()
        lang = self.language or self.auth.get("language")
        paths = [self.prompts.path(p, lang) for p in prompt_ids]
        done = then or (lambda: self._feed(role, f.PromptDone()))

        def next_one(_=None):
            if self._playing[role][0] is not token or self.phase is Phase.ENDED and then is None:
                return
            leg = self._leg(role)
            if not paths or leg is None or leg.gone:
                self._playing[role] = (None, None)
                done()
                return
            if not leg.media_up:
                self.reactor.callLater(0.05, next_one)   # media comes a moment after answer
                return
            prompt = self.endpoint.play(paths.pop(0), [leg])
            self._playing[role] = (token, prompt)
            prompt.done.addCallback(next_one)

        self._playing[role] = (token, None)
        next_one()

    def _stop_prompt(self, role: str) -> None:
        token, prompt = self._playing[role]
        self._playing[role] = (None, None)
        if prompt is not None:
            prompt.stop()

    # -- asking the core ----------------------------------------------------------------------
    def _check_pin(self, pin: str) -> None:
        d = self.link.ask(wire.CheckPin, kiosk=self.kiosk_id, pin=pin,
                          source="sip_header" if self.trusted else "dtmf")

        def answered(a):
            if a["ok"]:
                self.inmate_id, self.language = a["inmate_id"], a["language"]
            self._feed("kiosk", f.PinAnswer(a["ok"], a["locked"], a["attempts_left"],
                                            a["language"]))
        d.addCallbacks(answered, self._core_refused)

    def _authorize(self, number: str) -> None:
        d = self.link.ask(wire.Authorize, kiosk=self.kiosk_id, inmate_id=self.inmate_id or "",
                          number=number, worker_id=self.link.worker_id)

        def answered(a):
            if a["allow"]:
                self.auth = a
                self.call_id = a["call_id"]
                self.language = a.get("language") or self.language
                self._trunks = list(a.get("trunks") or [])
            self._feed("kiosk", f.AuthAnswer(a["allow"], a.get("reason")))
        d.addCallbacks(answered, self._core_refused)

    def _core_refused(self, failure) -> None:
        """The core could not answer (or does not know the kiosk): tell the inmate, hang up."""
        if self.phase is Phase.ENDED:
            return
        reason = "kiosk_unknown" if failure.check(wire.KioskUnknown) else "system_unavailable"
        log.info("call from {k}: core did not answer ({e})", k=self.kiosk_id,
                 e=failure.getErrorMessage())
        self.inmate_flow.step = f.InmateStep.DONE
        self._play("kiosk", (f"deny_{reason}",),
                   then=lambda: self.finish("failed" if reason == "system_unavailable"
                                            else "denied"))

    # -- dialling the called party -----------------------------------------------------------
    def _dial(self) -> None:
        self.phase = next_phase(self.phase, Phase.DIALING)
        self._dial_next()

    def _dial_next(self) -> None:
        if self.phase is not Phase.DIALING:
            return
        if not self._trunks:
            code = self.sip_code or 0
            disposition = ("busy" if code in BUSY_CODES else
                           "no_answer" if code in NO_ANSWER_CODES else "failed")
            self._play("kiosk", (f"dial_{disposition}",), then=lambda: self.finish(disposition))
            return
        self.trunk = self._trunks.pop(0)
        leg = self.called = self.endpoint.new_leg()
        self._released["called"] = False
        self._ringing = False
        leg.on_state = self._called_state
        leg.on_media = lambda leg: self._called_media()
        leg.on_digit = lambda leg, digit, method: self._digit("called", digit)
        try:
            leg.dial(self.trunk)
        except Exception as e:        # a malformed trunk URI: try the next one
            log.warn("trunk {t} refused the dial: {e}", t=self.trunk, e=e)
            self.sip_code = 400
            self._released["called"] = True
            self.called = None
            self.reactor.callLater(0, self._dial_next)
            return
        self._trunk_timer = self.reactor.callLater(self.s.trunk_setup_seconds, self._trunk_silent,
                                                   leg)
        self._answer_timer = self.reactor.callLater(self.s.trunk_answer_seconds,
                                                    self._no_answer, leg)

    def _trunk_silent(self, leg: Leg) -> None:
        if leg is self.called and not self._ringing and not leg.gone:
            self.sip_code = 408
            self._failover = True
            leg.hangup()

    def _no_answer(self, leg: Leg) -> None:
        if leg is self.called and self.phase is Phase.DIALING:
            self.sip_code = 480
            self._trunks = []
            leg.hangup()

    def _cancel_dial_timers(self) -> None:
        for t in (self._trunk_timer, self._answer_timer):
            if t is not None and t.active():
                t.cancel()
        self._trunk_timer = self._answer_timer = None

    def _called_state(self, leg: Leg, state: LegState, code: int) -> None:
        if leg is not self.called:
            return
        if state in (LegState.EARLY, LegState.CONNECTING, LegState.CONFIRMED):
            self._ringing = True
            if self._trunk_timer is not None and self._trunk_timer.active():
                self._trunk_timer.cancel()
        if state is LegState.CONFIRMED:
            self._cancel_dial_timers()
            self.sip_code = 200
            self._called_answered()
        elif state is LegState.DISCONNECTED:
            self._released["called"] = True
            if self.phase is Phase.DIALING:
                self._cancel_dial_timers()
                failover = getattr(self, "_failover", False) or code in FAILOVER_CODES
                self._failover = False
                if code and code != 487:
                    self.sip_code = code
                if not failover:
                    self._trunks = []
                self._dial_next()
            elif self.phase is Phase.ANNOUNCING:
                self.finish("no_answer")
            elif self.phase in (Phase.ACCEPTING, Phase.TALKING):
                self.finish("completed")
            self._maybe_done()

    def _called_answered(self) -> None:
        if self.phase is Phase.DIALING and self.called.media_up:
            self._start_called_flow()

    def _called_media(self) -> None:
        if self.phase is Phase.DIALING and self.called.state is LegState.CONFIRMED:
            self._start_called_flow()

    def _start_called_flow(self) -> None:
        self.phase = next_phase(self.phase, Phase.ANNOUNCING)
        a = self.auth
        announcement = ("call_from", a.get("inmate_name_wav") or "inmate_name", "at_facility")
        if a.get("record") and not a.get("privileged"):
            announcement += ("call_recorded",)
        if not a.get("privileged"):
            announcement += ("rate",)
        self.called_flow = f.CalledPartyFlow(announcement, choice_seconds=self.s.choice_seconds,
                                             passive_accept=bool(a.get("passive_accept")))
        self._play("kiosk", ("ringback",), then=lambda: None)
        self._perform("called", self.called_flow.start())

    # -- accepted: the grant ------------------------------------------------------------------
    def _accept(self) -> None:
        self.phase = next_phase(self.phase, Phase.ACCEPTING)
        self._cancel_collect("called")
        self._stop_prompt("called")
        d = self.link.ask(wire.Accept, call_id=self.call_id)
        d.addCallbacks(self._granted_first, self._accept_failed)

    def _accept_failed(self, failure) -> None:
        if self.phase is not Phase.ACCEPTING:
            return
        funds = failure.check(wire.InsufficientFunds)
        disposition = "denied" if failure.check(wire.InsufficientFunds, wire.CallAlreadyEnded,
                                                wire.UnknownCall) else "failed"
        log.info("Accept for {c} failed: {e}", c=self.call_id, e=failure.getErrorMessage())
        prompt = "deny_insufficient_funds" if funds else "deny_system_unavailable"
        self._play("called", (prompt,), then=lambda: None)
        self._play("kiosk", (prompt,), then=lambda: self.finish(disposition))

    def _granted_first(self, a) -> None:
        if self.phase is not Phase.ACCEPTING:
            return
        self.phase = next_phase(self.phase, Phase.TALKING)
        self.grant = g.Grant(a["grant_until"], a["last"], a.get("warn_at"))
        self.talk_state = g.TalkState.LAST if self.grant.last else g.TalkState.GRANTED
        self.period = 1
        self._stop_prompt("kiosk")
        self._stop_prompt("called")
        self.bridged_at = self.reactor.seconds()
        self.kiosk.connect_to(self.called)
        self.called.connect_to(self.kiosk)
        if self.auth.get("record") and not self.auth.get("privileged"):
            self.recordings_dir.mkdir(parents=True, exist_ok=True)
            self.recording_path = str(self.recordings_dir / f"{self.call_id}.wav")
            self.recording = self.endpoint.record(self.recording_path, [self.kiosk, self.called])
        self._replan()

    def talk_elapsed(self) -> float:
        return 0.0 if self.bridged_at is None else self.reactor.seconds() - self.bridged_at

    def _at(self, talk_second: float, fn, *args):
        delay = max(0.0, self.bridged_at + talk_second - self.reactor.seconds())
        t = self.reactor.callLater(delay, fn, *args)
        self._talk_timers.append(t)
        return t

    def _cancel_talk_timers(self) -> None:
        for t in self._talk_timers:
            if t.active():
                t.cancel()
        self._talk_timers = []

    def _replan(self) -> None:
        self._cancel_talk_timers()
        p = g.plan(self.talk_state, self.grant, previous_until=self._previous_until,
                   continue_lead=self.s.continue_lead_seconds,
                   warning_seconds=self.s.warning_seconds, warned=self.warned)
        if p.continue_at is not None:
            self._at(p.continue_at, self._send_continue)
        if p.warn_at is not None:
            self._at(p.warn_at, self._warn)
        self._at(p.end_at, self._deadline)

    def _talk(self, event: g.TalkEvent) -> None:
        self.talk_state = g.next_state(self.talk_state, event)

    def _send_continue(self) -> None:
        if self.talk_state is not g.TalkState.GRANTED:
            return
        self._talk(g.TalkEvent.CONTINUE_SENT)
        self._try_continue(self.grant)

    def _try_continue(self, held: g.Grant) -> None:
        if self.talk_state is not g.TalkState.CONTINUING or self.grant is not held:
            return
        d = self.link.ask(wire.Continue, call_id=self.call_id, period=self.period,
                          talk_seconds=g.talk_seconds(self.talk_elapsed(), held.until))
        d.addCallbacks(self._granted_more, self._continue_failed, callbackArgs=(held,),
                       errbackArgs=(held,))

    def _granted_more(self, a, held: g.Grant) -> None:
        if self.talk_state is not g.TalkState.CONTINUING or self.grant is not held:
            return
        new = g.Grant(a["grant_until"], a["last"], a.get("warn_at"))
        if new.until > held.until:
            self.period += 1
            self._previous_until = held.until
        self.grant = new
        self._talk(g.TalkEvent.GRANTED_LAST if new.last or new.until <= held.until
                   else g.TalkEvent.GRANTED)
        self._replan()

    def _continue_failed(self, failure, held: g.Grant) -> None:
        if self.talk_state is not g.TalkState.CONTINUING or self.grant is not held:
            return
        final = failure.check(wire.CallAlreadyEnded, wire.UnknownCall, wire.BadRequest)
        left = held.until - self.talk_elapsed()
        if final or left <= CONTINUE_RETRY_SECONDS + self.link.answer_seconds / 10:
            log.warn("call {c}: no grant past {u}s ({e}); ending then", c=self.call_id,
                     u=held.until, e=failure.getErrorMessage())
            self._talk(g.TalkEvent.CORE_LOST)
            return
        self.reactor.callLater(CONTINUE_RETRY_SECONDS, self._try_continue, held)

    def _warn(self) -> None:
        if self.phase is Phase.TALKING and not self.warned:
            self.warned = True
            prompt = self.endpoint.play(self.prompts.path("one_minute_warning", self.language),
                                        [self.kiosk, self.called])
            self._playing["warning"] = (None, prompt)

    def _deadline(self) -> None:
        if self.phase is not Phase.TALKING:
            return
        state = self.talk_state
        self._talk(g.TalkEvent.DEADLINE)
        disposition = g.deadline_disposition(state)
        self.talked = self.grant.until
        if disposition == "core_unreachable":
            # Talk stops now; the kiosk alone hears why (no talk time is given by this prompt).
            self._unbridge()
            if self.called is not None:
                self.called.hangup()
            self._play("kiosk", ("call_ending_system",), then=lambda: self.kiosk.hangup())
            self.finish(disposition, hang_up=False)
        else:
            self.finish(disposition)

    def _unbridge(self) -> None:
        if self.recording is not None:
            self.recording.stop()
            self.recording = None
        if self.called is not None and self.bridged_at is not None:
            self.kiosk.disconnect_from(self.called)
            self.called.disconnect_from(self.kiosk)

    # -- the end ------------------------------------------------------------------------------
    def terminate(self, reason: str) -> None:
        self.finish(reason if reason in wire.DISPOSITIONS else
                    "completed" if self.phase is Phase.TALKING else "failed")

    def finish(self, disposition: str, *, hang_up: bool = True) -> None:
        """End the call (idempotent): stop talk, hang up the legs, report End to the core."""
        if self.phase is Phase.ENDED:
            return
        was = self.phase
        self.phase = next_phase(self.phase, Phase.ENDED)
        self.disposition = disposition
        if self.talk_state is not None and self.talk_state is not g.TalkState.ENDED:
            self._talk(g.TalkEvent.HANGUP)
        if was is Phase.TALKING and not self.talked:
            self.talked = g.talk_seconds(self.talk_elapsed(), self.grant.until)
        self._cancel_talk_timers()
        self._cancel_dial_timers()
        for role in ("kiosk", "called"):
            self._cancel_collect(role)
        if hang_up:
            for role in ("kiosk", "called", "warning"):
                if role in self._playing:
                    self._stop_prompt(role)
        self._unbridge()
        if hang_up:
            self.kiosk.hangup()
            if self.called is not None:
                self.called.hangup()
        if self.call_id is not None:
            kw = {"call_id": self.call_id, "talk_seconds": self.talked,
                  "disposition": disposition}
            if self.recording_path:
                kw["recording"] = self.recording_path
            if self.trunk:
                kw["trunk"] = self.trunk
            if self.sip_code:
                kw["sip_code"] = self.sip_code
            self.link.report(wire.End, **kw).chainDeferred(self.ended)
        else:
            self.ended.callback(None)
        log.info("call {c} from {k} ended: {d}, {t}s talk", c=self.call_id, k=self.kiosk_id,
                 d=disposition, t=self.talked)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.phase is Phase.ENDED and all(self._released.values()) and \
                not getattr(self, "_done", False):
            self._done = True
            for role in list(self._playing):
                self._stop_prompt(role)
            self.on_done(self)
