"""One switched call on a worker: the kiosk leg, the called leg, and the adapter that runs the IVR
flows (`ivr.flows`) on them, asks the core, dials the trunks, bridges, records and keeps the grant.

This is the one place where flow actions meet media and the core link (`_perform`); it keeps the
worker's side of the contract in `ivr.flows.moves` (one PromptDone per Play, none after StopPlay;
the Collect timer re-armed by each key; every key delivered; Hangup on a leg's hangup). Phases:

    IVR --Dial--> DIALING --answered--> ANNOUNCING --Accept--> ACCEPTING --Bridge--> TALKING
    every live phase --finish--> ENDED

Fail safe: the legs are bridged only under a grant the core answered, never past its `until`;
a Continue not answered in time makes the grant held the last one (disposition core_unreachable).

Identity: the kiosk is the user part of From's URI, and the core judges it together with the
address the INVITE came from (`source_ip`, from the transport). The worker never trusts the PIN
header itself: it passes it as `source="sip_header"` and the core decides. Every kiosk leg is
judged before it is answered (CheckPin when it carries the PIN header, AdmitKiosk otherwise), so
a kiosk refused for its source, or unknown, gets 403 and never hears the menu.
"""
from __future__ import annotations

import enum
import re
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer, threads
from twisted.logger import Logger

from ivr import catalog, names
from ivr.flows import moves as m
from ivr.flows.called_party import Announcement, CalledPartyFlow
from ivr.flows.inmate import InmateFlow
from ivr.flows.machine import IllegalMove
from ivr.settings import IvrSettings
from switch.settings import WorkerSettings
from switch.wire import protocol as wire
from switch.worker import grant as g
from switch.worker.identity import EdgeTrust, kiosk_source
from switch.worker.link import CoreLink, CoreUnreachable
from switch.worker.media import Endpoint, Incoming, Leg, LegState, Prompt, Recording
from switch.worker.prompts import Prompts

__all__ = ["SwitchedCall", "CallSettings", "Phase", "IllegalPhaseMove", "FAILOVER_CODES",
           "trusted_request", "disposition_for", "preset_number", "setup_failure_for"]

log = Logger()

FAILOVER_CODES = frozenset({408, 503})     # the next trunk is tried on these (and on no answer)
BUSY_CODES = frozenset({486, 600})
NO_ANSWER_CODES = frozenset({480, 487})
CONTINUE_RETRY_SECONDS = 0.25              # a failed Continue is resent after this long
SOURCE_MISMATCH = "kiosk_source_mismatch"  # the core's word for a kiosk off its registered sources
_SOURCE_REFUSED = object()                 # the answer that is never fed to the flow
ADMISSION_RETRY_AFTER_SECONDS = 5          # a kiosk not admitted for want of the core tries then
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")

# How the reason of a flow's HangUp is reported to the core (protocol.DISPOSITIONS).
_DISPOSITIONS = {
    "refused": "refused", "blocked": "blocked", "no_response": "no_answer",
    "hung_up": "no_answer", "no_answer": "no_answer", "busy": "busy", "failed": "failed",
    "insufficient_funds": "denied", "system_unavailable": "failed", "no_input": "abandoned",
    "abandoned": "abandoned",
}


def disposition_for(reason: str) -> str:
    """The End disposition for a flow's HangUp reason (a deny reason means denied)."""
    if reason in _DISPOSITIONS:
        return _DISPOSITIONS[reason]
    if reason in catalog.DENY_REASONS or reason.startswith("pin_"):
        return "denied"
    return reason if reason in wire.DISPOSITIONS else "failed"


def setup_failure_for(end_reason: str | None, disposition: str) -> tuple[str, str]:
    """(SETUP_FAILURES member, detail) for a call that ended in the IVR without a reason
    recorded on the way: from the inmate flow's HangUp reason, else the disposition."""
    if end_reason is None:
        return ("abandoned", "the kiosk hung up") if disposition == "abandoned" \
            else ("failed", f"ended {disposition}")
    if end_reason.startswith("pin_"):
        return "pin_refused", end_reason
    if end_reason == "no_input":
        return "no_input", "no digits in time"
    if end_reason == "system_unavailable":
        return "core_unreachable", end_reason
    if end_reason in catalog.DENY_REASONS:
        return "denied", end_reason
    return "failed", end_reason


