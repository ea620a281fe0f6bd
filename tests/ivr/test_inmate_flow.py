"""The inmate's leg: every (phase, event) pair, scenarios, and properties of random calls."""
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from ivr import catalog
from ivr.flows import inmate
from ivr.flows.inmate import InmateCall, Phase, begin, number_to_e164, step
from ivr.flows.moves import (
    AcceptFailed, AcceptGranted, Authorize, Authorized, BadEvent, CheckPin, Collect, CoreFailed,
    Dial, Digit, HangUp, Hangup, IllegalMove, PartyResult, PinChecked, Play, PromptDone,
    StopCollect, StopPlay, Timeout, PARTY_RESULTS,
)
from ivr.settings import IvrSettings

S = IvrSettings()
ALLOWED = Authorized(True, e164="+12125550123", max_seconds=900)

SAMPLES = {
    Digit: Digit("1"), Timeout: Timeout(), PromptDone: PromptDone(), Hangup: Hangup(),
    PinChecked: PinChecked(True, inmate_id="i-1"), Authorized: ALLOWED,
    CoreFailed: CoreFailed("system_unavailable"), PartyResult: PartyResult("accepted"),
    AcceptGranted: AcceptGranted(120), AcceptFailed: AcceptFailed("insufficient_funds"),
}

# A representative state per phase: what the flow knows when it is there.
STATES = {
    Phase.LANGUAGE_MENU: InmateCall(Phase.LANGUAGE_MENU, "en"),
    Phase.LANGUAGE_CHOICE: InmateCall(Phase.LANGUAGE_CHOICE, "en"),
    Phase.PIN_PROMPT: InmateCall(Phase.PIN_PROMPT, "en"),
    Phase.PIN_ENTRY: InmateCall(Phase.PIN_ENTRY, "en", digits="1234"),
    Phase.PIN_CHECK: InmateCall(Phase.PIN_CHECK, "en"),
    Phase.NUMBER_PROMPT: InmateCall(Phase.NUMBER_PROMPT, "en", inmate_id="i-1"),
    Phase.NUMBER_ENTRY: InmateCall(Phase.NUMBER_ENTRY, "en", inmate_id="i-1", digits="21255501"),
    Phase.AUTHORIZING: InmateCall(Phase.AUTHORIZING, "en", inmate_id="i-1", e164="+12125550123"),
    Phase.HOLDING: InmateCall(Phase.HOLDING, "en", inmate_id="i-1", authorized=True),
    Phase.AWAITING_PARTY: InmateCall(Phase.AWAITING_PARTY, "en", inmate_id="i-1",
                                     authorized=True),
    Phase.CLOSING: InmateCall(Phase.CLOSING, "en", end_reason="not_approved"),
    Phase.CONNECTED: InmateCall(Phase.CONNECTED, "en", authorized=True),
    Phase.ENDED: InmateCall(Phase.ENDED, "en", end_reason="abandoned"),
}

