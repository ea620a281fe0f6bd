"""The called party's leg: every (phase, event) pair, scenarios, and properties of random calls."""
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ivr import catalog
from ivr.flows import called_party
from ivr.flows.called_party import Announcement, CalledParty, CalledPartyFlow, Phase, begin, step
from ivr.flows.moves import (
    Accept, AcceptFailed, AcceptGranted, Authorized, BadEvent, Block, Bridge, Collect, CoreFailed,
    Digit, HangUp, Hangup, IllegalMove, PartyResult, PinChecked, Play, PromptDone, Refuse,
    StopCollect, StopPlay, Timeout, PARTY_RESULTS,
)
from ivr.say import NotSayable
from ivr.settings import IvrSettings

S = IvrSettings()
NAME = Path("/var/ics/names/i-1.wav")
FACILITY = Path("/var/ics/prompts/names/en/lakeside.wav")
PLAIN = Announcement("en", 60_000)

SAMPLES = {
    Digit: Digit("1"), Timeout: Timeout(), PromptDone: PromptDone(), Hangup: Hangup(),
    PinChecked: PinChecked(True, inmate_id="i-1"),
    Authorized: Authorized(True, e164="+12125550123"),
    CoreFailed: CoreFailed("system_unavailable"), PartyResult: PartyResult("accepted"),
    AcceptGranted: AcceptGranted(120), AcceptFailed: AcceptFailed("insufficient_funds"),
}
STATES = {phase: CalledParty(phase, "en", announcement=PLAIN) for phase in Phase}
STATES[Phase.CLOSING] = CalledParty(Phase.CLOSING, "en", outcome="refused", end_reason="refused",
                                    announcement=PLAIN)

