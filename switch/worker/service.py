"""A media worker: one pjsua2 endpoint, its admission rule, its calls and its link to the core.

Admission: a kiosk call takes two legs (kiosk and outbound), so a new INVITE is answered 503
(with Retry-After) unless a slot is also free for its outbound leg, and while the core is out of
reach (nothing could be authorized). Capacity is read from the pjsua build at start.

Before admission every request passed the worker's screen (switch.worker.screen): floods shed per
source, REFER and Replaces/Join refused, stray ACKs dropped, in-dialog requests from anyone but the
dialog's peer refused. An INVITE that still names another dialog (Join, which pjsua does not know)
is refused 403 here.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from twisted.internet import defer, task
from twisted.logger import Logger

from switch.settings import WorkerProcessSettings, WorkerSettings
from switch.worker.call import CallSettings, SwitchedCall
from switch.worker.link import CoreLink
from switch.worker.media import Endpoint, Incoming, Leg
from switch.worker.proof_call import ProofCall
from switch.worker.proof_place import ProofPlacements
from switch.worker.prompts import Prompts
from switch.worker.screen import Rule, Screen, ScreenSettings

__all__ = ["Worker", "WorkerOptions", "LEGS_PER_CALL", "RETRY_AFTER_SECONDS", "STOP_SECONDS_MAX"]

log = Logger()

LEGS_PER_CALL = 2            # the kiosk leg and the outbound leg
RETRY_AFTER_SECONDS = 2      # in the 503 of a full worker
STOP_SECONDS_MAX = 4.0       # on stop: time for End reports to reach the core
SCREEN_LOG_SECONDS = 10.0    # a source's stopped requests are logged at most once this often


@dataclass(frozen=True)
class WorkerOptions:
    """This worker's place (id, ports, the core's endpoint, given on its command line) and the
    settings its supervisor handed down; timers, rates and the call's settings are read from
    those settings, never copied out of them."""
    worker_id: str
    sip_port: int
    rtp_port_min: int
    rtp_port_max: int
    core: str                                   # a Twisted client endpoint: tcp:HOST:PORT
    data_dir: Path
    settings: WorkerProcessSettings = WorkerProcessSettings()

    @property
    def host(self) -> str:
        return self.settings.switch.sip_host

    @property
    def heartbeat_seconds(self) -> float:
        return self.settings.switch.heartbeat_seconds

    @property
    def worker(self) -> WorkerSettings:
        return self.settings.worker

    @cached_property
    def screen(self) -> ScreenSettings:
        return ScreenSettings.of(self.settings.worker)

    @cached_property
    def call(self) -> CallSettings:
        return CallSettings.of(self.settings.worker, self.settings.ivr)


SETUP_PREFIX = "setup:"     # switch.processes.supervisor.SETUP_PREFIX


class Worker:
    def __init__(self, reactor, options: WorkerOptions):
        self.reactor, self.o = reactor, options
        self.screen = Screen(reactor.seconds, options.screen, admitting=self._room_for_a_call)
        self._screen_logged: dict[tuple[str, Rule], float] = {}
        self.endpoint = Endpoint(reactor, sip_port=options.sip_port,
                                 rtp_port_min=options.rtp_port_min,
                                 rtp_port_max=options.rtp_port_max, host=options.host,
                                 log_level=options.worker.sip_log_level,
                                 on_incoming=self._incoming,
                                 poll_idle=options.worker.poll_idle_ms / 1000,
                                 poll_active=options.worker.poll_active_ms / 1000,
                                 screen=self.screen, on_screened=self._screened,
                                 strict_media_source=True)
        self.prompts = Prompts(options.data_dir / "prompt-tones")
        self.calls: set[SwitchedCall] = set()
        self.capacity = 0
        self.link: CoreLink | None = None
        self.draining = False
        self.refused = 0          # INVITEs answered 503
        self.proofs = ProofPlacements(self)   # proof calls the core asked for (proof_place)

    def start(self) -> None:
        self.endpoint.start()
        self.capacity = self.endpoint.max_legs // LEGS_PER_CALL
        self.link = CoreLink(self.reactor, self.o.core, worker_id=self.o.worker_id,
                             capacity=self.capacity, sip_port=self.o.sip_port,
                             heartbeat_seconds=self.o.heartbeat_seconds,
                             answer_seconds=self.o.worker.core_answer_seconds,
                             active_calls=self.active_calls,
                             on_unknown_calls=self._unknown_calls,
                             on_terminate=self._terminate,
                             on_proof_call=self.proofs.place)
        self.link.start()
        log.info("worker {w}: SIP {h}:{p}, RTP {a}-{b}, {c} calls ({legs} legs)",
                 w=self.o.worker_id, h=self.o.host, p=self.o.sip_port, a=self.o.rtp_port_min,
                 b=self.o.rtp_port_max, c=self.capacity, legs=self.endpoint.max_legs)

    def active_calls(self) -> list[str]:
        # A call not yet authorized shows as a placeholder: the front door sees the kiosk arrived.
        return sorted(c.call_id or f"{SETUP_PREFIX}{id(c):x}" for c in self.calls
                      if c.disposition is None)

    def admits(self, pending_leg: bool = True) -> bool:
        """Room for one more call: this INVITE's leg is already counted by pjsua (unless asked
        before pjsua saw the INVITE: `pending_leg=False`)."""
        free_legs = self.endpoint.max_legs - self.endpoint.legs_in_use - (0 if pending_leg else 1)
        # A call whose legs pjsua already disconnected (this very poll, perhaps) holds no slot.
        holding = sum(1 for c in self.calls if c.holds_slots)
        return (not self.draining and self.link is not None and self.link.reachable
                and holding < self.capacity and free_legs >= LEGS_PER_CALL - 1)

    def _room_for_a_call(self) -> bool:
        """Before pjsua sees a new INVITE: would it be admitted? (Its leg is not counted yet.)"""
        return self.endpoint.max_legs > 0 and self.admits(pending_leg=False)

    def _screened(self, source: str, verdict, text: str) -> None:
        """One log line per (source, rule) per SCREEN_LOG_SECONDS: a flood must not flood logs."""
        key, now = (source, verdict.rule), self.reactor.seconds()
        if now - self._screen_logged.get(key, -SCREEN_LOG_SECONDS) >= SCREEN_LOG_SECONDS:
            self._screen_logged[key] = now
            if len(self._screen_logged) > 4096:
                self._screen_logged.clear()
            log.warn("screen: {rule} from {s} ({code}): {line!r}; {n} stopped so far",
                     rule=verdict.rule.name.lower(), s=source, code=verdict.code or "dropped",
                     line=text.split("\r\n", 1)[0][:120], n=self.screen.stopped[verdict.rule])

    def _incoming(self, leg: Leg, incoming: Incoming) -> None:
        if "replaces" in incoming.headers or "join" in incoming.headers:
            log.warn("403 to an INVITE from {s} naming another dialog", s=incoming.source)
            leg.reject(403)
            return
        if not self.admits():
            self.refused += 1
            log.info("503 to {k} from {s}: {n} calls hold {legs} legs, core {r}",
                     k=incoming.from_user, s=incoming.source,
                     n=sum(1 for c in self.calls if c.holds_slots),
                     legs=self.endpoint.legs_in_use,
                     r="reachable" if self.link and self.link.reachable else "unreachable")
            leg.reject(503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
            return
        call = SwitchedCall(self.reactor, self.endpoint, self.link, self.prompts, self.o.call,
                            leg, incoming, data_dir=self.o.data_dir,
                            on_done=self._call_done)
        self.calls.add(call)
        call.start()
        self.link.beat_now()                # the core's table counts the slot taken at once

    def _call_done(self, call: SwitchedCall) -> None:
        self.calls.discard(call)
        if self.link is not None:
            self.link.beat_now()            # ... and free again as soon as the call ends

    def _find(self, call_id: str) -> SwitchedCall | None:
        return next((c for c in self.calls if c.call_id == call_id), None)

    def _terminate(self, call_id: str, reason: str) -> bool:
        call: SwitchedCall | ProofCall | None = self._find(call_id) or self.proofs.find(call_id)
        if call is None:
            return False
        call.terminate(reason)
        return True

    def _unknown_calls(self, call_ids: list[str]) -> None:
        # The core has closed these (e.g. as worker_lost): no grant stands behind them any more.
        for call_id in call_ids:
            call = self._find(call_id)
            if call is not None:
                log.warn("core no longer knows call {c}: ending it", c=call_id)
                call.finish("worker_lost")

    @defer.inlineCallbacks
    def stop(self):
        """Take no more calls, end the ones up, give their End reports a moment, then close."""
        self.draining = True
        for call in list(self.calls):
            call.terminate("shutdown")
        self.proofs.terminate_all()
        deadline = self.reactor.seconds() + STOP_SECONDS_MAX
        while (self.calls or self.proofs.calls or (self.link and self.link.reports_pending)) and \
                self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, 0.05, lambda: None)
        yield self.endpoint.shutdown()
        if self.link is not None:
            yield self.link.stop()
