"""The called party's leg: who is calling and what it costs, then accept, refuse, block or repeat.

A pure state machine like `ivr.flows.inmate`: `begin(announcement)` gives the first state and
actions, `step(call, event)` the next, `IllegalMove` for an event the phase cannot take::

    PRESENTING (the announcement plays; a key barges in) -> CHOOSING (waiting for the key)
      -> ACCEPTING (Accept sent, waiting for the core) -> CONNECTED (Bridge)
      -> CLOSING (goodbye, "blocked at your request", "cannot be completed") -> ENDED
    a hangup -> ENDED

The announcement, composed from parts::

    [Para español, oprima asterisco.]  You have a prepaid call from <name>, an inmate at
    <facility>. This call is from a correctional facility and will be recorded. It costs
    <price> per minute. To accept, press 1. To refuse, press 2. To block all calls from this
    facility, press 9. To repeat, press 0.

* <name> is the inmate's recorded name (a WAV made at enrollment) or a generated one
  (`ivr.names`); without either the sentence reads "a prepaid call from an inmate at ...".
  <facility> is a generated facility-name WAV, else "a correctional facility".
* Privileged calls say they will not be recorded; a facility that does not record says so.
* The price is `ivr.say.say_money` of the exact per-minute rate; a free call says so instead.
* Keys come from `IvrSettings` (accept, refuse, block, repeat, language switch); a disabled key is
  not announced. The block key blocks by `block_scope` (the facility, or this inmate).

Language: the called party hears the language the inmate chose (the person calling most likely
shares it). Because that guess can be wrong, the announcement opens with one line in the other
language ("Para español, oprima asterisco" / "For English, press star"); the switch key replays
everything in that language. The key is ``*`` by default so it never collides with the choices;
an empty `language_switch_key` turns the offer off.

No key after the announcement, a wrong key, or the repeat key replays it ("That is not a valid
choice" and the menu, for a wrong key); after `repeat_max` replays the call is refused as
``no_response``. Passive acceptance (per call, e.g. an attorney's number): the menu says that
staying on the line connects the call, and once the announcement has played with no refusal and
`passive_grace_seconds` pass without a key, the flow accepts, as it does when replays run out.

`CalledParty.outcome` is what the worker reports to the inmate's leg as `PartyResult` once the
flow ends: accepted, refused, blocked, no_response, hung_up, or the core's reason for refusing
the accept. `Accept` is emitted at most once and never after `Refuse` or `Block`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ivr import catalog, say
from ivr.flows.machine import Flow
from ivr.flows.moves import (
    Accept,
    AcceptFailed,
    AcceptGranted,
    Action,
    BadEvent,
    Block,
    Bridge,
    Collect,
    Digit,
    Event,
    HangUp,
    Hangup,
    IllegalMove,
    Play,
    PromptDone,
    Refuse,
    StopCollect,
    StopPlay,
    Timeout,
)
from ivr.settings import IvrSettings

__all__ = [
    "Phase",
    "TERMINAL",
    "Announcement",
    "CalledParty",
    "CalledPartyFlow",
    "begin",
    "step",
    "announcement_clips",
    "menu_clips",
    "legal_events",
]

FLOW = "called party"


class Phase(enum.Enum):
    PRESENTING = "presenting"  # the announcement (or the menu again) plays; a key barges in
    CHOOSING = "choosing"  # waiting for the choice
    ACCEPTING = "accepting"  # Accept sent, waiting for the core's grant
    CLOSING = "closing"  # a last prompt plays; then hang up
    CONNECTED = "connected"  # terminal: bridged
    ENDED = "ended"  # terminal: hung up


TERMINAL = frozenset({Phase.CONNECTED, Phase.ENDED})


@dataclass(frozen=True)
class Announcement:
    """What the called party is told about this call (from the core's Authorize answer)."""

    language: str
    rate_micros_per_minute: int
    inmate_name: catalog.Clip | None = None  # recorded at enrollment, or from ivr.names
    facility_name: catalog.Clip | None = None  # from ivr.names (a WAV, or a fallback id)
    record: bool = True
    privileged: bool = False
    passive_accept: bool = False

    def __post_init__(self) -> None:
        catalog.check_language(self.language)
        say.say_money(self.rate_micros_per_minute, self.language)  # NotSayable names the value
        for name in ("inmate_name", "facility_name"):
            value = getattr(self, name)
            if isinstance(value, str):
                catalog.path(value, self.language)  # UnknownPrompt for a wrong id
            elif value is not None and not isinstance(value, Path):
                raise BadEvent(
                    f"Announcement.{name} must be a Path, a prompt id or None, got {value!r}"
                )


@dataclass(frozen=True)
class CalledParty:
    """The whole state of the called party's leg."""

    phase: Phase
    language: str
    replays: int = 0  # announcement or menu replays so far
    outcome: str | None = None  # set once decided; see the module docstring
    end_reason: str | None = None
    announcement: Announcement = field(repr=False, compare=False, default=None)  # type: ignore
    settings: IvrSettings = field(default_factory=IvrSettings, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL


Result = tuple[CalledParty, list[Action]]


def _other_language(s: IvrSettings, lang: str) -> str | None:
    if not s.language_switch_key or len(s.languages) < 2:
        return None
    if lang not in s.languages:
        return s.languages[0]
    return s.languages[(s.languages.index(lang) + 1) % len(s.languages)]


def menu_clips(a: Announcement, s: IvrSettings, lang: str) -> list[catalog.Clip]:
    """The choices, each followed by its key."""
    clips: list[catalog.Clip] = []
    if not a.passive_accept:
        clips += ["cp_menu_accept", *say.say_key(s.accept_key, lang)]
    clips += ["cp_menu_refuse", *say.say_key(s.refuse_key, lang)]
    if s.block_key:
        clips += [f"cp_menu_block_{s.block_scope}", *say.say_key(s.block_key, lang)]
    clips += ["cp_menu_repeat", *say.say_key(s.repeat_key, lang)]
    if a.passive_accept:
        clips.append("cp_menu_passive")
    return clips


def announcement_clips(a: Announcement, s: IvrSettings, lang: str) -> list[catalog.Clip]:
    """The whole announcement in `lang`, menu included (see the module docstring)."""
    clips: list[catalog.Clip] = []
    other = _other_language(s, lang)
    if other is not None:  # one line in the other language, in its own voice
        clips += [
            catalog.path(c, other)
            for c in ["language_choice", *say.say_key(s.language_switch_key, other)]
        ]
    clips.append("cp_intro")
    if a.inmate_name is not None:
        clips.append(a.inmate_name)
    clips += ["cp_an_inmate_at", a.facility_name or "cp_a_correctional_facility"]
    if a.privileged:
        clips.append("cp_notice_privileged")
    else:
        clips.append("cp_notice_recorded" if a.record else "cp_notice_unrecorded")
    if a.rate_micros_per_minute == 0:
        clips.append("cp_price_free")
    else:
        clips += ["cp_price_intro", *say.say_money(a.rate_micros_per_minute, lang), "cp_per_minute"]
    return clips + menu_clips(a, s, lang)


# --- transitions -------------------------------------------------------------------------------


def _present(call: CalledParty, clips: list[catalog.Clip]) -> Result:
    call = replace(call, phase=Phase.PRESENTING)
    return call, [Play(tuple(clips), call.language, barge_in=True)]


def _accept(call: CalledParty) -> Result:
    return replace(call, phase=Phase.ACCEPTING), [Accept()]


def _close(call: CalledParty, outcome: str, first: Action | None, prompt: str) -> Result:
    call = replace(call, phase=Phase.CLOSING, outcome=outcome, end_reason=outcome)
    play = Play((prompt,), call.language, barge_in=False)
    return call, [first, play] if first is not None else [play]


def _replay(call: CalledParty, clips: Callable[[CalledParty], list[catalog.Clip]]) -> Result:
    call = replace(call, replays=call.replays + 1)
    if call.replays > call.settings.repeat_max:
        if call.announcement.passive_accept:  # heard it, never refused: connect
            return _accept(call)
        return _close(call, "no_response", Refuse("no_response"), "cp_goodbye")
    return _present(call, clips(call))


def _full(call: CalledParty) -> list[catalog.Clip]:
    return announcement_clips(call.announcement, call.settings, call.language)


def _invalid(call: CalledParty) -> list[catalog.Clip]:
    return ["invalid_choice", *menu_clips(call.announcement, call.settings, call.language)]


def _choose(call: CalledParty, key: str) -> Result:
    s = call.settings
    if key == s.accept_key:
        return _accept(call)
    if key == s.refuse_key:
        return _close(call, "refused", Refuse("refused"), "cp_goodbye")
    if s.block_key and key == s.block_key:
        return _close(call, "blocked", Block(s.block_scope), "cp_blocked_confirm")
    if key == s.repeat_key:
        return _replay(call, _full)
    other = _other_language(s, call.language)
    if other is not None and key == s.language_switch_key:
        return _replay(replace(call, language=other), _full)
    return _replay(call, _invalid)


def _presenting_digit(call: CalledParty, e: Digit) -> Result:
    call, actions = _choose(call, e.key)
    return call, [StopPlay(), *actions]


def _presenting_done(call: CalledParty, e: PromptDone) -> Result:
    s = call.settings
    wait = s.passive_grace_seconds if call.announcement.passive_accept else s.choice_timeout_seconds
    return replace(call, phase=Phase.CHOOSING), [Collect(1, (), wait, s.digit_timeout_seconds)]


def _choosing_digit(call: CalledParty, e: Digit) -> Result:
    call, actions = _choose(call, e.key)
    return call, [StopCollect(), *actions]


def _choosing_timeout(call: CalledParty, e: Timeout) -> Result:
    if call.announcement.passive_accept:
        return _accept(call)
    return _replay(call, _full)


def _granted(call: CalledParty, e: AcceptGranted) -> Result:
    return replace(call, phase=Phase.CONNECTED, outcome="accepted"), [Bridge()]


def _accept_failed(call: CalledParty, e: AcceptFailed) -> Result:
    return _close(call, e.reason, None, "cp_cannot_complete")


def _closing_done(call: CalledParty, e: PromptDone) -> Result:
    return replace(call, phase=Phase.ENDED), [HangUp(call.end_reason or "ended")]


def _ignore(call: CalledParty, e: Event) -> Result:
    return call, []


def _hangup_undecided(call: CalledParty, e: Hangup) -> Result:
    call = replace(call, phase=Phase.ENDED, outcome="hung_up", end_reason="hung_up")
    return call, [Refuse("hung_up")]


def _hangup(call: CalledParty, e: Hangup) -> Result:
    # after Accept the core's answer no longer matters to this leg; the worker ends the call
    outcome = call.outcome or "hung_up"
    return replace(
        call, phase=Phase.ENDED, outcome=outcome, end_reason=call.end_reason or "hung_up"
    ), []


P = Phase
_TABLE: dict[Phase, dict[type, Callable[[CalledParty, Any], Result]]] = {
    P.PRESENTING: {
        Digit: _presenting_digit,
        PromptDone: _presenting_done,
        Hangup: _hangup_undecided,
    },
    P.CHOOSING: {Digit: _choosing_digit, Timeout: _choosing_timeout, Hangup: _hangup_undecided},
    P.ACCEPTING: {
        Digit: _ignore,
        AcceptGranted: _granted,
        AcceptFailed: _accept_failed,
        Hangup: _hangup,
    },
    P.CLOSING: {Digit: _ignore, PromptDone: _closing_done, Hangup: _hangup},
    P.CONNECTED: {},
    P.ENDED: {},
}


def legal_events(phase: Phase) -> frozenset[type]:
    """The event types `phase` takes; every other one is an IllegalMove."""
    return frozenset(_TABLE[phase])


def step(call: CalledParty, event: Event) -> Result:
    """The one transition function: the next state and the actions for the worker."""
    move = _TABLE[call.phase].get(type(event))
    if move is None:
        raise IllegalMove(FLOW, call.phase, event)
    return move(call, event)


def begin(announcement: Announcement, settings: IvrSettings | None = None) -> Result:
    """The first state and actions once the called party has answered."""
    s = settings or IvrSettings()
    call = CalledParty(
        phase=Phase.PRESENTING,
        language=announcement.language,
        announcement=announcement,
        settings=s,
    )
    return _present(call, _full(call))


class CalledPartyFlow(Flow[CalledParty, Event, Action]):
    """The called party's flow held for the worker: ``actions = flow.feed(event)``."""

    def __init__(self, announcement: Announcement, settings: IvrSettings | None = None):
        super().__init__(begin(announcement, settings), step)