P = Phase
# (phase, event type) -> (next phase, action types). Everything not listed is an IllegalMove.
LEGAL = {
    (P.LANGUAGE_MENU, Digit): (P.PIN_PROMPT, [StopPlay, Play]),
    (P.LANGUAGE_MENU, PromptDone): (P.LANGUAGE_CHOICE, [Collect]),
    (P.LANGUAGE_MENU, Hangup): (P.ENDED, []),
    (P.LANGUAGE_CHOICE, Digit): (P.PIN_PROMPT, [StopCollect, Play]),
    (P.LANGUAGE_CHOICE, Timeout): (P.PIN_PROMPT, [Play]),
    (P.LANGUAGE_CHOICE, Hangup): (P.ENDED, []),
    (P.PIN_PROMPT, Digit): (P.PIN_ENTRY, [StopPlay, Collect]),
    (P.PIN_PROMPT, PromptDone): (P.PIN_ENTRY, [Collect]),
    (P.PIN_PROMPT, Hangup): (P.ENDED, []),
    (P.PIN_ENTRY, Digit): (P.PIN_ENTRY, []),
    (P.PIN_ENTRY, Timeout): (P.PIN_CHECK, [CheckPin]),
    (P.PIN_ENTRY, Hangup): (P.ENDED, []),
    (P.PIN_CHECK, Digit): (P.PIN_CHECK, []),
    (P.PIN_CHECK, PinChecked): (P.NUMBER_PROMPT, [Play]),
    (P.PIN_CHECK, CoreFailed): (P.CLOSING, [Play]),
    (P.PIN_CHECK, Hangup): (P.ENDED, []),
    (P.NUMBER_PROMPT, Digit): (P.NUMBER_ENTRY, [StopPlay, Collect]),
    (P.NUMBER_PROMPT, PromptDone): (P.NUMBER_ENTRY, [Collect]),
    (P.NUMBER_PROMPT, Hangup): (P.ENDED, []),
    (P.NUMBER_ENTRY, Digit): (P.NUMBER_ENTRY, []),
    (P.NUMBER_ENTRY, Timeout): (P.NUMBER_PROMPT, [Play]),     # 8 digits: no shape, asked again
    (P.NUMBER_ENTRY, Hangup): (P.ENDED, []),
    (P.AUTHORIZING, Digit): (P.AUTHORIZING, []),
    (P.AUTHORIZING, Authorized): (P.HOLDING, [Play, Dial]),
    (P.AUTHORIZING, CoreFailed): (P.CLOSING, [Play]),
    (P.AUTHORIZING, Hangup): (P.ENDED, []),
    (P.HOLDING, Digit): (P.HOLDING, []),
    (P.HOLDING, PromptDone): (P.AWAITING_PARTY, []),
    (P.HOLDING, PartyResult): (P.CONNECTED, [StopPlay]),
    (P.HOLDING, Hangup): (P.ENDED, []),
    (P.AWAITING_PARTY, Digit): (P.AWAITING_PARTY, []),
    (P.AWAITING_PARTY, PartyResult): (P.CONNECTED, []),
    (P.AWAITING_PARTY, Hangup): (P.ENDED, []),
    (P.CLOSING, Digit): (P.CLOSING, []),
    (P.CLOSING, PromptDone): (P.ENDED, [HangUp]),
    (P.CLOSING, Hangup): (P.ENDED, []),
}


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.name)
@pytest.mark.parametrize("event_type", list(SAMPLES), ids=lambda t: t.__name__)
def test_every_phase_and_event_pair_is_documented_or_refused(phase, event_type):
    call, event = STATES[phase], SAMPLES[event_type]
    if (phase, event_type) in LEGAL:
        after, kinds = LEGAL[(phase, event_type)]
        new, actions = step(call, event)
        assert new.phase is after
        assert [type(a) for a in actions] == kinds
        assert event_type in inmate.legal_events(phase)
    else:
        with pytest.raises(IllegalMove, match=f"inmate flow in phase {phase.name} cannot take"):
            step(call, event)
        assert event_type not in inmate.legal_events(phase)


def test_the_table_covers_every_phase():
    assert {phase for phase, _ in LEGAL} | inmate.TERMINAL == set(Phase)
    assert all(not inmate.legal_events(p) for p in inmate.TERMINAL)


# --- a little driver for scenarios ------------------------------------------------------------

class Kiosk:
    def __init__(self, settings=S, **presets):
        self.call, self.actions = begin(settings, **presets)
        self.log = list(self.actions)

    def __call__(self, *events):
        for e in events:
            self.call, self.actions = step(self.call, e)
            self.log += self.actions
        return self.actions

    def keys(self, text):
        return self(*[Digit(k) for k in text])

    @property
    def heard(self):
        """Prompt ids of the last Play in the last answer."""
        plays = [a for a in self.actions if isinstance(a, Play)]
        return list(plays[-1].clips) if plays else []


def to_pin_entry(k):
    k(Digit("1"))          # English (barges into the menu)
    k(PromptDone())        # "please enter your PIN" ends
    return k


def to_number_entry(k):
    to_pin_entry(k).keys("12345678#")
    k(PinChecked(True, inmate_id="i-1"), PromptDone())
    return k


# --- language ----------------------------------------------------------------------------------

def test_the_language_menu_speaks_each_line_in_its_own_language():
    k = Kiosk()
    play = k.actions[0]
    assert play.barge_in and play.files() == [
        catalog.path("language_choice", "en"), catalog.path("num_1", "en"),
        catalog.path("language_choice", "es"), catalog.path("num_2", "es")]


