"""The inmate's leg: language, PIN, number, the core's answers, then "please hold" or the reason.

A pure state machine: `begin` gives the first state and actions, `step(call, event)` the next
state and actions, refusing an event the phase cannot take with `IllegalMove`. The phases, in the
order a call goes through them::

    LANGUAGE_MENU -> LANGUAGE_CHOICE -> PIN_PROMPT -> PIN_ENTRY -> PIN_CHECK
      -> NUMBER_PROMPT -> NUMBER_ENTRY -> AUTHORIZING -> HOLDING -> AWAITING_PARTY -> CONNECTED
    any of them -> CLOSING (a prompt saying why) -> ENDED;  a hangup -> ENDED

* Language: the menu plays each language's line in that language ("For English, press 1. Para
  español, oprima 2"); a key barges in. No key: the default language. It is skipped when the kiosk
  presets the language or the menu is turned off; then the language the core returns with the
  inmate's PIN (their enrolled preference) replaces the default.
* PIN: digits then # (or a pause after the digits, or `pin_length` digits when fixed). ``*``
  starts the entry over (the prompt plays again; counted like a replay, so it cannot go on
  forever). A badly shaped PIN counts as a wrong one without asking the core. The
  core answers with the attempts left and whether it locked the PIN; after `pin_attempts_max`
  wrong PINs in one call, or when the core has no attempts left, the call ends.
* Number: # ends it, or a pause after digits, or it ends by itself once it is a complete North
  American number (10 digits, or 1 + 10). Shapes taken: NANP ``NXX NXX XXXX`` (optionally after
  1) and international ``011`` + 7..15 digits. The core receives E.164 (``+1...`` / ``+...``).
* No key at a prompt (or a lone #) replays it ("we did not receive your entry") up to
  `repeat_max` times, then the call ends with reason ``no_input``.
* A trusted kiosk may preset the language, the PIN (or the inmate id itself) and the number: the
  flow then goes straight to the core's answers (no language menu: the inmate's enrolled language
  from the core is used), and a rejected preset ends the call with its reason (a preset is not
  asked again).
* Authorized: the inmate hears the privileged or recorded notice, how long the call may last, and
  "please hold" while the number is dialled (`Dial` goes out with the prompt). The called party's
  decision arrives as `PartyResult`: accepted -> CONNECTED (the called-party flow bridges), any
  other result -> its prompt, then `HangUp`. `Dial` is only ever emitted after an allowed
  `Authorized`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ivr import catalog, say
from ivr.errors import IvrError
from ivr.flows.machine import Flow
from ivr.flows.moves import (
    Action,
    Authorize,
    Authorized,
    CheckPin,
    Collect,
    CoreFailed,
    Dial,
    Digit,
    Event,
    HangUp,
    Hangup,
    IllegalMove,
    PartyResult,
    PinChecked,
    Play,
    PromptDone,
    StopCollect,
    StopPlay,
    Timeout,
)
from ivr.settings import IvrSettings

__all__ = [
    "Phase",
    "TERMINAL",
    "InmateCall",
    "InmateFlow",
    "BadPreset",
    "begin",
    "step",
    "number_to_e164",
    "number_is_complete",
    "legal_events",
    "PARTY_PROMPTS",
]

FLOW = "inmate"


class Phase(enum.Enum):
    LANGUAGE_MENU = "language_menu"  # the language menu plays; a key barges in
    LANGUAGE_CHOICE = "language_choice"  # waiting for the language key
    PIN_PROMPT = "pin_prompt"  # "please enter your PIN" plays; a key barges in
    PIN_ENTRY = "pin_entry"  # collecting PIN digits
    PIN_CHECK = "pin_check"  # waiting for the core's PinChecked
    NUMBER_PROMPT = "number_prompt"  # "please enter the number" plays; a key barges in
    NUMBER_ENTRY = "number_entry"  # collecting the number
    AUTHORIZING = "authorizing"  # waiting for the core's Authorized
    HOLDING = "holding"  # notices and "please hold" play; the number is dialled
    AWAITING_PARTY = "awaiting_party"  # waiting for the called party's decision
    CLOSING = "closing"  # the reason plays; then hang up
    CONNECTED = "connected"  # terminal: the legs are bridged
    ENDED = "ended"  # terminal: hung up


TERMINAL = frozenset({Phase.CONNECTED, Phase.ENDED})

# What the inmate hears for each outcome of the outbound call.
PARTY_PROMPTS = {
    "refused": "party_refused",
    "blocked": "party_blocked",
    "no_response": "party_no_answer",
    "hung_up": "party_hung_up",
    "no_answer": "party_no_answer",
    "busy": "party_busy",
    "failed": "call_failed",
    "insufficient_funds": "deny_insufficient_funds",
    "system_unavailable": "deny_system_unavailable",
}


class BadPreset(IvrError, ValueError):
    """A kiosk preset of the wrong type or an unknown language; the message names it."""


@dataclass(frozen=True)
class InmateCall:
    """The whole state of the inmate's leg: the phase and what the flow remembers."""

    phase: Phase
    language: str
    language_chosen: bool = False  # chosen by the inmate or preset: the PIN's language is ignored
    digits: str = field(default="", repr=False)  # the entry in progress (a PIN is a secret)
    pin_failures: int = 0
    number_failures: int = 0
    replays: int = 0  # prompts replayed for lack of a key or a wrong key, this stage
    inmate_id: str | None = None
    pin_preset: bool = False
    number_preset: str | None = None
    e164: str | None = None
    authorized: bool = False  # the core allowed the call (Dial may go out)
    end_reason: str | None = None
    settings: IvrSettings = field(default_factory=IvrSettings, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL


Result = tuple[InmateCall, list[Action]]


# --- helpers -----------------------------------------------------------------------------------


def _play(call: InmateCall, clips: Sequence[catalog.Clip], barge_in: bool = True) -> Play:
    return Play(tuple(clips), call.language, barge_in)


def _collect(s: IvrSettings, max_digits: int, first_digit_timeout: float) -> Collect:
    return Collect(max_digits, ("#",), first_digit_timeout, s.digit_timeout_seconds)


def _close(call: InmateCall, reason: str, prompt: str, before: Sequence[Action] = ()) -> Result:
    call = replace(call, phase=Phase.CLOSING, end_reason=reason, digits="")
    return call, [*before, _play(call, [prompt, "goodbye"], barge_in=False)]


def _language_menu(call: InmateCall) -> list[catalog.Clip]:
    s = call.settings
    clips: list[catalog.Clip] = []
    for lang, key in zip(
        s.languages, s.language_keys, strict=False
    ):  # each line in its own language
        clips += [catalog.path(c, lang) for c in ["language_choice", *say.say_key(key, lang)]]
    return clips


def number_to_e164(digits: str, s: IvrSettings) -> str | None:
    """A keyed number to E.164, or None when it has no dialable shape."""
    if not digits.isdigit():
        return None
    if digits.startswith(s.international_prefix):
        rest = digits[len(s.international_prefix) :]
        ok = s.international_digits_min <= len(rest) <= 15 and rest[0] != "0"
        return "+" + rest if ok else None
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789":
        return "+1" + digits
    return None


def number_is_complete(digits: str, s: IvrSettings) -> bool:
    """A North American number needs no #: it is complete at 10 digits (11 after a 1)."""
    if len(digits) >= s.number_digits_max:
        return True
    if digits.startswith(s.international_prefix) or not digits:
        return False
    return (digits[0] == "1" and len(digits) == 11) or (digits[0] != "1" and len(digits) == 10)


# --- stages ------------------------------------------------------------------------------------


def _ask_pin(call: InmateCall, lead: Sequence[str] = ()) -> Result:
    call = replace(call, phase=Phase.PIN_PROMPT, digits="")
    return call, [_play(call, [*lead, "pin_enter"])]


def _ask_number(call: InmateCall, lead: Sequence[str] = ()) -> Result:
    call = replace(call, phase=Phase.NUMBER_PROMPT, digits="")
    return call, [_play(call, [*lead, "number_enter"])]


def _after_language(call: InmateCall) -> Result:
    return _ask_pin(replace(call, replays=0))


def _after_pin(call: InmateCall) -> Result:
    call = replace(call, replays=0)
    if call.number_preset is not None:
        return _authorize(call, call.number_preset)
    return _ask_number(call)


def _authorize(call: InmateCall, digits: str) -> Result:
    e164 = number_to_e164(digits, call.settings)
    if e164 is None:
        return _number_failed(call)
    # Every way here passes the PIN (PinChecked names the inmate) or a preset inmate id.
    inmate_id = call.inmate_id
    if inmate_id is None:
        raise IllegalMove(FLOW, call.phase, "Authorize without an inmate")
    call = replace(call, phase=Phase.AUTHORIZING, e164=e164, digits="")
    return call, [Authorize(e164, inmate_id)]


def _number_failed(call: InmateCall) -> Result:
    call = replace(call, number_failures=call.number_failures + 1, digits="")
    if call.number_preset is not None or call.number_failures >= call.settings.number_attempts_max:
        return _close(call, "invalid_number", "deny_invalid_number")
    return _ask_number(call, ["number_invalid_retry"])


def _check_pin(call: InmateCall, pin: str) -> Result:
    s = call.settings
    if not (
        pin.isdigit()
        and s.pin_length_min <= len(pin) <= s.pin_length_max
        and (not s.pin_length or len(pin) == s.pin_length)
    ):
        return _pin_failed(call, attempts_left=None)  # cannot be right: do not ask the core
    call = replace(call, phase=Phase.PIN_CHECK, digits="")
    return call, [CheckPin(pin)]


def _pin_failed(call: InmateCall, attempts_left: int | None) -> Result:
    call = replace(call, pin_failures=call.pin_failures + 1, digits="")
    if call.pin_preset or attempts_left == 0 or call.pin_failures >= call.settings.pin_attempts_max:
        return _close(call, "pin_invalid", "deny_pin_invalid")
    return _ask_pin(call, ["pin_invalid_retry"])


def _no_input(
    call: InmateCall,
    again: Callable[[InmateCall, list[str]], Result],
    lead: tuple[str, ...] = ("no_input",),
) -> Result:
    """Nothing usable keyed (silence, a lone #, or * to start over): the prompt again, boundedly."""
    call = replace(call, replays=call.replays + 1, digits="")
    if call.replays > call.settings.repeat_max:
        call = replace(call, phase=Phase.CLOSING, end_reason="no_input")
        return call, [_play(call, ["no_input", "goodbye"], barge_in=False)]
    return again(call, list(lead))


# --- transitions, one per (phase, event type) ----------------------------------------------------


def _choose_language(call: InmateCall, key: str) -> Result:
    s = call.settings
    if key in s.language_keys:
        lang = s.languages[s.language_keys.index(key)]
        return _after_language(replace(call, language=lang, language_chosen=True))
    call = replace(call, replays=call.replays + 1)
    if call.replays > s.repeat_max:  # keys that mean nothing: carry on in the default
        return _after_language(call)
    call = replace(call, phase=Phase.LANGUAGE_MENU)
    return call, [_play(call, ["invalid_choice", *_language_menu(call)])]


def _language_menu_digit(call: InmateCall, e: Digit) -> Result:
    call, actions = _choose_language(call, e.key)
    return call, [StopPlay(), *actions]


def _language_menu_done(call: InmateCall, e: PromptDone) -> Result:
    s = call.settings
    return replace(call, phase=Phase.LANGUAGE_CHOICE), [
        Collect(1, (), s.first_digit_timeout_seconds, s.digit_timeout_seconds)
    ]


def _language_choice_digit(call: InmateCall, e: Digit) -> Result:
    call, actions = _choose_language(call, e.key)
    return call, [StopCollect(), *actions]


def _language_choice_timeout(call: InmateCall, e: Timeout) -> Result:
    return _after_language(call)  # the default language, already set


def _pin_max(s: IvrSettings) -> int:
    return s.pin_length or s.pin_length_max


def _pin_prompt_digit(call: InmateCall, e: Digit) -> Result:
    s = call.settings
    call = replace(call, phase=Phase.PIN_ENTRY, digits="")
    call, actions = _pin_entry_digit(call, e)
    return call, [StopPlay(), _collect(s, _pin_max(s), s.digit_timeout_seconds), *actions]


def _pin_prompt_done(call: InmateCall, e: PromptDone) -> Result:
    s = call.settings
    return replace(call, phase=Phase.PIN_ENTRY, digits=""), [
        _collect(s, _pin_max(s), s.first_digit_timeout_seconds)
    ]


def _pin_entry_digit(call: InmateCall, e: Digit) -> Result:
    s = call.settings
    if e.key == "*":  # start over: the prompt again (counts as a replay)
        call, actions = _no_input(call, _ask_pin, lead=())
        return call, [StopCollect(), *actions]
    if e.key == "#":
        if not call.digits:
            call, actions = _no_input(call, _ask_pin)
        else:
            call, actions = _check_pin(call, call.digits)
        return call, [StopCollect(), *actions]
    call = replace(call, digits=call.digits + e.key)
    if len(call.digits) >= _pin_max(s):
        call, actions = _check_pin(call, call.digits)
        return call, [StopCollect(), *actions]
    return call, []


def _pin_entry_timeout(call: InmateCall, e: Timeout) -> Result:
    if not call.digits:
        return _no_input(call, _ask_pin)
    return _check_pin(call, call.digits)  # a pause after the digits ends the entry


def _pin_checked(call: InmateCall, e: PinChecked) -> Result:
    if e.ok:
        s = call.settings
        call = replace(call, inmate_id=e.inmate_id)
        if not call.language_chosen and e.language in s.languages:
            call = replace(call, language=e.language)
        return _after_pin(call)
    if e.locked:
        return _close(call, "pin_locked", "deny_pin_locked")
    return _pin_failed(call, e.attempts_left)


def _core_failed(call: InmateCall, e: CoreFailed) -> Result:
    return _close(call, e.reason, f"deny_{e.reason}")


def _number_prompt_digit(call: InmateCall, e: Digit) -> Result:
    s = call.settings
    call = replace(call, phase=Phase.NUMBER_ENTRY, digits="")
    call, actions = _number_entry_digit(call, e)
    return call, [StopPlay(), _collect(s, s.number_digits_max, s.digit_timeout_seconds), *actions]


def _number_prompt_done(call: InmateCall, e: PromptDone) -> Result:
    s = call.settings
    return replace(call, phase=Phase.NUMBER_ENTRY, digits=""), [
        _collect(s, s.number_digits_max, s.first_digit_timeout_seconds)
    ]


def _number_entry_digit(call: InmateCall, e: Digit) -> Result:
    if e.key == "*":
        call, actions = _no_input(call, _ask_number, lead=())
        return call, [StopCollect(), *actions]
    if e.key == "#":
        if not call.digits:
            call, actions = _no_input(call, _ask_number)
        else:
            call, actions = _authorize(call, call.digits)
        return call, [StopCollect(), *actions]
    call = replace(call, digits=call.digits + e.key)
    if number_is_complete(call.digits, call.settings):
        call, actions = _authorize(call, call.digits)
        return call, [StopCollect(), *actions]
    return call, []


def _number_entry_timeout(call: InmateCall, e: Timeout) -> Result:
    if not call.digits:
        return _no_input(call, _ask_number)
    return _authorize(call, call.digits)


def _authorized(call: InmateCall, e: Authorized) -> Result:
    if not call.language_chosen and e.language in call.settings.languages:
        call = replace(call, language=e.language)
    if not e.allow or e.e164 is None:  # Authorized refuses an allow without its number
        reason = e.reason or "system_unavailable"
        return _close(call, reason, f"deny_{reason}")
    lang = call.language
    clips: list[catalog.Clip] = []
    if e.privileged:
        clips.append("notice_privileged_inmate")
    elif e.record:
        clips.append("notice_recorded_inmate")
    if (
        call.settings.announce_time_limit
        and e.max_seconds
        and e.max_seconds <= say.DURATION_SECONDS_MAX
    ):
        clips += ["time_limit_intro", *say.say_duration(e.max_seconds, lang)]
    clips.append("please_hold")
    call = replace(call, phase=Phase.HOLDING, authorized=True, e164=e.e164)
    return call, [_play(call, clips, barge_in=False), Dial(e.e164)]


def _party(call: InmateCall, e: PartyResult, before: list[Action]) -> Result:
    if e.result == "accepted":
        return replace(call, phase=Phase.CONNECTED, end_reason=None), before
    return _close(call, e.result, PARTY_PROMPTS[e.result], before)


def _holding_done(call: InmateCall, e: PromptDone) -> Result:
    return replace(call, phase=Phase.AWAITING_PARTY), []


def _holding_party(call: InmateCall, e: PartyResult) -> Result:
    return _party(call, e, [StopPlay()])


def _awaiting_party(call: InmateCall, e: PartyResult) -> Result:
    return _party(call, e, [])


def _closing_done(call: InmateCall, e: PromptDone) -> Result:
    return replace(call, phase=Phase.ENDED), [HangUp(call.end_reason or "ended")]


def _ignore(call: InmateCall, e: Event) -> Result:
    return call, []  # keys while the flow waits are dropped


def _hangup(call: InmateCall, e: Hangup) -> Result:
    return replace(
        call, phase=Phase.ENDED, end_reason=call.end_reason or "abandoned", digits=""
    ), []


P = Phase
_TABLE: dict[Phase, dict[type, Callable[[InmateCall, Any], Result]]] = {
    P.LANGUAGE_MENU: {Digit: _language_menu_digit, PromptDone: _language_menu_done},
    P.LANGUAGE_CHOICE: {Digit: _language_choice_digit, Timeout: _language_choice_timeout},
    P.PIN_PROMPT: {Digit: _pin_prompt_digit, PromptDone: _pin_prompt_done},
    P.PIN_ENTRY: {Digit: _pin_entry_digit, Timeout: _pin_entry_timeout},
    P.PIN_CHECK: {Digit: _ignore, PinChecked: _pin_checked, CoreFailed: _core_failed},
    P.NUMBER_PROMPT: {Digit: _number_prompt_digit, PromptDone: _number_prompt_done},
    P.NUMBER_ENTRY: {Digit: _number_entry_digit, Timeout: _number_entry_timeout},
    P.AUTHORIZING: {Digit: _ignore, Authorized: _authorized, CoreFailed: _core_failed},
    P.HOLDING: {Digit: _ignore, PromptDone: _holding_done, PartyResult: _holding_party},
    P.AWAITING_PARTY: {Digit: _ignore, PartyResult: _awaiting_party},
    P.CLOSING: {Digit: _ignore, PromptDone: _closing_done},
    P.CONNECTED: {},
    P.ENDED: {},
}
for _phase, _moves in _TABLE.items():
    if _phase not in TERMINAL:
        _moves[Hangup] = _hangup


def legal_events(phase: Phase) -> frozenset[type]:
    """The event types `phase` takes; every other one is an IllegalMove."""
    return frozenset(_TABLE[phase])


def step(call: InmateCall, event: Event) -> Result:
    """The one transition function: the next state and the actions for the worker."""
    move = _TABLE[call.phase].get(type(event))
    if move is None:
        raise IllegalMove(FLOW, call.phase, event)
    return move(call, event)


def begin(
    settings: IvrSettings | None = None,
    *,
    language: str | None = None,
    pin: str | None = None,
    number: str | None = None,
    inmate_id: str | None = None,
) -> Result:
    """The first state and actions for a kiosk call, given what a trusted kiosk preset."""
    s = settings or IvrSettings()
    for name, value in (
        ("language", language),
        ("pin", pin),
        ("number", number),
        ("inmate_id", inmate_id),
    ):
        if value is not None and not isinstance(value, str):
            raise BadPreset(f"preset {name} must be a string, got {value!r}")
    if inmate_id is not None and not inmate_id.strip():
        # The flow would skip the PIN and ask the core to authorize a call for nobody.
        raise BadPreset(f"preset inmate_id must name an inmate, got {inmate_id!r}")
    if language is not None and language not in s.languages:
        raise BadPreset(f"preset language {language!r} is not one of {s.languages}")
    if pin is not None and inmate_id is not None:
        raise BadPreset("preset either the pin or the inmate_id, not both")
    call = InmateCall(
        phase=Phase.LANGUAGE_MENU,
        language=language or s.language_default,
        language_chosen=language is not None,
        inmate_id=inmate_id,
        pin_preset=pin is not None,
        number_preset=number,
        settings=s,
    )
    if pin is not None:
        return _check_pin(call, pin)
    if inmate_id is not None:
        return _after_pin(call)
    if language is None and s.language_menu and len(s.languages) > 1:
        return call, [_play(call, _language_menu(call))]
    return _after_language(call)


class InmateFlow(Flow[InmateCall, Event, Action]):
    """The inmate's flow held for the worker: ``actions = flow.feed(event)``."""

    def __init__(self, settings: IvrSettings | None = None, **presets: str | None):
        super().__init__(begin(settings, **presets), step)