P = Phase
LEGAL = {
    (P.PRESENTING, Digit): (P.ACCEPTING, [StopPlay, Accept]),
    (P.PRESENTING, PromptDone): (P.CHOOSING, [Collect]),
    (P.PRESENTING, Hangup): (P.ENDED, [Refuse]),
    (P.CHOOSING, Digit): (P.ACCEPTING, [StopCollect, Accept]),
    (P.CHOOSING, Timeout): (P.PRESENTING, [Play]),
    (P.CHOOSING, Hangup): (P.ENDED, [Refuse]),
    (P.ACCEPTING, Digit): (P.ACCEPTING, []),
    (P.ACCEPTING, AcceptGranted): (P.CONNECTED, [Bridge]),
    (P.ACCEPTING, AcceptFailed): (P.CLOSING, [Play]),
    (P.ACCEPTING, Hangup): (P.ENDED, []),
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
        assert event_type in called_party.legal_events(phase)
    else:
        with pytest.raises(IllegalMove, match=f"called party flow in phase {phase.name}"):
            step(call, event)
        assert event_type not in called_party.legal_events(phase)


def test_the_table_covers_every_phase():
    assert {phase for phase, _ in LEGAL} | called_party.TERMINAL == set(Phase)


class Line:
    def __init__(self, announcement=PLAIN, settings=S):
        self.flow = CalledPartyFlow(announcement, settings)
        self.actions = self.flow.start()
        self.log = list(self.actions)

    def __call__(self, *events):
        for e in events:
            self.actions = self.flow.feed(e)
            self.log += self.actions
        return self.actions

    @property
    def call(self):
        return self.flow.call

    @property
    def said(self):
        plays = [a for a in self.actions if isinstance(a, Play)]
        return plays[-1].transcript() if plays else ""


# --- the announcement --------------------------------------------------------------------------

def test_the_announcement_names_caller_and_facility_and_says_recording_price_and_menu():
    line = Line(Announcement("en", 60_000, inmate_name=NAME, facility_name=FACILITY))
    play = line.actions[0]
    assert play.barge_in
    assert play.transcript() == (
        "<es/language_choice.wav> <es/key_star.wav> You have a prepaid call from <names/i-1.wav> "
        "an inmate at <en/lakeside.wav> This call is from a correctional facility and will be "
        "recorded. It costs six cents per minute. To accept, press one To refuse, press two "
        "To block all calls from this facility, press nine To repeat, press zero")
    assert play.files()[0] == catalog.path("language_choice", "es")
    assert NAME in play.files() and FACILITY in play.files()


def test_without_a_name_or_facility_the_generic_words_are_used():
    said = Line(Announcement("en", 60_000)).said
    assert "a prepaid call from an inmate at a correctional facility." in said


def test_the_spanish_announcement():
    said = Line(Announcement("es", 1_250_000)).said
    assert said.startswith("<en/language_choice.wav> <en/key_star.wav> Tiene una llamada "
                           "prepagada de una persona privada de libertad en un centro")
    assert "Su costo es de un dólar con veinticinco centavos por minuto." in said
    assert "Para aceptar, oprima uno" in said


def test_a_privileged_call_says_it_will_not_be_recorded():
    said = Line(Announcement("en", 60_000, privileged=True, record=True)).said
    assert "It is privileged and will not be recorded or monitored." in said
    assert "will be recorded." not in said


def test_an_unrecorded_call_says_so_and_a_free_call_says_there_is_no_charge():
    said = Line(Announcement("en", 0, record=False)).said
    assert "and will not be recorded." in said and "There is no charge for this call." in said
    assert "It costs" not in said


def test_a_fractional_cent_rate_is_announced_exactly():
    assert "It costs six point five cents per minute." in Line(Announcement("en", 65_000)).said


def test_digit_assignment_comes_from_the_settings():
    s = IvrSettings(accept_key="5", refuse_key="6", block_key="", repeat_key="#",
                    language_switch_key="")
    line = Line(PLAIN, s)
    assert line.said.endswith("To accept, press five To refuse, press six To repeat, press pound")
    assert "block" not in line.said and "language_choice" not in line.said
    line(Digit("1"))
    assert line.said.startswith("That is not a valid choice.")
    line(Digit("5"))
    assert line.actions == [StopPlay(), Accept()]


def test_block_scope_inmate_is_announced_and_sent():
    line = Line(PLAIN, IvrSettings(block_scope="inmate"))
    assert "To block all calls from this person, press nine" in line.said
    line(PromptDone())
    assert line(Digit("9"))[:2] == [StopCollect(), Block("inmate")]


@pytest.mark.parametrize("make,error", [
    (lambda: Announcement("fr", 60_000), catalog.UnknownLanguage),
    (lambda: Announcement("en", -1), NotSayable),
    (lambda: Announcement("en", 60_000, inmate_name="/a.wav"), catalog.UnknownPrompt),
    (lambda: Announcement("en", 60_000, facility_name=3), BadEvent),
])
def test_a_bad_announcement_is_refused_by_name(make, error):
    with pytest.raises(error):
        make()


# --- choices -----------------------------------------------------------------------------------

def test_pressing_1_accepts_and_the_grant_bridges_the_legs():
    line = Line()
    line(PromptDone())
    assert line(Digit("1")) == [StopCollect(), Accept()]
    assert line(AcceptGranted(120)) == [Bridge()]
    assert line.call.outcome == "accepted" and line.flow.done


def test_a_key_barges_into_the_announcement():
    line = Line()
    assert line(Digit("1")) == [StopPlay(), Accept()]


def test_pressing_2_refuses_says_goodbye_and_hangs_up():
    line = Line()
    line(PromptDone())
    assert line(Digit("2")) == [StopCollect(), Refuse("refused"),
                                Play(("cp_goodbye",), "en", False)]
    assert line(PromptDone()) == [HangUp("refused")]
    assert line.call.outcome == "refused"


def test_pressing_9_blocks_and_confirms_the_block():
    line = Line()
    line(PromptDone())
    assert line(Digit("9")) == [StopCollect(), Block("facility"),
                                Play(("cp_blocked_confirm",), "en", False)]
    assert "This number has been blocked at your request." in line.said
    assert line(PromptDone()) == [HangUp("blocked")]


def test_pressing_0_repeats_the_whole_announcement():
    line = Line()
    first = line.actions
    line(PromptDone())
    assert line(Digit("0")) == [StopCollect(), *first]


def test_an_invalid_key_says_so_and_plays_the_menu_again():
    line = Line()
    line(PromptDone(), Digit("7"))
    assert line.said.startswith("That is not a valid choice. To accept, press one")
    assert "prepaid call" not in line.said


def test_star_switches_the_announcement_to_spanish():
    line = Line()
    line(Digit("*"))
    assert line.call.language == "es"
    assert "Tiene una llamada prepagada" in line.said
    assert line.said.startswith("<en/language_choice.wav> <en/key_star.wav>")


def test_silence_repeats_the_announcement_then_refuses_as_no_response():
    line = Line()
    for _ in range(S.repeat_max):
        line(PromptDone())
        assert line(Timeout()) == line.log[:1]
    line(PromptDone())
    assert line(Timeout()) == [Refuse("no_response"), Play(("cp_goodbye",), "en", False)]
    assert line(PromptDone()) == [HangUp("no_response")]
    assert line.call.outcome == "no_response"


def test_endless_wrong_keys_end_as_no_response():
    line = Line()
    for _ in range(S.repeat_max + 1):
        line(Digit("5"))
    assert Refuse("no_response") in line.actions


def test_the_core_refusing_the_accept_tells_the_called_party_and_hangs_up():
    line = Line()
    line(Digit("1"))
    assert line(AcceptFailed("insufficient_funds")) == [Play(("cp_cannot_complete",), "en", False)]
    assert line(PromptDone()) == [HangUp("insufficient_funds")]
    assert line.call.outcome == "insufficient_funds"


def test_hanging_up_during_the_announcement_is_a_refusal_as_hung_up():
    line = Line()
    assert line(Hangup()) == [Refuse("hung_up")]
    assert line.call.outcome == "hung_up" and line.flow.done


def test_keys_while_the_core_decides_are_dropped():
    line = Line()
    line(Digit("1"))
    assert line(Digit("2"), Digit("9")) == [] and line.call.phase is Phase.ACCEPTING


# --- passive acceptance ------------------------------------------------------------------------

def test_passive_acceptance_accepts_after_one_announcement_and_a_short_grace():
    line = Line(Announcement("en", 0, privileged=True, passive_accept=True))
    assert "To accept" not in line.said
    assert line.said.endswith("If you stay on the line, the call will be connected.")
    assert line(PromptDone()) == [Collect(1, (), S.passive_grace_seconds, S.digit_timeout_seconds)]
    assert line(Timeout()) == [Accept()]


def test_passive_acceptance_still_honours_a_refusal():
    line = Line(Announcement("en", 0, passive_accept=True))
    line(Digit("2"))
    assert Refuse("refused") in line.actions
    assert not any(isinstance(a, Accept) for a in line.log)


def test_passive_acceptance_accepts_when_repeats_run_out():
    line = Line(Announcement("en", 0, passive_accept=True))
    for _ in range(S.repeat_max + 1):
        line(Digit("0"))
    assert line.actions == [StopPlay(), Accept()]


# --- properties --------------------------------------------------------------------------------

@st.composite
def lines(draw):
    s = draw(st.sampled_from([S, IvrSettings(repeat_max=0), IvrSettings(block_key="",
                                                                         language_switch_key="")]))
    a = Announcement(draw(st.sampled_from(["en", "es"])), draw(st.integers(0, 5_000_000)),
                     passive_accept=draw(st.booleans()), privileged=draw(st.booleans()))
    call, actions = begin(a, s)
    log = [(None, actions)]
    playing = collecting = False
    accepted = False
    stray = 0
    for _ in range(500):
        if call.done:
            break
        for act in actions:
            if isinstance(act, Play):
                playing, stray = True, 0
            elif isinstance(act, StopPlay):
                playing = False
            elif isinstance(act, Collect):
                collecting = True
            elif isinstance(act, StopCollect):
                collecting = False
            elif isinstance(act, Accept):
                accepted = True
        if draw(st.integers(0, 100)) == 37:
            event = Hangup()
        elif accepted and call.phase is Phase.ACCEPTING:
            event = draw(st.sampled_from([AcceptGranted(120), AcceptFailed("insufficient_funds"),
                                          Digit("2")]))
        elif playing and (stray >= 3 or draw(st.booleans())):
            event, playing = PromptDone(), False
        elif collecting and draw(st.integers(0, 3)) == 0:
            event, collecting = Timeout(), False
        else:
            event, stray = Digit(draw(st.sampled_from("0123456789*#"))), stray + 1
        call, actions = step(call, event)
        log.append((event, actions))
    return call, log


@settings(max_examples=300, deadline=None)
@given(lines())
def test_any_line_ends_within_a_bounded_number_of_events_with_an_outcome(run):
    call, log = run
    assert call.done and len(log) < 200
    assert call.outcome in PARTY_RESULTS


@settings(max_examples=300, deadline=None)
@given(lines())
def test_never_accept_after_refuse_or_block_and_bridge_only_after_a_grant(run):
    call, log = run
    flat = [(e, a) for e, actions in log for a in actions]
    decisions = [a for _, a in flat if isinstance(a, (Accept, Refuse, Block))]
    assert len(decisions) <= 1
    granted = False
    for event, actions in log:
        granted = granted or isinstance(event, AcceptGranted)
        assert not any(isinstance(a, Bridge) for a in actions) or granted
    assert (call.phase is Phase.CONNECTED) == (call.outcome == "accepted")


@settings(max_examples=200, deadline=None)
@given(lines())
def test_every_prompt_played_to_the_called_party_exists(run):
    _, log = run
    for _, actions in log:
        for a in actions:
            if isinstance(a, Play):
                assert all(f.is_file() for f in a.files())