def test_pressing_2_makes_every_later_prompt_spanish():
    k = Kiosk()
    k(PromptDone(), Digit("2"))
    assert k.call.language == "es" and k.actions[-1] == Play(("pin_enter",), "es", True)
    to = k(PromptDone())
    assert to == [Collect(16, ("#",), 8.0, 5.0)]


def test_no_language_key_carries_on_in_the_default_language():
    k = Kiosk(IvrSettings(language_default="es"))
    k(PromptDone(), Timeout())
    assert k.call.phase is Phase.PIN_PROMPT and k.call.language == "es"


def test_a_wrong_language_key_replays_the_menu_then_gives_up_on_the_default():
    k = Kiosk()
    k(PromptDone(), Digit("7"))
    assert k.heard[0] == "invalid_choice" and k.call.phase is Phase.LANGUAGE_MENU
    k(Digit("8"))
    k(Digit("9"))
    assert k.call.phase is Phase.PIN_PROMPT and k.call.language == "en"


def test_the_menu_is_skipped_when_the_kiosk_presets_the_language():
    k = Kiosk(language="es")
    assert k.actions == [Play(("pin_enter",), "es", True)]


def test_with_the_menu_off_the_inmates_enrolled_language_replaces_the_default():
    k = Kiosk(IvrSettings(language_menu=False))
    assert k.call.phase is Phase.PIN_PROMPT
    k(PromptDone())
    k.keys("12345678#")
    k(PinChecked(True, inmate_id="i-1", language="es"))
    assert k.actions == [Play(("number_enter",), "es", True)]


def test_a_chosen_language_wins_over_the_enrolled_one():
    k = to_pin_entry(Kiosk())
    k.keys("12345678#")
    k(PinChecked(True, inmate_id="i-1", language="es"))
    assert k.call.language == "en"


# --- PIN ---------------------------------------------------------------------------------------

def test_a_pin_ended_by_pound_goes_to_the_core():
    k = to_pin_entry(Kiosk())
    assert k.keys("1234567") == []
    assert k(Digit("#")) == [StopCollect(), CheckPin("1234567")]


def test_a_pause_after_the_pin_digits_ends_the_entry():
    k = to_pin_entry(Kiosk())
    k.keys("123456")
    assert k(Timeout()) == [CheckPin("123456")]


def test_a_fixed_length_pin_is_sent_without_pound():
    k = to_pin_entry(Kiosk(IvrSettings(pin_length=6)))
    assert k.keys("12345") == []
    assert k(Digit("6")) == [StopCollect(), CheckPin("123456")]


def test_a_key_during_the_pin_prompt_stops_it_and_starts_the_entry():
    k = Kiosk(language="en")
    assert k(Digit("4")) == [StopPlay(), Collect(16, ("#",), 5.0, 5.0)]
    k.keys("321#")
    assert k.log[-1] == CheckPin("4321")


def test_star_starts_the_pin_over():
    k = to_pin_entry(Kiosk())
    k.keys("99")
    assert k(Digit("*")) == [StopCollect(), Play(("pin_enter",), "en", True)]
    k(PromptDone())
    k.keys("1234#")
    assert k.log[-1] == CheckPin("1234")


def test_a_wrong_pin_is_asked_again():
    k = to_pin_entry(Kiosk())
    k.keys("1111#")
    k(PinChecked(False, attempts_left=4))
    assert k.heard == ["pin_invalid_retry", "pin_enter"] and k.call.phase is Phase.PIN_PROMPT


def test_third_wrong_pin_plays_the_invalid_pin_prompt_and_hangs_up():
    k = to_pin_entry(Kiosk())
    for attempt in range(3):
        k.keys("1111#")
        k(PinChecked(False, attempts_left=9))
        if attempt < 2:
            k(PromptDone())
    assert k.call.phase is Phase.CLOSING
    assert k.actions == [Play(("deny_pin_invalid", "goodbye"), "en", False)]
    assert k(PromptDone()) == [HangUp("pin_invalid")]
    assert k.call.done


