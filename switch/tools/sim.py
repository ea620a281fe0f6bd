"""Simulated SIP peers for the demo and the tests: a kiosk that dials and keys digits, and a called
party that answers (or refuses), presses keys, talks and records what it hears.

Both run on one pjsua2 endpoint (`Phone`) in the calling process, polled by the injected reactor;
pjsua2 allows one endpoint per process, so the worker under test runs in its own process. A Phone
holds at most `max_legs` legs (4 with the PyPI wheel) across all its calls.

    phone = Phone(reactor, sip_port=P, rtp_port_min=A, rtp_port_max=B); phone.start()
    call = phone.dial("sip:+15551234567@127.0.0.1:5070", headers={"X-ICS-PIN": "10011234"},
                      caller="kiosk-1")
    await call.confirmed; call.send_digits("1"); call.hangup(); await call.ended
    phone.answer_with = lambda incoming: 200      # or 503, 486, None (ring, never answer)
    await phone.shutdown()
"""
from __future__ import annotations

import array
import math
import wave
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer

from switch.worker.media import DtmfMethod, Endpoint, Incoming, Leg, LegState
from switch.worker.prompts import write_tone

__all__ = ["Phone", "SimCall", "write_tone", "wav_rms", "wav_complete", "loud_spans", "DtmfMethod"]


def wav_rms(path: str) -> tuple[float, float]:
    """(seconds, RMS amplitude) of a 16-bit mono WAV: how long it is and how loud."""
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        rate = w.getframerate()
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) // 2 * 2])
    if not samples:
        return 0.0, 0.0
    return len(samples) / rate, math.sqrt(sum(s * s for s in samples) / len(samples))


@dataclass
class SimCall:
    """One simulated call leg, with everything a test wants to assert on."""
    leg: Leg
    incoming: Incoming | None = None
    confirmed: defer.Deferred = field(default_factory=defer.Deferred)
    media: defer.Deferred = field(default_factory=defer.Deferred)
    ended: defer.Deferred = field(default_factory=defer.Deferred)
    states: list[LegState] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)   # 3xx Contacts followed, in order
    status_code: int = 0
    _talk: object = None
    _rec: object = None

    @property
    def up(self) -> bool:
        return self.leg.state is LegState.CONFIRMED

    @property
    def gone(self) -> bool:
        return self.leg.gone

    def send_digits(self, digits: str, method: DtmfMethod = DtmfMethod.RFC4733) -> None:
        self.leg.send_digits(digits, method)

    def hangup(self) -> None:
        self.leg.hangup()

    def talk(self, path: str) -> None:
        """Play `path` in a loop into the call, as a person talking."""
        self._talk = self.leg.endpoint.play(path, [self.leg], loop=True)

    def record(self, path: str) -> None:
        """Record what this side hears into `path` (closed when the call ends)."""
        self._rec = self.leg.endpoint.record(path, [self.leg])

    def _stop_media(self) -> None:
        if self._talk is not None:
            self._talk.stop()
            self._talk = None
        if self._rec is not None:
            self._rec.stop()
            self._rec = None


class Phone:
    """A pjsua2 endpoint playing kiosks and called parties.

    `answer_with(incoming) -> int | None` decides each inbound call: 200 answers, another code
    (e.g. 503, 486) refuses, None lets it ring. `answer_delay` seconds pass before answering.
    `on_call(sim_call)` sees every inbound call; `calls` lists them all, inbound and outbound.
    Outbound calls follow a 3xx (the front door's 302) to its Contact; `on_redirect(sim_call,
    target)` sees each one.
    """

    def __init__(self, reactor, *, sip_port: int, rtp_port_min: int, rtp_port_max: int,
                 host: str = "127.0.0.1", log_level: int = 0):
        self.reactor = reactor
        self.endpoint = Endpoint(reactor, sip_port=sip_port, rtp_port_min=rtp_port_min,
                                 rtp_port_max=rtp_port_max, host=host, user="sim",
                                 log_level=log_level, on_incoming=self._incoming)
        self.answer_with: Callable[[Incoming], int | None] = lambda incoming: 200
        self.answer_delay = 0.0
        self.talk_path: str | None = None          # every answered call talks this WAV
        self.on_call: Callable[[SimCall], None] = lambda call: None
        self.on_redirect: Callable[[SimCall, str], None] = lambda call, target: None
        self.calls: list[SimCall] = []
        self.inbound: list[SimCall] = []

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def sip_port(self) -> int:
        return self.endpoint.sip_port

    def start(self) -> None:
        self.endpoint.start()

    def shutdown(self) -> defer.Deferred:
        for call in self.calls:
            call._stop_media()
        return self.endpoint.shutdown()

    def dial(self, uri: str, *, caller: str = "kiosk", headers: dict[str, str] | None = None
             ) -> SimCall:
        """Call `uri` from `caller` (the From user: the kiosk's identity)."""
        leg = self.endpoint.new_leg(caller)
        call = self._track(leg)
        leg.follow_redirects = True           # a kiosk follows the front door's 302
        leg.on_redirect = lambda leg, target: self._redirected(call, target)
        leg.dial(uri, headers)
        return call

    def _track(self, leg: Leg, incoming: Incoming | None = None) -> SimCall:
        call = SimCall(leg, incoming)
        self.calls.append(call)
        leg.on_state = lambda leg, state, code: self._state(call, state, code)
        leg.on_media = lambda leg: self._media(call)
        leg.on_digit = lambda leg, digit, method: call.digits.append(digit)
        return call

    def _redirected(self, call: SimCall, target: str) -> None:
        call.redirects.append(target)
        self.on_redirect(call, target)

    def _incoming(self, leg: Leg, incoming: Incoming) -> None:
        call = self._track(leg, incoming)
        self.inbound.append(call)
        code = self.answer_with(incoming)
        if code is None:
            leg.ring()
        elif code == 200:
            leg.ring()
            self.reactor.callLater(self.answer_delay, leg.answer)
        else:
            leg.reject(code)
        self.on_call(call)

    def _state(self, call: SimCall, state: LegState, code: int) -> None:
        call.states.append(state)
        call.status_code = code or call.status_code
        if state is LegState.CONFIRMED and not call.confirmed.called:
            call.confirmed.callback(call)
        if state is LegState.DISCONNECTED:
            call._stop_media()
            if not call.ended.called:
                call.ended.callback(call)

    def _media(self, call: SimCall) -> None:
        if self.talk_path and call.incoming is not None and call._talk is None:
            call.talk(self.talk_path)
        if not call.media.called:
            call.media.callback(call)


def wav_complete(path: str) -> bool:
    """The WAV's header is final: pjmedia writes the sizes when the recorder port is removed,
    which the conference bridge does on its clock a moment after `Recording.stop()`."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        return False
    return len(head) == 8 and head[:4] == b"RIFF" and head[4:8] != b"\0\0\0\0"


def loud_spans(path: str, *, window: float = 0.05, threshold: float = 500.0
               ) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches of a 16-bit mono WAV louder than `threshold` RMS."""
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    samples = array.array("h")
    samples.frombytes(frames[: len(frames) // 2 * 2])
    n = max(1, int(rate * window))
    spans: list[tuple[float, float]] = []
    for i in range(0, len(samples), n):
        chunk = samples[i:i + n]
        loud = math.sqrt(sum(s * s for s in chunk) / len(chunk)) > threshold
        t = i / rate
        if loud and spans and abs(spans[-1][1] - t) < 1e-9:
            spans[-1] = (spans[-1][0], t + len(chunk) / rate)
        elif loud:
            spans.append((t, t + len(chunk) / rate))
    return spans
