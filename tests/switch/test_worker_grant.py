"""The worker's talk-time rules (switch.worker.grant) and its SIP parsing, without I/O."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from switch.wire import protocol as wire
from switch.worker.grant import (
    Grant, IllegalTalkMove, TalkEvent, TalkState, deadline_disposition, next_state, plan,
    talk_seconds,
)

S, E = TalkState, TalkEvent
LEGAL = {
    (S.GRANTED, E.CONTINUE_SENT): S.CONTINUING,
    (S.CONTINUING, E.GRANTED): S.GRANTED,
    (S.CONTINUING, E.GRANTED_LAST): S.LAST,
    (S.GRANTED, E.CORE_LOST): S.CORE_LOST,
    (S.CONTINUING, E.CORE_LOST): S.CORE_LOST,
    (S.LAST, E.CORE_LOST): S.LAST,
    (S.CORE_LOST, E.CORE_LOST): S.CORE_LOST,
    **{(s, e): S.ENDED for s in (S.GRANTED, S.CONTINUING, S.LAST, S.CORE_LOST)
       for e in (E.DEADLINE, E.HANGUP)},
}


@pytest.mark.parametrize("state,event", list(itertools.product(S, E)))
def test_every_talk_state_and_event_pair_moves_as_specified_or_is_refused(state, event):
    if (state, event) in LEGAL:
        assert next_state(state, event) is LEGAL[(state, event)]
    else:
        with pytest.raises(IllegalTalkMove):
            next_state(state, event)


def test_continue_goes_out_the_lead_before_the_grant_ends():
    p = plan(S.GRANTED, Grant(120, False), previous_until=60, continue_lead=5,
             warning_seconds=60, warned=False)
    assert (p.continue_at, p.warn_at, p.end_at) == (115, None, 120)


def test_continue_never_goes_out_before_half_the_period_on_short_periods():
    p = plan(S.GRANTED, Grant(2, False), previous_until=0, continue_lead=5,
             warning_seconds=60, warned=False)
    assert p.continue_at == 1.0


def test_last_grant_warns_a_minute_before_its_end_and_asks_for_nothing():
    p = plan(S.LAST, Grant(300, True), previous_until=240, continue_lead=5,
             warning_seconds=60, warned=False)
    assert (p.continue_at, p.warn_at, p.end_at) == (None, 240, 300)


def test_core_given_warning_time_wins_and_a_warning_is_never_repeated():
    g = Grant(4, True, warn_at=3)
    assert plan(S.LAST, g, previous_until=2, continue_lead=1, warning_seconds=60,
                warned=False).warn_at == 3
    assert plan(S.LAST, g, previous_until=2, continue_lead=1, warning_seconds=60,
                warned=True).warn_at is None


def test_no_warning_when_the_last_grant_is_shorter_than_the_warning():
    p = plan(S.LAST, Grant(45, True), previous_until=0, continue_lead=5, warning_seconds=60,
             warned=False)
    assert p.warn_at is None and p.end_at == 45


def test_without_the_core_the_held_grant_is_finished_and_nothing_more_is_asked():
    p = plan(S.CORE_LOST, Grant(60, False), previous_until=0, continue_lead=5,
             warning_seconds=60, warned=False)
    assert (p.continue_at, p.warn_at, p.end_at) == (None, None, 60)
    assert deadline_disposition(S.CORE_LOST) == "core_unreachable"
    assert deadline_disposition(S.CONTINUING) == "core_unreachable"
    assert deadline_disposition(S.LAST) == "grant_exhausted"
    assert {deadline_disposition(s) for s in S} <= set(wire.DISPOSITIONS)


@settings(max_examples=200)
@given(st.floats(min_value=0, max_value=10_000, allow_nan=False), st.integers(0, 10_000))
def test_reported_talk_seconds_never_exceed_the_grant(elapsed, until):
    t = talk_seconds(elapsed, until)
    assert 0 <= t <= until
    assert t >= min(int(elapsed), until)


@settings(max_examples=200)
@given(st.integers(1, 600), st.integers(0, 3_600), st.floats(0.1, 30))
def test_every_action_of_a_plan_falls_within_the_grant(period, previous, lead):
    g = Grant(previous + period, False)
    p = plan(S.GRANTED, g, previous_until=previous, continue_lead=lead, warning_seconds=60,
             warned=False)
    assert previous < p.continue_at < g.until == p.end_at


def test_a_negative_grant_is_refused():
    with pytest.raises(ValueError, match="grant_until"):
        Grant(-1, False)
