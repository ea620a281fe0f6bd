"""What flows and the media worker say to each other: events in, actions out, and the errors.

The worker (switch/worker/call.py) feeds each flow the events of its leg and executes the actions it
returns, in order. Its side of the contract, which keeps the flows free of races:

* `Play` plays its clips one after another and reports one `PromptDone` when the last ends.
  `StopPlay` stops the current play; no `PromptDone` follows for it. With ``barge_in`` the
  flow stops the play itself (it answers the first key with a `StopPlay`).
* `Collect` arms the digit timer with ``first_digit_timeout``; each key delivered while the
  timer is armed re-arms it with ``inter_digit_timeout``; it fires once as `Timeout` and is
  disarmed, or is disarmed by `StopCollect`. ``max_digits`` and ``terminators`` say when the flow
  will stop on its own (it sends `StopCollect` then); the flow, not the worker, counts digits.
* Every key pressed on the leg is delivered as `Digit`, whatever the flow is doing; the flow drops
  the keys it does not need (while waiting for the core, during a prompt without barge-in).
* `Hangup` is delivered when the leg hangs up; the flow ends and returns no media actions. The
  worker tears down what it started (an outbound leg being dialled, a pending core request).
* An event the current phase cannot take raises `IllegalMove`: a worker bug, never a caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ivr import catalog
from ivr.errors import IvrError
from ivr.flows import machine
from ivr.settings import KEYS

__all__ = [
    "Event",
    "Action",
    "IllegalMove",
    "BadEvent",
    "Digit",
    "Timeout",
    "PromptDone",
    "Hangup",
    "PinChecked",
    "Authorized",
    "CoreFailed",
    "PartyResult",
    "AcceptGranted",
    "AcceptFailed",
    "Play",
    "StopPlay",
    "Collect",
    "StopCollect",
    "CheckPin",
    "Authorize",
    "Dial",
    "Bridge",
    "Accept",
    "Refuse",
    "Block",
    "HangUp",
    "PARTY_RESULTS",
    "REFUSE_REASONS",
    "ACCEPT_FAILURES",
    "CORE_FAILURES",
]


class IllegalMove(machine.IllegalMove):
    """A flow was fed an event its current phase cannot take (the worker's mistake)."""

    def __init__(self, flow: str, phase: object, event: object):
        super().__init__(
            f"{flow} flow",
            phase,
            event,
            f"{flow} flow in phase {getattr(phase, 'name', phase)} cannot take {event!r}",
        )
        self.flow, self.phase = flow, phase


class BadEvent(IvrError, ValueError):
    """An event built with a value outside its domain; the message names the field."""


# What the worker reports back to the inmate's leg about the outbound call.
PARTY_RESULTS = (
    "accepted",
    "refused",
    "blocked",
    "no_response",
    "hung_up",  # from the called-party flow
    "no_answer",
    "busy",
    "failed",  # from the trunk
    "insufficient_funds",
    "system_unavailable",  # the core refused the accept
)
REFUSE_REASONS = ("refused", "no_response", "hung_up")
ACCEPT_FAILURES = ("insufficient_funds", "system_unavailable", "failed")
CORE_FAILURES = ("kiosk_unknown", "system_unavailable")


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadEvent(f"{name} must be one of {allowed}, got {value!r}")


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Digit:
    """A key pressed on this leg (RFC 2833 or SIP INFO)."""

    key: str

    def __post_init__(self) -> None:
        if not (isinstance(self.key, str) and len(self.key) == 1 and self.key in KEYS):
            raise BadEvent(f"Digit.key must be one of 0-9 * #, got {self.key!r}")


@dataclass(frozen=True)
class Timeout:
    """The digit timer armed by the last Collect fired."""


@dataclass(frozen=True)
class PromptDone:
    """The last Play finished (not sent for a play stopped by StopPlay)."""


@dataclass(frozen=True)
class Hangup:
    """This leg hung up."""


@dataclass(frozen=True)
class PinChecked:
    """The core's answer to CheckPin (switch.wire.protocol.CheckPin)."""

    ok: bool
    attempts_left: int = 0
    locked: bool = False
    inmate_id: str | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        if self.ok and not self.inmate_id:
            raise BadEvent("PinChecked.inmate_id is required when ok")
        if self.attempts_left < 0:
            raise BadEvent(f"PinChecked.attempts_left must be >= 0, got {self.attempts_left}")


@dataclass(frozen=True)
class Authorized:
    """The core's answer to Authorize: allowed (with what the inmate's leg needs), or why not."""

    allow: bool
    reason: str | None = None
    e164: str | None = None
    max_seconds: int | None = None
    record: bool = True
    privileged: bool = False
    language: str | None = None  # the inmate's enrolled language

    def __post_init__(self) -> None:
        if self.allow:
            if not self.e164:
                raise BadEvent("Authorized.e164 is required when allowed")
            if self.max_seconds is not None and self.max_seconds < 0:
                raise BadEvent(f"Authorized.max_seconds must be >= 0, got {self.max_seconds}")
        else:
            _one_of("Authorized.reason", self.reason, catalog.DENY_REASONS)


@dataclass(frozen=True)
class CoreFailed:
    """A core request failed instead of answering (KIOSK_UNKNOWN, CORE_UNAVAILABLE, a timeout)."""

    reason: str

    def __post_init__(self) -> None:
        _one_of("CoreFailed.reason", self.reason, CORE_FAILURES)


@dataclass(frozen=True)
class PartyResult:
    """To the inmate's leg: what became of the outbound call."""

    result: str

    def __post_init__(self) -> None:
        _one_of("PartyResult.result", self.result, PARTY_RESULTS)


@dataclass(frozen=True)
class AcceptGranted:
    """The core's answer to Accept: talk time granted (switch.wire.protocol.Accept)."""

    grant_until: int
    last: bool = False


@dataclass(frozen=True)
class AcceptFailed:
    """The core refused the Accept (INSUFFICIENT_FUNDS, CORE_UNAVAILABLE, CALL_ALREADY_ENDED)."""

    reason: str

    def __post_init__(self) -> None:
        _one_of("AcceptFailed.reason", self.reason, ACCEPT_FAILURES)


Event = (
    Digit
    | Timeout
    | PromptDone
    | Hangup
    | PinChecked
    | Authorized
    | CoreFailed
    | PartyResult
    | AcceptGranted
    | AcceptFailed
)


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    """Play these clips in order on this leg: prompt ids in `language`, or WAV paths."""

    clips: tuple[catalog.Clip, ...]
    language: str
    barge_in: bool = False

    def files(self) -> list[Path]:
        """The WAV files to play, in order."""
        return [catalog.resolve(c, self.language) for c in self.clips]

    def transcript(self) -> str:
        """The words, for logs and tests (a WAV path is shown as its file name)."""
        return " ".join(
            f"<{c.parent.name}/{c.name}>" if isinstance(c, Path) else catalog.text(c, self.language)
            for c in self.clips
        )


@dataclass(frozen=True)
class StopPlay:
    """Stop the current play at once (a key barged in, or the call moved on)."""


@dataclass(frozen=True)
class Collect:
    """Start the digit timer (see the module docstring for the rule)."""

    max_digits: int
    terminators: tuple[str, ...]
    first_digit_timeout: float
    inter_digit_timeout: float


@dataclass(frozen=True)
class StopCollect:
    """Disarm the digit timer: the flow has what it needs."""


@dataclass(frozen=True)
class CheckPin:
    """Ask the core whether this PIN identifies an inmate (answer: PinChecked or CoreFailed)."""

    pin: str = field(repr=False)  # a secret: kept out of logs that print actions


@dataclass(frozen=True)
class Authorize:
    """Ask the core to authorize a call to this E.164 number (answer: Authorized or CoreFailed)."""

    number: str
    inmate_id: str


@dataclass(frozen=True)
class Dial:
    """Place the outbound call (the trunks come from the worker's copy of the authorization)."""

    e164: str


@dataclass(frozen=True)
class Bridge:
    """Connect the inmate's leg and the called party's leg; the IVR is done with both."""


@dataclass(frozen=True)
class Accept:
    """Tell the core the called party accepted (answer: AcceptGranted or AcceptFailed)."""


@dataclass(frozen=True)
class Refuse:
    """The called party did not accept: refused, did not respond, or hung up."""

    reason: str


@dataclass(frozen=True)
class Block:
    """The called party asked to block calls (switch.wire.protocol.Block with this scope)."""

    scope: str


@dataclass(frozen=True)
class HangUp:
    """Hang up this leg; `reason` is a deny reason or the call's disposition, for the record."""

    reason: str


Action = (
    Play
    | StopPlay
    | Collect
    | StopCollect
    | CheckPin
    | Authorize
    | Dial
    | Bridge
    | Accept
    | Refuse
    | Block
    | HangUp
)
