"""The proof call's leg: say who is calling and the one-time code, say it again, hang up.

A pure state machine like the other flows (`ivr.flows.called_party`): `begin(message)` gives the
first state and actions, `step(call, event)` the next, `IllegalMove` for an event the phase
cannot take::

    FIRST (intro and code) --PromptDone--> AGAIN (the code again, goodbye) --PromptDone--> ENDED
    a hangup -> ENDED

What the called party hears, in the holder's language::

    This is <caller>, calling with your verification code. Your code is 4 8 1 9 0 2.
    Again, your code is 4 8 1 9 0 2. Enter this code where you asked for this call. Goodbye.

<caller> is a name WAV the worker made from the node's setting (`ivr.names`), else "the family
phone service". The code is said digit by digit with the standalone cardinals (``num_0`` ..
``num_9``), which is also what a listener (or a test's matched filter) can tell apart. Keys are
ignored: no prompt here barges in, and there is nothing to choose.

`ProofCall.outcome` is what the worker reports (switch.wire.proof.OUTCOMES): ``spoken`` once the
first reading played to its end, so a listener who hangs up during the repeat has heard the code;
``hung_up`` for a hangup before that.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ivr import catalog
from ivr.flows.moves import (
    Action,
    BadEvent,
    Digit,
    Event,
    HangUp,
    Hangup,
    IllegalMove,
    Play,
    PromptDone,
)

__all__ = [
    "Phase",
    "ProofMessage",
    "ProofCall",
    "ProofFlow",
    "begin",
    "step",
    "code_clips",
    "first_clips",
    "again_clips",
    "legal_events",
    "CODE_DIGITS_MIN",
    "CODE_DIGITS_MAX",
]

FLOW = "proof"
CODE_DIGITS_MIN, CODE_DIGITS_MAX = 4, 10


class Phase(enum.Enum):
    FIRST = "first"  # the intro and the code play
    AGAIN = "again"  # the code again, then goodbye
    ENDED = "ended"  # terminal: hung up (by us or by them)


@dataclass(frozen=True)
class ProofMessage:
    """What the proof call says: the code, in which language, and who is calling."""

    language: str
    code: str
    caller_name: catalog.Clip | None = None  # a name WAV, or None for the catalog's default

    def __post_init__(self) -> None:
        catalog.check_language(self.language)
        if not (
            isinstance(self.code, str)
            and self.code.isascii()
            and self.code.isdigit()
            and CODE_DIGITS_MIN <= len(self.code) <= CODE_DIGITS_MAX
        ):
            raise BadEvent(
                f"ProofMessage.code must be {CODE_DIGITS_MIN}..{CODE_DIGITS_MAX} digits, "
                f"got {len(self.code) if isinstance(self.code, str) else self.code!r} characters"
            )
        if isinstance(self.caller_name, str):
            catalog.path(self.caller_name, self.language)  # UnknownPrompt for a wrong id
        elif self.caller_name is not None and not isinstance(self.caller_name, Path):
            raise BadEvent("ProofMessage.caller_name must be a Path, a prompt id or None")

    def __repr__(self) -> str:  # the code stays out of logs that print flow states
        return f"ProofMessage(language={self.language!r}, code=<{len(self.code)} digits>)"


@dataclass(frozen=True)
class ProofCall:
    """The whole state of the proof call's leg."""

    phase: Phase
    message: ProofMessage
    readings: int = 0  # readings of the code played to their end
    outcome: str | None = None  # spoken | hung_up, once ended

    @property
    def done(self) -> bool:
        return self.phase is Phase.ENDED


Result = tuple[ProofCall, list[Action]]


def code_clips(code: str) -> list[catalog.Clip]:
    """The code digit by digit: ``num_4, num_8, ...`` (standalone cardinals in every language)."""
    return [f"num_{d}" for d in code]


def first_clips(m: ProofMessage) -> list[catalog.Clip]:
    return [
        "proof_this_is",
        m.caller_name or "proof_caller_default",
        "proof_calling_with_code",
        "proof_code_is",
        *code_clips(m.code),
    ]


def again_clips(m: ProofMessage) -> list[catalog.Clip]:
    return ["proof_again", *code_clips(m.code), "proof_goodbye"]


def _first_done(call: ProofCall, e: PromptDone) -> Result:
    call = replace(call, phase=Phase.AGAIN, readings=1)
    return call, [Play(tuple(again_clips(call.message)), call.message.language)]


def _again_done(call: ProofCall, e: PromptDone) -> Result:
    call = replace(call, phase=Phase.ENDED, readings=2, outcome="spoken")
    return call, [HangUp("spoken")]


def _hangup(call: ProofCall, e: Hangup) -> Result:
    outcome = "spoken" if call.readings >= 1 else "hung_up"
    return replace(call, phase=Phase.ENDED, outcome=outcome), []


def _ignore(call: ProofCall, e: Event) -> Result:
    return call, []


P = Phase
_TABLE: dict[Phase, dict[type, Callable[[ProofCall, Any], Result]]] = {
    P.FIRST: {PromptDone: _first_done, Digit: _ignore, Hangup: _hangup},
    P.AGAIN: {PromptDone: _again_done, Digit: _ignore, Hangup: _hangup},
    P.ENDED: {},
}


def legal_events(phase: Phase) -> frozenset[type]:
    """The event types `phase` takes; every other one is an IllegalMove."""
    return frozenset(_TABLE[phase])


def step(call: ProofCall, event: Event) -> Result:
    """The one transition function: the next state and the actions for the worker."""
    move = _TABLE[call.phase].get(type(event))
    if move is None:
        raise IllegalMove(FLOW, call.phase, event)
    return move(call, event)


def begin(message: ProofMessage) -> Result:
    """The first state and actions once the called party has answered."""
    call = ProofCall(phase=Phase.FIRST, message=message)
    return call, [Play(tuple(first_clips(message)), message.language)]


class ProofFlow:
    """`begin` and `step` holding the state, for the worker: ``actions = flow.feed(event)``."""

    def __init__(self, message: ProofMessage):
        self.call, self.started = begin(message)

    def start(self) -> list[Action]:
        actions, self.started = self.started, []
        return actions

    def feed(self, event: Event) -> list[Action]:
        self.call, actions = step(self.call, event)
        return actions

    @property
    def done(self) -> bool:
        return self.call.done

    @property
    def outcome(self) -> str | None:
        return self.call.outcome
