"""The proof call's leg: every (phase, event) pair, what is said, and properties of random calls."""
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ivr import catalog
from ivr.flows import proof
from ivr.flows.moves import (
    AcceptFailed, AcceptGranted, Authorized, BadEvent, CoreFailed, Digit, HangUp, Hangup,
    IllegalMove, PartyResult, PinChecked, Play, PromptDone, Timeout,
)
from ivr.flows.proof import Phase, ProofCall, ProofFlow, ProofMessage, begin, step

MESSAGE = ProofMessage("en", "481902")
SAMPLES = {
    Digit: Digit("1"), Timeout: Timeout(), PromptDone: PromptDone(), Hangup: Hangup(),
    PinChecked: PinChecked(True, inmate_id="i-1"),
    Authorized: Authorized(True, e164="+12125550123"),
    CoreFailed: CoreFailed("system_unavailable"), PartyResult: PartyResult("accepted"),
    AcceptGranted: AcceptGranted(120), AcceptFailed: AcceptFailed("insufficient_funds"),
}
P = Phase
LEGAL = {
    (P.FIRST, PromptDone): (P.AGAIN, [Play]),
    (P.FIRST, Digit): (P.FIRST, []),
    (P.FIRST, Hangup): (P.ENDED, []),
    (P.AGAIN, PromptDone): (P.ENDED, [HangUp]),
    (P.AGAIN, Digit): (P.AGAIN, []),
    (P.AGAIN, Hangup): (P.ENDED, []),
}


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.name)
@pytest.mark.parametrize("event_type", list(SAMPLES), ids=lambda t: t.__name__)
def test_every_phase_and_event_pair_is_documented_or_refused(phase, event_type):
    call, event = ProofCall(phase, MESSAGE), SAMPLES[event_type]
    if (phase, event_type) in LEGAL:
        after, kinds = LEGAL[(phase, event_type)]
        new, actions = step(call, event)
        assert new.phase is after
        assert [type(a) for a in actions] == kinds
        assert event_type in proof.legal_events(phase)
    else:
        with pytest.raises(IllegalMove, match=f"proof flow in phase {phase.name}"):
            step(call, event)
        assert event_type not in proof.legal_events(phase)


def test_the_call_says_who_is_calling_then_the_code_digit_by_digit():
    call, actions = begin(MESSAGE)
    assert actions == [Play(("proof_this_is", "proof_caller_default", "proof_calling_with_code",
                             "proof_code_is", "num_4", "num_8", "num_1", "num_9", "num_0",
                             "num_2"), "en")]
    assert actions[0].transcript() == ("This is the family phone service calling with your "
                                       "verification code. Your code is four eight one nine "
                                       "zero two")


def test_the_code_is_said_again_then_goodbye_then_the_call_hangs_up():
    flow = ProofFlow(MESSAGE)
    flow.start()
    again = flow.feed(PromptDone())
    assert again == [Play(("proof_again", "num_4", "num_8", "num_1", "num_9", "num_0", "num_2",
                           "proof_goodbye"), "en")]
    assert flow.feed(PromptDone()) == [HangUp("spoken")]
    assert flow.done and flow.outcome == "spoken"


def test_spanish_says_the_code_in_spanish():
    _, [play] = begin(ProofMessage("es", "0517"))
    assert play.language == "es"
    assert play.transcript().endswith("Su código es cero cinco uno siete")


def test_a_named_caller_is_said_by_its_name_wav():
    name = Path("/var/ics/prompts/names/en/acme.wav")
    _, [play] = begin(ProofMessage("en", "123456", name))
    assert play.clips[1] == name


def test_a_hangup_before_the_first_reading_ends_is_not_spoken():
    flow = ProofFlow(MESSAGE)
    flow.start()
    assert flow.feed(Hangup()) == []
    assert flow.outcome == "hung_up"


def test_a_hangup_during_the_repeat_has_heard_the_code():
    flow = ProofFlow(MESSAGE)
    flow.start()
    flow.feed(PromptDone())
    assert flow.feed(Hangup()) == []
    assert flow.outcome == "spoken"


def test_keys_change_nothing():
    flow = ProofFlow(MESSAGE)
    flow.start()
    for key in "0123456789*#":
        assert flow.feed(Digit(key)) == []
    assert flow.call.phase is Phase.FIRST


@pytest.mark.parametrize("code", ["123", "abcdef", "12345678901", "", "１２３４５６", None])
def test_a_malformed_code_is_refused_without_saying_it(code):
    with pytest.raises(BadEvent, match="ProofMessage.code") as e:
        ProofMessage("en", code)
    assert "12345" not in str(e.value)


def test_the_code_stays_out_of_the_state_s_repr():
    call, _ = begin(MESSAGE)
    assert "481902" not in repr(call)


def test_an_unknown_language_or_caller_prompt_is_refused():
    with pytest.raises(catalog.UnknownLanguage):
        ProofMessage("fr", "123456")
    with pytest.raises(catalog.UnknownPrompt):
        ProofMessage("en", "123456", "no_such_prompt")


def test_every_clip_of_both_readings_has_its_wav_in_both_languages():
    for lang in catalog.LANGUAGES:
        m = ProofMessage(lang, "0123456789")
        for clips in (proof.first_clips(m), proof.again_clips(m)):
            for clip in clips:
                assert catalog.resolve(clip, lang).is_file(), (lang, clip)


@settings(max_examples=200, deadline=None)
@given(code=st.text(alphabet="0123456789", min_size=4, max_size=10),
       events=st.lists(st.sampled_from([PromptDone(), Digit("5"), Hangup()]), max_size=8))
def test_any_call_says_exactly_the_code_each_time_and_ends_at_most_once(code, events):
    flow = ProofFlow(ProofMessage("en", code))
    played = [a for a in flow.start() if isinstance(a, Play)]
    hangups = 0
    for event in events:
        if flow.done:
            with pytest.raises(IllegalMove):
                flow.feed(event)
            continue
        actions = flow.feed(event)
        played += [a for a in actions if isinstance(a, Play)]
        hangups += sum(isinstance(a, HangUp) for a in actions)
    for play in played:
        digits = "".join(c.removeprefix("num_") for c in play.clips
                         if isinstance(c, str) and c.startswith("num_"))
        assert digits == code
    assert len(played) <= 2 and hangups <= 1
    if flow.done:
        assert flow.outcome in ("spoken", "hung_up")
        assert (flow.outcome == "spoken") == (flow.call.readings >= 1)