@dataclass(frozen=True)
class CallSettings:
    """What a call needs to know: the `[worker]` section as the supervisor handed it down, the
    IVR's settings, and the edge's trust parsed once from the worker's `edge_addresses`."""
    worker: WorkerSettings = WorkerSettings()
    ivr: IvrSettings = IvrSettings()
    edge: EdgeTrust = EdgeTrust()         # who may tell the kiosk's source (Kamailio)

    @classmethod
    def of(cls, worker: WorkerSettings, ivr: IvrSettings) -> CallSettings:
        return cls(worker, ivr, EdgeTrust.parse(worker.edge_addresses, worker.source_header))


def preset_number(user: str, international_prefix: str = "011") -> str:
    """A Request-URI number as the inmate would key it: +1NXX... -> 1NXX..., +44... -> 01144..."""
    if user.startswith("+1"):
        return user[1:]
    if user.startswith("+"):
        return international_prefix + user[1:]
    return user


def trusted_request(incoming: Incoming, pin_header: str) -> tuple[str, str] | None:
    """(pin, number) when the INVITE carries both, so the inmate flow skips to the core."""
    pin = incoming.headers.get(pin_header.lower())
    if pin and _NUMBER.match(incoming.request_user):
        return pin.strip(), incoming.request_user
    return None


def source_refused(failure_or_reason) -> bool:
    """The core refused the kiosk for the address it called from (a KioskUnknown whose message
    starts with the reason, or an Authorize deny with it)."""
    if isinstance(failure_or_reason, str):
        return failure_or_reason == SOURCE_MISMATCH
    return bool(failure_or_reason.check(wire.KioskUnknown)) and \
        str(failure_or_reason.value).startswith(SOURCE_MISMATCH)


def _wav_seconds(paths: list[str]) -> float:
    """The total length of these WAV files (their headers only; an unreadable one counts 0)."""
    total = 0.0
    for path in paths:
        try:
            with wave.open(path, "rb") as w:
                total += w.getnframes() / w.getframerate()
        except (OSError, EOFError, wave.Error):
            pass
    return total


class Phase(enum.Enum):
    IVR = "ivr"                # the inmate flow runs on the kiosk leg
    DIALING = "dialing"        # trying the trunks
    ANNOUNCING = "announcing"  # the called-party flow runs
    ACCEPTING = "accepting"    # Accept sent to the core
    TALKING = "talking"        # bridged under a grant
    ENDED = "ended"


class IllegalPhaseMove(IllegalMove):
    def __init__(self, phase: Phase, to: Phase) -> None:
        super().__init__("call phase", phase, to, f"{phase.value} -> {to.value}")


_P = Phase
_PHASE_MOVES = {(_P.IVR, _P.DIALING), (_P.DIALING, _P.ANNOUNCING), (_P.ANNOUNCING, _P.ACCEPTING),
                (_P.ACCEPTING, _P.TALKING)} | {(p, _P.ENDED) for p in _P if p is not _P.ENDED}


def next_phase(phase: Phase, to: Phase) -> Phase:
    if (phase, to) not in _PHASE_MOVES:
        raise IllegalPhaseMove(phase, to)
    return to


class _LegMedia:
    """A leg's prompt in progress and its digit timer (the Collect rule)."""

    def __init__(self):
        self.token: object | None = None
        self.prompt: Prompt | None = None
        self.timer = None
        self.inter_digit = 0.0