def test_a_locked_pin_plays_the_lockout_message_and_hangs_up():
    k = to_pin_entry(Kiosk())
    k.keys("1111#")
    k(PinChecked(False, locked=True))
    assert k.heard == ["deny_pin_locked", "goodbye"]
    assert k(PromptDone()) == [HangUp("pin_locked")]


def test_when_the_core_has_no_attempts_left_one_wrong_pin_ends_the_call():
    k = to_pin_entry(Kiosk())
    k.keys("1111#")
    k(PinChecked(False, attempts_left=0))
    assert k.heard == ["deny_pin_invalid", "goodbye"]


def test_a_pin_too_short_counts_as_wrong_without_asking_the_core():
    k = to_pin_entry(Kiosk())
    assert k.keys("12#") == [StopCollect(), Play(("pin_invalid_retry", "pin_enter"), "en", True)]
    assert k.call.pin_failures == 1 and not any(isinstance(a, CheckPin) for a in k.log)


def test_silence_at_the_pin_prompt_replays_it_then_says_goodbye():
    k = to_pin_entry(Kiosk())
    for _ in range(S.repeat_max):
        k(Timeout())
        assert k.heard == ["no_input", "pin_enter"]
        k(PromptDone())
    k(Timeout())
    assert k.heard == ["no_input", "goodbye"]
    assert k(PromptDone()) == [HangUp("no_input")]


def test_the_core_unreachable_during_the_pin_check_ends_the_call():
    k = to_pin_entry(Kiosk())
    k.keys("12345#")
    k(CoreFailed("system_unavailable"))
    assert k.heard == ["deny_system_unavailable", "goodbye"]
    assert k(PromptDone()) == [HangUp("system_unavailable")]


def test_the_pin_never_shows_in_the_state_or_the_actions():
    k = to_pin_entry(Kiosk())
    k.keys("987654")
    assert "987654" not in repr(k.call)
    k(Digit("#"))
    assert "987654" not in repr(k.log)


# --- number ------------------------------------------------------------------------------------

@pytest.mark.parametrize("digits,e164", [
    ("2125550123", "+12125550123"),
    ("12125550123", "+12125550123"),
    ("011442079460018", "+442079460018"),
    ("0115215551234567", "+5215551234567"),
    ("1125550123", None),          # area code cannot start with 1
    ("2121550123", None),          # nor the exchange
    ("212555012", None),
    ("21255501234", None),
    ("0110442079460018", None),    # no country code starts with 0
    ("011123", None),
    ("", None),
])
def test_number_shapes(digits, e164):
    assert number_to_e164(digits, S) == e164


def test_a_north_american_number_ends_itself_at_ten_digits():
    k = to_number_entry(Kiosk())
    assert k.keys("212555012") == []
    assert k(Digit("3")) == [StopCollect(), Authorize("+12125550123", "i-1")]


def test_pound_ends_an_international_number():
    k = to_number_entry(Kiosk())
    assert k.keys("011442079460018") == []
    assert k(Digit("#")) == [StopCollect(), Authorize("+442079460018", "i-1")]


def test_a_pause_after_digits_ends_the_number():
    k = to_number_entry(Kiosk())
    k.keys("011442079460018")
    assert k(Timeout()) == [Authorize("+442079460018", "i-1")]


def test_a_badly_shaped_number_is_asked_again_then_refused_as_invalid():
    k = to_number_entry(Kiosk())
    for attempt in range(S.number_attempts_max):
        k.keys("5550123#")
        if attempt < S.number_attempts_max - 1:
            assert k.heard == ["number_invalid_retry", "number_enter"]
            k(PromptDone())
    assert k.heard == ["deny_invalid_number", "goodbye"]
    assert k(PromptDone()) == [HangUp("invalid_number")]
    assert not any(isinstance(a, Authorize) for a in k.log)


# --- the core's answer and the called party ----------------------------------------------------

def test_english_caller_is_told_the_terms_and_asked_to_hold_while_the_number_is_dialled():
    k = to_number_entry(Kiosk())
    k.keys("2125550123")
    actions = k(ALLOWED)
    assert actions[1] == Dial("+12125550123")
    assert actions[0].transcript() == (
        "This call will be recorded and may be monitored. This call may last up to fifteen "
        "minutes Please hold while we connect your call.")
    k(PromptDone())
    assert k(PartyResult("accepted")) == [] and k.call.phase is Phase.CONNECTED


