"""The IVR vocabulary the worker executes, and the basic flows it runs until `ivr` provides its own.

A flow is a pure state machine: `start()` and `on(event)` return actions; the worker's adapter
(`switch.worker.call`) performs them on the legs and the core link and feeds back what happened.
Nothing here touches pjsua2, the network or a clock.

Inmate flow (kiosk leg): PIN then #, number then #, CheckPin, Authorize, Dial. A trusted kiosk
that sent the PIN in a header and the number in the Request-URI starts at CheckPin.
Called-party flow: the announcement, then 1 accept, 2 refuse, 9 block (passive accept skips it).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    # events in
    "Digit", "Timeout", "PromptDone", "PinAnswer", "AuthAnswer",
    # actions out
    "Play", "Collect", "CheckPin", "Authorize", "Dial", "Accept", "Refuse", "Block", "HangUp",
    "InmateFlow", "CalledPartyFlow", "IllegalFlowMove", "ACCEPT_KEY", "REFUSE_KEY", "BLOCK_KEY",
    "DIGITS_MAX", "PIN_TRIES_MAX", "CHOICE_REPEATS_MAX",
]

ACCEPT_KEY, REFUSE_KEY, BLOCK_KEY = "1", "2", "9"
DIGITS_MAX = 20            # a PIN or a number longer than this is cut off and checked as keyed
PIN_TRIES_MAX = 3          # the core's lockout is the real limit; this bounds one call
CHOICE_REPEATS_MAX = 2     # the called party hears the choice this many times, then no_answer


# -- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Digit:
    digit: str


@dataclass(frozen=True)
class Timeout:
    pass


@dataclass(frozen=True)
class PromptDone:
    pass


@dataclass(frozen=True)
class PinAnswer:
    ok: bool
    locked: bool = False
    attempts_left: int = 0
    language: str | None = None


@dataclass(frozen=True)
class AuthAnswer:
    allow: bool
    reason: str | None = None


# -- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Play:
    prompts: tuple[str, ...]      # prompt ids (or WAV paths), played in order; then PromptDone


@dataclass(frozen=True)
class Collect:
    seconds: float                # a Timeout event unless a digit comes first


@dataclass(frozen=True)
class CheckPin:
    pin: str


@dataclass(frozen=True)
class Authorize:
    number: str


@dataclass(frozen=True)
class Dial:
    pass


@dataclass(frozen=True)
class Accept:
    pass


@dataclass(frozen=True)
class Refuse:
    pass


@dataclass(frozen=True)
class Block:
    pass


@dataclass(frozen=True)
class HangUp:
    disposition: str


class IllegalFlowMove(Exception):
    def __init__(self, state, event) -> None:
        super().__init__(f"{type(event).__name__} is not expected in flow state {state.value}")
        self.state, self.event = state, event


class InmateStep(enum.Enum):
    PIN = "pin"                  # collecting the PIN
    CHECKING = "checking"        # CheckPin sent
    NUMBER = "number"            # collecting the number
    AUTHORIZING = "authorizing"  # Authorize sent
    CLOSING = "closing"          # a final prompt plays, then hang up
    DIALING = "dialing"          # handed over to the dialer: the flow is done
    DONE = "done"


class InmateFlow:
    def __init__(self, *, digit_seconds: float, pin: str | None = None,
                 number: str | None = None):
        self.digit_seconds = digit_seconds
        self.pin, self.number = pin, number
        self.language: str | None = None
        self.step = InmateStep.PIN
        self._keyed = ""
        self._tries = 0
        self._closing: str = "abandoned"

    def start(self) -> list:
        if self.pin is not None:
            self.step = InmateStep.CHECKING
            return [CheckPin(self.pin)]
        return self._ask("enter_pin")

    def _ask(self, prompt: str, *before: str) -> list:
        self._keyed = ""
        return [Play((*before, prompt)), Collect(self.digit_seconds)]

    def _close(self, disposition: str, *prompts: str) -> list:
        self.step, self._closing = InmateStep.CLOSING, disposition
        return [Play(prompts)] if prompts else [HangUp(disposition)]

    def on(self, event) -> list:
        s = self.step
        if s in (InmateStep.PIN, InmateStep.NUMBER):
            if isinstance(event, Digit):
                if event.digit == "#" or len(self._keyed) >= DIGITS_MAX:
                    return self._keyed_done()
                self._keyed += event.digit
                return [Collect(self.digit_seconds)]
            if isinstance(event, Timeout):
                return self._keyed_done() if self._keyed else self._close("abandoned", "goodbye")
            if isinstance(event, PromptDone):
                return []
        elif s is InmateStep.CHECKING and isinstance(event, PinAnswer):
            if event.ok:
                self.language = event.language
                if self.number is not None:
                    self.step = InmateStep.AUTHORIZING
                    return [Authorize(self.number)]
                self.step = InmateStep.NUMBER
                return self._ask("enter_number")
            self._tries += 1
            if event.locked:
                return self._close("denied", "pin_locked")
            if self.pin is not None or self._tries >= PIN_TRIES_MAX or event.attempts_left <= 0:
                return self._close("denied", "pin_invalid")
            self.step = InmateStep.PIN
            return self._ask("enter_pin", "pin_invalid")
        elif s is InmateStep.AUTHORIZING and isinstance(event, AuthAnswer):
            if event.allow:
                self.step = InmateStep.DIALING
                return [Play(("please_wait",)), Dial()]
            return self._close("denied", f"deny_{event.reason or 'system_unavailable'}")
        elif s is InmateStep.CLOSING and isinstance(event, PromptDone):
            self.step = InmateStep.DONE
            return [HangUp(self._closing)]
        elif s in (InmateStep.CHECKING, InmateStep.AUTHORIZING, InmateStep.CLOSING,
                   InmateStep.DIALING, InmateStep.DONE) and isinstance(event, (Digit, Timeout,
                                                                               PromptDone)):
            return []      # keys and prompt ends while waiting on the core are ignored
        raise IllegalFlowMove(s, event)

    def _keyed_done(self) -> list:
        keyed, self._keyed = self._keyed, ""
        if not keyed:
            return [Collect(self.digit_seconds)]
        if self.step is InmateStep.PIN:
            self.step = InmateStep.CHECKING
            return [CheckPin(keyed)]
        self.step = InmateStep.AUTHORIZING
        self.number = keyed
        return [Authorize(keyed)]


class CalledStep(enum.Enum):
    ANNOUNCING = "announcing"
    CLOSING = "closing"
    DONE = "done"


class CalledPartyFlow:
    """What the called party hears and may choose. `announcement` is the prompt ids (or WAV
    paths) of who calls, from where, that it is recorded and the price."""

    def __init__(self, announcement: tuple[str, ...], *, choice_seconds: float,
                 passive_accept: bool = False):
        self.announcement = announcement
        self.choice_seconds = choice_seconds
        self.passive_accept = passive_accept
        self.step = CalledStep.ANNOUNCING
        self._repeats = 0
        self._closing = "no_answer"

    def start(self) -> list:
        if self.passive_accept:
            self.step = CalledStep.DONE
            return [Accept()]
        return [Play(self.announcement + ("choose",)), Collect(self.choice_seconds)]

    def on(self, event) -> list:
        s = self.step
        if s is CalledStep.ANNOUNCING:
            if isinstance(event, Digit):
                if event.digit == ACCEPT_KEY:
                    self.step = CalledStep.DONE
                    return [Accept()]
                if event.digit == REFUSE_KEY:
                    self.step, self._closing = CalledStep.CLOSING, "refused"
                    return [Refuse(), Play(("goodbye",))]
                if event.digit == BLOCK_KEY:
                    self.step, self._closing = CalledStep.CLOSING, "blocked"
                    return [Block(), Play(("number_blocked",))]
                return []
            if isinstance(event, Timeout):
                self._repeats += 1
                if self._repeats >= CHOICE_REPEATS_MAX:
                    self.step = CalledStep.DONE
                    return [HangUp("no_answer")]
                return [Play(("choose",)), Collect(self.choice_seconds)]
            if isinstance(event, PromptDone):
                return []
        elif s is CalledStep.CLOSING:
            if isinstance(event, PromptDone):
                self.step = CalledStep.DONE
                return [HangUp(self._closing)]
            if isinstance(event, (Digit, Timeout)):
                return []
        elif s is CalledStep.DONE and isinstance(event, (Digit, Timeout, PromptDone)):
            return []
        raise IllegalFlowMove(s, event)
