"""One proof call on a worker: dial the number through the trunks, speak the code, report.

The core asked for it (switch.wire.proof.PlaceProofCall, its MAC checked by the worker); there is
no kiosk leg and no money. Phases::

    DIALING --answered, media up--> SPEAKING (ivr.flows.proof) --flow hangs up / they hang up--> ENDED
    DIALING --every trunk failed, busy, no answer--> ENDED

Trunks are tried as a kiosk call's are (switch.worker.call): the next one on 408/503 or silence
within `trunk_setup_seconds`, none after `trunk_answer_seconds` of ringing. The end is reported
with `ProofCallEnded`, resent until the core answers (idempotent on the proof id).
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger

from ivr import names
from ivr.flows import moves as m
from ivr.flows.proof import ProofFlow, ProofMessage
from switch.wire.proof import ProofCallEnded
from switch.worker.call import BUSY_CODES, FAILOVER_CODES, NO_ANSWER_CODES, CallSettings
from switch.worker.link import CoreLink
from switch.worker.media import Endpoint, Leg, LegState, Prompt

__all__ = ["ProofCall", "ProofPhase"]

log = Logger()

MEDIA_WAIT_SECONDS = 0.05      # media comes a moment after the answer: look again this soon


class ProofPhase(enum.Enum):
    DIALING = "dialing"
    SPEAKING = "speaking"
    ENDED = "ended"


class ProofCall:
    """A proof call from PlaceProofCall to ProofCallEnded. `on_done(call)` once its leg is gone."""

    def __init__(self, reactor: Any, endpoint: Endpoint, link: CoreLink, settings: CallSettings, *,
                 proof_id: str, e164: str, trunks: list[str], language: str, code: str,
                 caller_name: str, data_dir: Path,
                 on_done: Callable[["ProofCall"], None] = lambda call: None):
        self.reactor, self.endpoint, self.link, self.s = reactor, endpoint, link, settings
        self.proof_id, self.e164 = proof_id, e164
        self.data_dir = data_dir
        self.on_done = on_done
        self.phase = ProofPhase.DIALING
        self.message = ProofMessage(language, code)
        self.caller_name = caller_name
        self.flow: ProofFlow | None = None
        self.leg: Leg | None = None
        self.trunk: str | None = None
        self.sip_code: int | None = None
        self.outcome: str | None = None
        self.answered_at: float | None = None
        self.ended: defer.Deferred[Any] = defer.Deferred()   # ProofCallEnded's answer
        self._trunks = list(trunks)
        self._failover = False
        self._ringing = False
        self._timers: list[Any] = []
        self._prompt: Prompt | None = None
        self._play_token: object | None = None
        self._done = False

    @property
    def holds_slots(self) -> bool:
        return self.leg is not None and not self.leg.gone

    def start(self) -> None:
        if self.caller_name:           # "This is <name> calling": made off the reactor thread
            threads.deferToThread(names.name_clip, self.caller_name, self.message.language,
                                  self.data_dir).addCallbacks(self._named, lambda f: None)
        self._dial_next()

    def _named(self, clip: Any) -> None:
        if clip is not None and self.flow is None:
            self.message = ProofMessage(self.message.language, self.message.code, clip)

    # -- dialling ---------------------------------------------------------------------------
    def _dial_next(self) -> None:
        if self.phase is not ProofPhase.DIALING:
            return
        if not self._trunks:
            code = self.sip_code or 0
            self._finish("busy" if code in BUSY_CODES else
                         "no_answer" if code in NO_ANSWER_CODES else "failed")
            return
        self.trunk = self._trunks.pop(0)
        leg = self.leg = self.endpoint.new_leg()
        self._ringing = False
        leg.on_state = self._state
        leg.on_media = lambda leg: self._media()
        leg.on_digit = lambda leg, digit, method: self._feed(m.Digit(digit)) \
            if len(digit) == 1 and digit in "0123456789*#" else None
        try:
            leg.dial(self.trunk)
        except Exception as e:          # a malformed trunk URI: the next one
            log.warn("proof {p}: trunk {t} refused the dial: {e}", p=self.proof_id, t=self.trunk,
                     e=e)
            self.sip_code, self.leg = 400, None
            self.reactor.callLater(0, self._dial_next)
            return
        self._cancel_timers()
        self._timers = [
            self.reactor.callLater(self.s.worker.trunk_setup_seconds, self._trunk_silent, leg),
            self.reactor.callLater(self.s.worker.trunk_answer_seconds, self._no_answer, leg)]

    def _cancel_timers(self) -> None:
        for t in self._timers:
            if t.active():
                t.cancel()
        self._timers = []

    def _trunk_silent(self, leg: Leg) -> None:
        if leg is self.leg and not self._ringing and not leg.gone:
            self.sip_code, self._failover = 408, True
            leg.hangup()

    def _no_answer(self, leg: Leg) -> None:
        if leg is self.leg and self.phase is ProofPhase.DIALING:
            self.sip_code, self._trunks = 480, []
            leg.hangup()

    def _state(self, leg: Leg, state: LegState, code: int) -> None:
        if leg is not self.leg:
            return
        if state in (LegState.EARLY, LegState.CONNECTING, LegState.CONFIRMED):
            self._ringing = True
        if state is LegState.CONFIRMED:
            self._cancel_timers()
            self.sip_code = 200
            self._media()
        elif state is LegState.DISCONNECTED:
            self._stop_prompt()
            if self.phase is ProofPhase.DIALING:
                self._cancel_timers()
                failover = self._failover or code in FAILOVER_CODES
                self._failover = False
                if code and code != 487:
                    self.sip_code = code
                if not failover:
                    self._trunks = []
                self._dial_next()
            elif self.phase is ProofPhase.SPEAKING:
                self._feed(m.Hangup())
                self._finish(self.flow.outcome if self.flow and self.flow.outcome else "hung_up")
            self._maybe_done()

    def _media(self) -> None:
        leg = self.leg
        if self.phase is ProofPhase.DIALING and leg is not None and \
                leg.state is LegState.CONFIRMED and leg.media_up:
            self.phase = ProofPhase.SPEAKING
            self.answered_at = self.reactor.seconds()
            self.flow = ProofFlow(self.message)
            self._perform(self.flow.start())

    # -- the flow's actions -----------------------------------------------------------------
    def _feed(self, event: Any) -> None:
        if self.flow is None or self.flow.done:
            return
        try:
            actions = self.flow.feed(event)
        except m.IllegalMove as e:      # our bug, never the called party's
            log.error("proof {p}: {e}", p=self.proof_id, e=e)
            return
        self._perform(actions)

    def _perform(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, m.Play):
                files = [str(p) for p in action.files()]
                # The ids only: the code's digits are the secret of this call (num_* ids show
                # that digits were said, never which).
                log.info("proof {p}: called hears [{ids}]", p=self.proof_id,
                         ids=",".join("num" if isinstance(c, str) and c.startswith("num_")
                                      else (c.stem if isinstance(c, Path) else c)
                                      for c in action.clips))
                self._play(files)
            elif isinstance(action, m.HangUp):
                self._finish((self.flow.outcome or "spoken") if self.flow else "failed")
            else:
                raise TypeError(f"the proof flow asked for {action!r}")

    def _play(self, paths: list[str]) -> None:
        self._stop_prompt()
        token = self._play_token = object()

        def next_one(_: object = None) -> None:
            if self._play_token is not token:
                return
            leg = self.leg
            if leg is None or leg.gone:
                return
            if not paths:
                self._play_token, self._prompt = None, None
                self._feed(m.PromptDone())
                return
            if not leg.media_up:
                self.reactor.callLater(MEDIA_WAIT_SECONDS, next_one)
                return
            self._prompt = self.endpoint.play(paths.pop(0), [leg])
            self._prompt.done.addCallback(next_one)
        next_one()

    def _stop_prompt(self) -> None:
        prompt, self._prompt, self._play_token = self._prompt, None, None
        if prompt is not None:
            prompt.stop()

    # -- the end ----------------------------------------------------------------------------
    def terminate(self, reason: str = "failed") -> None:
        self._finish("spoken" if self.flow and self.flow.call.readings else reason)

    def _finish(self, outcome: str) -> None:
        if self.phase is ProofPhase.ENDED:
            return
        self.phase = ProofPhase.ENDED
        self.outcome = outcome
        self._cancel_timers()
        self._stop_prompt()
        if self.leg is not None and not self.leg.gone:
            self.leg.hangup()
        talk = 0 if self.answered_at is None else int(self.reactor.seconds() - self.answered_at)
        kw: dict[str, Any] = {"proof_id": self.proof_id, "outcome": outcome, "talk_seconds": max(0, talk)}
        if self.trunk:
            kw["trunk"] = self.trunk
        if self.sip_code:
            kw["sip_code"] = self.sip_code
        self.link.report(ProofCallEnded, **kw).chainDeferred(self.ended)
        log.info("proof {p} ended: {o} (SIP {c})", p=self.proof_id, o=outcome, c=self.sip_code)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.phase is ProofPhase.ENDED and not self.holds_slots and not self._done:
            self._done = True
            self.on_done(self)