def test_a_privileged_call_tells_the_inmate_it_is_not_recorded():
    k = to_number_entry(Kiosk())
    k.keys("2125550123")
    k(Authorized(True, e164="+12125550123", privileged=True, record=False))
    assert k.heard == ["notice_privileged_inmate", "please_hold"]


def test_the_time_limit_is_said_in_the_callers_language():
    k = Kiosk(language="es", inmate_id="i-1", number="2125550123")
    k(Authorized(True, e164="+12125550123", max_seconds=21 * 60))
    assert "puede durar hasta veintiún minutos" in k.actions[0].transcript()


@pytest.mark.parametrize("reason", catalog.DENY_REASONS)
def test_each_denial_reason_plays_its_own_prompt_then_hangs_up(reason):
    k = to_number_entry(Kiosk())
    k.keys("2125550123")
    k(Authorized(False, reason=reason))
    assert k.heard == [f"deny_{reason}", "goodbye"] and not k.actions[0].barge_in
    assert k(PromptDone()) == [HangUp(reason)]
    assert not any(isinstance(a, Dial) for a in k.log)


@pytest.mark.parametrize("result", [r for r in PARTY_RESULTS if r != "accepted"])
def test_each_outcome_of_the_called_party_plays_its_prompt(result):
    k = Kiosk(language="en", inmate_id="i-1", number="2125550123")
    k(ALLOWED, PromptDone(), PartyResult(result))
    assert k.heard == [inmate.PARTY_PROMPTS[result], "goodbye"]
    assert k(PromptDone()) == [HangUp(result)]


def test_a_quick_busy_stops_the_hold_prompt():
    k = Kiosk(language="en", inmate_id="i-1", number="2125550123")
    k(ALLOWED)
    assert k(PartyResult("busy")) == [StopPlay(), Play(("party_busy", "goodbye"), "en", False)]


def test_keys_pressed_while_waiting_for_the_core_are_dropped():
    k = to_number_entry(Kiosk())
    k.keys("2125550123")
    assert k.keys("55#*") == [] and k.call.phase is Phase.AUTHORIZING


def test_a_hangup_ends_the_flow_without_actions():
    k = to_pin_entry(Kiosk())
    assert k(Hangup()) == [] and k.call.phase is Phase.ENDED
    assert k.call.end_reason == "abandoned"
    with pytest.raises(IllegalMove):
        k(Digit("1"))


# --- presets from a trusted kiosk --------------------------------------------------------------

def test_a_trusted_kiosk_with_pin_and_number_goes_straight_to_the_core():
    k = Kiosk(pin="12345678", number="2125550123")
    assert k.actions == [CheckPin("12345678")]
    assert k(PinChecked(True, inmate_id="i-1", language="es")) == [
        Authorize("+12125550123", "i-1")]
    k(ALLOWED)
    assert k.actions[0].language == "es" and k.actions[1] == Dial("+12125550123")


def test_a_rejected_preset_pin_is_not_asked_again():
    k = Kiosk(pin="12345678", number="2125550123")
    k(PinChecked(False, attempts_left=4))
    assert k.heard == ["deny_pin_invalid", "goodbye"]


def test_a_badly_shaped_preset_number_is_denied_as_invalid():
    k = Kiosk(inmate_id="i-1", number="555")
    assert k.heard == ["deny_invalid_number", "goodbye"]


def test_a_preset_inmate_skips_the_pin():
    k = Kiosk(inmate_id="i-1")
    assert k.actions == [Play(("number_enter",), "en", True)]


@pytest.mark.parametrize("presets,match", [
    ({"language": "fr"}, "language 'fr'"),
    ({"pin": 1234}, "pin must be a string"),
    ({"pin": "1234", "inmate_id": "i-1"}, "not both"),
    ({"inmate_id": ""}, "inmate_id must name an inmate"),     # else: Authorize for nobody
    ({"inmate_id": "  "}, "inmate_id must name an inmate"),
])
def test_bad_presets_are_refused_by_name(presets, match):
    with pytest.raises(inmate.BadPreset, match=match):
        begin(S, **presets)