class SwitchedCall:
    """A kiosk call from INVITE to End. `on_done(call)` fires once both legs are released."""

    log = Logger()      # per call: its events carry `log_fields()` (switch.processes.logs reads them)

    def log_fields(self) -> dict:
        """What ties this call's log lines to it (the worker id is on every line already)."""
        return {"call_id": self.call_id, "kiosk": self.kiosk_id}

    def __init__(self, reactor, endpoint: Endpoint, link: CoreLink, prompts: Prompts,
                 settings: CallSettings, kiosk: Leg, incoming: Incoming, *, data_dir: Path,
                 on_done: Callable[["SwitchedCall"], None] = lambda call: None):
        self.reactor, self.endpoint, self.link = reactor, endpoint, link
        self.prompts, self.s = prompts, settings
        self.kiosk, self.incoming = kiosk, incoming
        self.kiosk_id = incoming.from_user
        self.source_ip = kiosk_source(incoming.source_ip, incoming.headers, settings.edge)
        self.data_dir = data_dir
        self.recordings_dir = data_dir / "recordings"
        self.on_done = on_done
        self.phase = Phase.IVR
        self.call_id: str | None = None
        self.auth: dict = {}
        self.inmate_id: str | None = None
        self.called: Leg | None = None
        self.outcome: str | None = None      # what became of the outbound call, once known
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
        self.ended = defer.Deferred()      # the End report's answer (or failure)
        self._trunks: list[str] = []
        self._trunk_timer = None
        self._answer_timer = None
        self._talk_timers: list = []
        self._media = {"kiosk": _LegMedia(), "called": _LegMedia()}
        self._warning: Prompt | None = None
        self._names: dict[str, object] = {}
        self._previous_until = 0
        self._released = {"kiosk": False, "called": True}
        self._failover = False
        self._ringing = False
        self._ivr_started = False
        self._done = False
        self.pin_session: str | None = None    # CheckPin's token, presented by Authorize once
        self._early_pin: defer.Deferred | None = None
        # Why the call is ending before any dial, once known: (SETUP_FAILURES member, detail).
        self._setup_failure: tuple[str, str] | None = None
        self._end_reason: str | None = None    # the inmate flow's HangUp reason
        pin_number = trusted_request(incoming, settings.worker.pin_header)
        self.trusted = pin_number is not None
        self._preset_pin = pin_number[0] if pin_number else ""
        presets = {}
        if pin_number:
            presets = {"pin": pin_number[0],
                       "number": preset_number(pin_number[1],
                                               settings.ivr.international_prefix)}
        self.inmate_flow = InmateFlow(settings.ivr, **presets)
        self.called_flow: CalledPartyFlow | None = None
        kiosk.on_state = self._kiosk_state
        kiosk.on_media = lambda leg: self._kiosk_media()
        kiosk.on_digit = lambda leg, digit, method: self._digit("kiosk", digit)

    @property
    def holds_slots(self) -> bool:
        """Some leg of this call still holds a pjsua call slot."""
        return not self.kiosk.gone or (self.called is not None and not self.called.gone)

    @property
    def language(self) -> str:
        return self.inmate_flow.call.language

    # -- the kiosk leg ------------------------------------------------------------------------
    def start(self) -> None:
        """The kiosk is judged before it is answered, so a caller that is not the kiosk it claims
        gets 403 and never hears the menu: with the PIN header, by CheckPin (which checks the
        source first); without, by AdmitKiosk."""
        self.kiosk.ring()
        if not self.trusted:
            d = self.link.ask(wire.AdmitKiosk, kiosk=self.kiosk_id, source_ip=self.source_ip)
            d.addCallbacks(lambda _: self._admitted(), self._admission_failed)
            return
        self._early_pin = self._ask_pin(self._preset_pin)
        self._early_pin.addCallback(self._early_pin_answered)

    def _admitted(self) -> None:
        if self.phase is Phase.IVR:
            self.kiosk.answer()

    def _admission_failed(self, failure) -> None:
        if failure.check(wire.KioskUnknown):      # unknown, inactive, or not from its sources
            self._refuse_source(failure.getErrorMessage(),
                                "source_refused" if source_refused(failure) else "kiosk_unknown")
            return
        self._note_core_failure(failure)
        self._refuse_unanswered()

    def _refuse_unanswered(self) -> None:
        """The core could not judge the kiosk (overloaded, or no answer): nothing can be authorized
        now, so the kiosk hears 503 with Retry-After before it is answered, not a menu that
        ends in "system unavailable"."""
        reason, detail = self._setup_failure or ("core_unreachable", "")
        self.log.warn("503 to kiosk {k} from {s}: {r} ({e})", k=self.kiosk_id,
                      s=self.incoming.source, r=reason, e=detail)
        if self.phase is Phase.IVR:
            self.kiosk.reject(503, {"Retry-After": str(ADMISSION_RETRY_AFTER_SECONDS)})
            self.finish("failed", hang_up=False)

    def _refuse_source(self, why: str, reason: str = "source_refused") -> None:
        self.log.warn("403 to kiosk {k} from {s}: {why}", k=self.kiosk_id, s=self.incoming.source,
                 why=why)
        self._setup_failure = self._setup_failure or (reason, why)
        if self.phase is Phase.IVR:
            self.kiosk.reject(403)
            self.finish("denied", hang_up=False)

    def _early_pin_answered(self, event):
        if event is _SOURCE_REFUSED:
            self._refuse_source("not one of its sources")
        elif isinstance(event, m.CoreFailed) and event.reason == "system_unavailable" \
                and self.phase is Phase.IVR:
            self._refuse_unanswered()             # busy or silent core: 503, not a menu
            return _SOURCE_REFUSED                 # nothing more is fed to the flow
        elif self.phase is Phase.IVR:
            self.kiosk.answer()
        return event

    def _kiosk_media(self) -> None:
        if self.phase is Phase.IVR and not self._ivr_started:
            self._ivr_started = True
            self._perform("kiosk", self.inmate_flow.start())

    def _kiosk_state(self, leg: Leg, state: LegState, code: int) -> None:
        if state is LegState.DISCONNECTED:
            self._released["kiosk"] = True
            self._feed("kiosk", m.Hangup())
            if self.phase is not Phase.ENDED:
                self.finish("completed" if self.phase is Phase.TALKING else "abandoned")
            self._maybe_done()

    # -- the flows' actions, performed (the adapter) -------------------------------------------
    def _flow(self, role: str):
        return self.inmate_flow if role == "kiosk" else self.called_flow

    def _feed(self, role: str, event) -> None:
        flow = self._flow(role)
        if flow is None or flow.done:
            return
        try:
            actions = flow.feed(event)
        except m.IllegalMove as e:        # our bug, never the caller's: log it, drop the event
            self.log.error("call {c}: {e}", c=self.call_id, e=e)
            return
        self._perform(role, actions)

    def _digit(self, role: str, digit: str) -> None:
        if digit not in "0123456789*#" or len(digit) != 1:
            return
        media = self._media[role]
        if media.timer is not None and media.timer.active():
            media.timer.reset(media.inter_digit)
        self._feed(role, m.Digit(digit))

    def _perform(self, role: str, actions: list) -> None:
        for action in actions:
            if isinstance(action, m.Play):
                files = [str(p) for p in action.files()]
                # One line per play: what the leg hears, for operators, the demo and tests.
                self.log.info("call {c}: {role} hears [{ids}] ({s:.1f}s) {text}",
                              c=self.call_id or "-", role=role, s=_wav_seconds(files),
                              ids=",".join(c.stem if isinstance(c, Path) else c
                                           for c in action.clips),
                              text=action.transcript())
                self._play(role, files)
            elif isinstance(action, m.StopPlay):
                self._stop_prompt(role)
            elif isinstance(action, m.Collect):
                self._arm(role, action.first_digit_timeout, action.inter_digit_timeout)
            elif isinstance(action, m.StopCollect):
                self._disarm(role)
            elif isinstance(action, m.CheckPin):
                self._check_pin(action.pin)
            elif isinstance(action, m.Authorize):
                self._authorize(action.number, action.inmate_id)
            elif isinstance(action, m.Dial):
                self._dial()
            elif isinstance(action, m.Accept):
                self._accept()
            elif isinstance(action, m.Bridge):
                self._bridge()
            elif isinstance(action, m.Refuse):
                self._party_result(action.reason)
            elif isinstance(action, m.Block):
                self.link.report(wire.Block, call_id=self.call_id, scope=action.scope
                                 ).addErrback(lambda fl: self.log.warn("Block failed: {e}",
                                                                       e=fl.getErrorMessage()))
                self._party_result("blocked")
            elif isinstance(action, m.HangUp):
                if role == "kiosk":
                    self._end_reason = action.reason
                    self.finish(disposition_for(self.outcome or action.reason))
                elif self.called is not None:
                    self.called.hangup()
            else:
                raise TypeError(f"unknown flow action {action!r}")

    def _party_result(self, result: str) -> None:
        """Tell the inmate's leg what became of the outbound call (once)."""
        if self.outcome is None:
            self.outcome = result
            self._feed("kiosk", m.PartyResult(result))

    def _arm(self, role: str, first: float, inter: float) -> None:
        self._disarm(role)
        media = self._media[role]
        media.inter_digit = inter
        media.timer = self.reactor.callLater(first, self._collect_timeout, role)

    def _disarm(self, role: str) -> None:
        media = self._media[role]
        t, media.timer = media.timer, None
        if t is not None and t.active():
            t.cancel()

    def _collect_timeout(self, role: str) -> None:
        self._media[role].timer = None
        self._feed(role, m.Timeout())

    def _leg(self, role: str) -> Leg | None:
        return self.kiosk if role == "kiosk" else self.called

    def _play(self, role: str, paths: list[str], *, then=None) -> None:
        """Play `paths` in order on `role`'s leg, then feed PromptDone (or call `then`)."""
        self._stop_prompt(role)
        media = self._media[role]
        token = media.token = object()
        done = then or (lambda: self._feed(role, m.PromptDone()))

        def next_one(_=None):
            if media.token is not token:
                return                     # stopped or replaced: no PromptDone for it
            leg = self._leg(role)
            if not paths or leg is None or leg.gone:
                media.token, media.prompt = None, None
                done()
                return
            if not leg.media_up:
                self.reactor.callLater(0.05, next_one)   # media comes a moment after answer
                return
            media.prompt = self.endpoint.play(paths.pop(0), [leg])
            media.prompt.done.addCallback(next_one)

        next_one()

    def _stop_prompt(self, role: str) -> None:
        media = self._media[role]
        prompt = media.prompt
        media.token, media.prompt = None, None
        if prompt is not None:
            prompt.stop()

    # -- asking the core ----------------------------------------------------------------------
    def _check_pin(self, pin: str) -> None:
        early, self._early_pin = self._early_pin, None
        d = early if early is not None else self._ask_pin(pin)
        d.addCallback(self._pin_event)

    def _ask_pin(self, pin: str) -> defer.Deferred:
        """CheckPin, answered as the flow's event (PinChecked or CoreFailed)."""
        d = self.link.ask(wire.CheckPin, kiosk=self.kiosk_id, pin=pin,
                          source="sip_header" if self.trusted else "dtmf",
                          source_ip=self.source_ip)

        def answered(a):
            if a["ok"]:
                self.inmate_id = a["inmate_id"]
                self.pin_session = a.get("pin_session")
            return m.PinChecked(a["ok"], max(0, a["attempts_left"]), a["locked"],
                                a.get("inmate_id"), a.get("language"))
        return d.addCallback(answered).addErrback(self._core_failed)

    def _pin_event(self, event) -> None:
        if event is _SOURCE_REFUSED:
            self.finish("denied")            # nothing more is said to a kiosk off its sources
            return
        self._feed("kiosk", event)

    def _authorize(self, number: str, inmate_id: str) -> None:
        kw = {"pin_session": self.pin_session} if self.pin_session else {}
        self.pin_session = None                # good for one Authorize
        d = self.link.ask(wire.Authorize, kiosk=self.kiosk_id, inmate_id=inmate_id or "",
                          number=number, worker_id=self.link.worker_id,
                          source_ip=self.source_ip, **kw)

        def answered(a):
            if not a["allow"]:
                reason = a.get("reason")
                if source_refused(reason or ""):
                    return _SOURCE_REFUSED
                return m.Authorized(False, reason if reason in catalog.DENY_REASONS
                                    else "system_unavailable")
            self.auth = a
            self.call_id = a["call_id"]
            self._trunks = list(a.get("trunks") or [])
            self._prepare_names()
            return m.Authorized(True, e164=a.get("e164") or number,
                                max_seconds=a.get("max_seconds"),
                                record=bool(a.get("record")),
                                privileged=bool(a.get("privileged")),
                                language=a.get("language"))
        d.addCallback(answered).addErrback(self._core_failed)
        d.addCallback(self._pin_event)

    def _core_failed(self, failure):
        self._note_core_failure(failure)
        if source_refused(failure):
            return _SOURCE_REFUSED
        return m.CoreFailed("kiosk_unknown" if failure.check(wire.KioskUnknown)
                            else "system_unavailable")

    def _note_core_failure(self, failure) -> None:
        """Remember (and log) why the core gave no answer, for the call's setup-failure report."""
        detail = failure.getErrorMessage()
        if source_refused(failure):
            reason = "source_refused"
        elif failure.check(wire.KioskUnknown):
            reason = "kiosk_unknown"
        elif failure.check(wire.CoreBusy):
            reason = "core_busy"
        else:                                  # CoreUnreachable, CoreUnavailable, a lost link
            reason = "core_unreachable"
        self.log.info("call from {k} ({s}): the core gave no answer: {r} ({e})", k=self.kiosk_id,
                      s=self.source_ip, r=reason, e=detail)
        self._setup_failure = self._setup_failure or (reason, detail)

    def _prepare_names(self) -> None:
        """Spoken inmate and facility names for the announcement, made off the reactor thread."""
        a, lang = self.auth, self.auth.get("language") or self.language
        recorded = a.get("inmate_name_wav")
        if recorded and Path(recorded).is_file():
            self._names["inmate"] = Path(recorded)
        elif a.get("inmate_name"):
            threads.deferToThread(names.name_clip, a["inmate_name"], lang, self.data_dir
                                  ).addCallbacks(lambda c: self._names.setdefault("inmate", c),
                                                 lambda f: None)
        if a.get("facility_name"):
            threads.deferToThread(names.name_clip, a["facility_name"], lang, self.data_dir,
                                  "cp_a_correctional_facility"
                                  ).addCallbacks(lambda c: self._names.setdefault("facility", c),
                                                 lambda f: None)

    # -- dialling the called party -----------------------------------------------------------
    def _dial(self) -> None:
        self.phase = next_phase(self.phase, Phase.DIALING)
        self._dial_next()

    def _dial_next(self) -> None:
        if self.phase is not Phase.DIALING:
            return
        if not self._trunks:
            code = self.sip_code or 0
            self._party_result("busy" if code in BUSY_CODES else
                               "no_answer" if code in NO_ANSWER_CODES else "failed")
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
            self.log.warn("trunk {t} refused the dial: {e}", t=self.trunk, e=e)
            self.sip_code = 400
            self._released["called"] = True
            self.called = None
            self.reactor.callLater(0, self._dial_next)
            return
        self._trunk_timer = self.reactor.callLater(self.s.worker.trunk_setup_seconds, self._trunk_silent,
                                                   leg)
        self._answer_timer = self.reactor.callLater(self.s.worker.trunk_answer_seconds,
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
            self._disarm("called")
            self._stop_prompt("called")
            if self.phase is Phase.DIALING:
                self._cancel_dial_timers()
                failover = self._failover or code in FAILOVER_CODES
                self._failover = False
                if code and code != 487:
                    self.sip_code = code
                if not failover:
                    self._trunks = []
                self._dial_next()
            elif self.phase is Phase.ANNOUNCING:
                self._feed("called", m.Hangup())      # undecided: the flow refuses (hung_up)
                self._party_result("hung_up")
            elif self.phase is Phase.ACCEPTING:
                self._party_result("hung_up")
            elif self.phase is Phase.TALKING:
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
        lang = a.get("language") or self.language
        if lang not in self.s.ivr.languages:
            lang = self.s.ivr.language_default
        announcement = Announcement(
            language=lang, rate_micros_per_minute=int(a.get("rate_micros_per_minute") or 0),
            inmate_name=self._names.get("inmate"), facility_name=self._names.get("facility"),
            record=bool(a.get("record")), privileged=bool(a.get("privileged")),
            passive_accept=bool(a.get("passive_accept")))
        self.called_flow = CalledPartyFlow(announcement, self.s.ivr)
        self._perform("called", self.called_flow.start())

    # -- accepted: the grant ------------------------------------------------------------------
    def _accept(self) -> None:
        self.phase = next_phase(self.phase, Phase.ACCEPTING)
        d = self.link.ask(wire.Accept, call_id=self.call_id)
        d.addCallbacks(self._accept_granted, self._accept_failed)

    def _accept_failed(self, failure) -> None:
        if self.phase is not Phase.ACCEPTING:
            return
        reason = ("insufficient_funds" if failure.check(wire.InsufficientFunds) else
                  "failed" if failure.check(wire.CallAlreadyEnded, wire.UnknownCall,
                                            wire.BadRequest) else "system_unavailable")
        self.log.info("Accept for {c} failed: {e}", c=self.call_id, e=failure.getErrorMessage())
        self._feed("called", m.AcceptFailed(reason))
        self._party_result(reason)

    def _accept_granted(self, a) -> None:
        if self.phase is not Phase.ACCEPTING:
            return
        self.grant = g.Grant(a["grant_until"], a["last"], a.get("warn_at"))
        self._feed("called", m.AcceptGranted(a["grant_until"], a["last"]))

    def _bridge(self) -> None:
        """The called party accepted and the core granted time: bridge, record, keep the grant."""
        if self.phase is not Phase.ACCEPTING or self.grant is None:
            return
        self.outcome = "accepted"
        self._feed("kiosk", m.PartyResult("accepted"))
        self.phase = next_phase(self.phase, Phase.TALKING)
        self.talk_state = g.TalkState.LAST if self.grant.last else g.TalkState.GRANTED
        self.period = 1
        for role in ("kiosk", "called"):
            self._stop_prompt(role)
            self._disarm(role)
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
                   continue_lead=self.s.worker.continue_lead_seconds,
                   warning_seconds=self.s.worker.warning_seconds, warned=self.warned)
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
            self.log.warn("call {c}: no grant past {u}s ({e}); ending then", c=self.call_id,
                          u=held.until, e=failure.getErrorMessage())
            self._talk(g.TalkEvent.CORE_LOST)
            return
        self.reactor.callLater(CONTINUE_RETRY_SECONDS, self._try_continue, held)

    def _warn(self) -> None:
        if self.phase is Phase.TALKING and not self.warned:
            self.warned = True
            path = self.prompts.path("warning_one_minute", self.language)
            self.log.info("call {c}: both hear [warning_one_minute] ({s:.1f}s) the grant ends at "
                          "{u}s", c=self.call_id, s=_wav_seconds([path]), u=self.grant.until)
            self._warning = self.endpoint.play(path, [self.kiosk, self.called])

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
            self._play("kiosk", [self.prompts.path("call_ending", self.language)],
                       then=self.kiosk.hangup)
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
            self._disarm(role)
            if hang_up:
                self._stop_prompt(role)
        if self._warning is not None:
            self._warning.stop()
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
        self.log.info("call {c} from {k} ended: {d}, {t}s talk", c=self.call_id, k=self.kiosk_id,
                      d=disposition, t=self.talked)
        if was is Phase.IVR:                   # no trunk was dialled: say why, and count it
            self._report_setup_failure(disposition)
        self._maybe_done()

    def _report_setup_failure(self, disposition: str) -> None:
        reason, detail = self._setup_failure or setup_failure_for(self._end_reason, disposition)
        log_at = self.log.info if reason in ("abandoned", "no_input") else self.log.warn
        log_at("call from {k} ({s}) ended before dialling: {r} ({e})", k=self.kiosk_id,
               s=self.source_ip, r=reason, e=detail)
        kw = {"source_ip": self.source_ip} if self.source_ip else {}
        self.link.report(wire.SetupFailed, kiosk=self.kiosk_id, reason=reason,
                         detail=detail, setup_id=uuid.uuid4().hex, **kw).addErrback(
            lambda f: self.log.info("SetupFailed not counted: {e}", e=f.getErrorMessage()))

    def _maybe_done(self) -> None:
        if self.phase is Phase.ENDED and all(self._released.values()) and not self._done:
            self._done = True
            for role in ("kiosk", "called"):
                self._stop_prompt(role)
            self.on_done(self)