@pytest.mark.parametrize("make,match", [
    (lambda: Digit("A"), "Digit.key"),
    (lambda: Authorized(False, reason="because"), "Authorized.reason"),
    (lambda: Authorized(True), "e164"),
    (lambda: PinChecked(True), "inmate_id"),
    (lambda: PartyResult("maybe"), "PartyResult.result"),
    (lambda: CoreFailed("oops"), "CoreFailed.reason"),
])
def test_events_outside_their_domain_are_refused_when_built(make, match):
    with pytest.raises(BadEvent, match=match):
        make()


# --- properties: random calls against a simulated worker, core and called party ------------------

@st.composite
def calls(draw):
    """Run one call to its end; return the log of (event, actions)."""
    s = draw(st.sampled_from([S, IvrSettings(pin_length=6), IvrSettings(language_menu=False)]))
    presets = draw(st.sampled_from([{}, {"language": "es"}, {"pin": "123456"},
                                    {"inmate_id": "i-1", "number": "2125550123"}]))
    call, actions = begin(s, **presets)
    log = [(None, actions)]
    playing = collecting = False
    pending = None
    stray = 0
    for _ in range(1000):
        if call.done:
            break
        for a in actions:
            if isinstance(a, Play):
                playing, stray = True, 0
            elif isinstance(a, StopPlay):
                playing = False
            elif isinstance(a, Collect):
                collecting = True
            elif isinstance(a, StopCollect):
                collecting = False
            elif isinstance(a, (CheckPin, Authorize)):
                pending = a
            elif isinstance(a, Dial):
                pending = a
        if draw(st.integers(0, 150)) == 77:    # rarely: hypothesis favours the bounds
            event = Hangup()
        elif stray < 3 and draw(st.booleans()) and not collecting:
            event, stray = Digit(draw(st.sampled_from("0123456789*#"))), stray + 1
        elif playing:
            event, playing = PromptDone(), False
        elif collecting:
            if draw(st.integers(0, 5)) == 0:
                event, collecting = Timeout(), False
            else:
                event = Digit(draw(st.sampled_from("0123456789012345678912*#")))
        elif isinstance(pending, CheckPin):
            event = draw(st.sampled_from([
                PinChecked(True, inmate_id="i-1", language="es"),
                PinChecked(False, attempts_left=2), PinChecked(False, attempts_left=0),
                PinChecked(False, locked=True), CoreFailed("kiosk_unknown")]))
        elif isinstance(pending, Authorize):
            event = draw(st.one_of(st.just(ALLOWED), st.builds(
                lambda r: Authorized(False, reason=r), st.sampled_from(catalog.DENY_REASONS))))
        elif isinstance(pending, Dial):
            event = PartyResult(draw(st.sampled_from(PARTY_RESULTS)))
        else:
            raise AssertionError(f"nothing to feed in {call}")
        if isinstance(event, (PinChecked, Authorized, CoreFailed, PartyResult)):
            pending = None
        call, actions = step(call, event)
        log.append((event, actions))
    return call, log


@settings(max_examples=300, deadline=None)
@given(calls())
def test_any_call_ends_in_a_terminal_phase_within_a_bounded_number_of_events(run):
    call, log = run
    assert call.done and len(log) < 400


@settings(max_examples=300, deadline=None)
@given(calls())
def test_dial_never_goes_out_without_an_allowed_authorization(run):
    call, log = run
    allowed = False
    dials = 0
    for event, actions in log:
        allowed = allowed or (isinstance(event, Authorized) and event.allow)
        for a in actions:
            if isinstance(a, Dial):
                assert allowed
                dials += 1
    assert dials <= 1
    assert (call.phase is Phase.CONNECTED) <= (dials == 1)


@settings(max_examples=300, deadline=None)
@given(calls())
def test_every_prompt_played_exists_and_hangup_comes_last_and_once(run):
    call, log = run
    flat = [a for _, actions in log for a in actions]
    for a in flat:
        if isinstance(a, Play):
            assert all(f.is_file() for f in a.files())
    hangups = [i for i, a in enumerate(flat) if isinstance(a, HangUp)]
    assert len(hangups) <= 1 and (not hangups or hangups[0] == len(flat) - 1)
    pins = sum(isinstance(a, CheckPin) for a in flat)
    assert pins <= S.pin_attempts_max
