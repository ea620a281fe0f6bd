import itertools

import pytest
from hypothesis import given, settings, strategies as st

from switch.rules.session import (CallState, Charge, Event, IllegalTransition, boundary, charge_between,
                            plan_grant, step)

LEGAL = {
    (CallState.AUTHORIZED, Event.ACCEPT): CallState.TALKING,
    (CallState.AUTHORIZED, Event.ACCEPT_LAST): CallState.LAST,
    (CallState.AUTHORIZED, Event.END): CallState.ENDED,
    (CallState.AUTHORIZED, Event.LOST): CallState.ENDED,
    (CallState.TALKING, Event.CONTINUE): CallState.TALKING,
    (CallState.TALKING, Event.CONTINUE_LAST): CallState.LAST,
    (CallState.TALKING, Event.END): CallState.ENDED,
    (CallState.TALKING, Event.LOST): CallState.ENDED,
    (CallState.LAST, Event.END): CallState.ENDED,
    (CallState.LAST, Event.LOST): CallState.ENDED,
    (CallState.ENDED, Event.LATE_END): CallState.ENDED,
}


@pytest.mark.parametrize("state,event", list(itertools.product(CallState, Event)))
def test_every_state_event_pair_moves_as_documented_or_is_refused(state, event):
    if (state, event) in LEGAL:
        assert step(state, event) is LEGAL[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=event.value):
            step(state, event)


def per_minute(rate, tax_pct=0, connect=0):
    """Per-started-minute pricing with a percentage tax: a stand-in for rating's price()."""
    def cum(t):
        if t <= 0:
            return Charge(0, 0)
        call = connect + -(-t // 60) * rate
        return Charge(call, call * tax_pct // 100)
    return cum


def test_three_minutes_twenty_seconds_at_six_cents_per_started_minute_is_four_minutes():
    cum = per_minute(60_000)
    assert charge_between(cum, 0, 200) == Charge(240_000, 0)
    # period by period: three full periods plus 20 s of the fourth cost the same
    assert sum(charge_between(cum, boundary(k - 1, 60, 900), boundary(k, 60, 900)).total
               for k in (1, 2, 3)) + charge_between(cum, 180, 200).total == 240_000


def test_a_funded_period_is_granted_whole_and_the_period_reaching_the_limit_is_last():
    cum = per_minute(60_000)
    g = plan_grant(cum, 1, 60, 900, 10_000_000)
    assert (g.start, g.until, g.hold, g.last) == (0, 60, Charge(60_000, 0), False)
    g = plan_grant(cum, 15, 60, 900, 10_000_000)
    assert (g.start, g.until, g.last) == (840, 900, True)
    assert plan_grant(cum, 16, 60, 900, 10_000_000) is None


def test_an_underfunded_period_is_cut_to_what_the_money_covers_and_is_last():
    cum = lambda t: Charge(t * 1_000, 0)   # 1,000 micros per second
    g = plan_grant(cum, 2, 60, 900, 30_500)
    assert (g.start, g.until, g.hold, g.last) == (60, 90, Charge(30_000, 0), True)
    assert plan_grant(cum, 2, 60, 900, 999) is None


def test_per_minute_pricing_cuts_an_underfunded_call_at_the_funded_minute():
    cum = per_minute(60_000)
    assert plan_grant(cum, 3, 60, 900, 59_999) is None
    g = plan_grant(cum, 3, 60, 900, 60_000)
    assert g.until == 180 and not g.last


def test_free_calls_hold_nothing_and_run_to_the_limit():
    g = plan_grant(lambda t: Charge(0, 0), 1, 60, 45, None)
    assert (g.until, g.hold.total, g.last) == (45, 0, True)


def test_a_price_that_goes_down_is_refused():
    with pytest.raises(ValueError, match="non-decreasing"):
        charge_between(lambda t: Charge(100 - t, 0), 0, 10)


@settings(max_examples=300, deadline=None)
@given(rate=st.integers(0, 500_000), tax=st.integers(0, 30), connect=st.integers(0, 100_000),
       period=st.integers(1, 120), max_seconds=st.integers(1, 3600),
       money=st.integers(0, 5_000_000), talk_frac=st.floats(0, 1))
def test_period_by_period_charges_add_up_to_the_price_of_the_whole_call(
        rate, tax, connect, period, max_seconds, money, talk_frac):
    cum = per_minute(rate, tax, connect)
    available, k, grants = money, 1, []
    while True:
        g = plan_grant(cum, k, period, max_seconds, available)
        if g is None:
            break
        assert g.hold.total <= available     # never holds more than the account has
        available -= g.hold.total
        grants.append(g)
        if g.last:
            break
        k += 1
    if not grants:
        return
    until = grants[-1].until
    talk = int(until * talk_frac)
    # posted = whole earlier periods + the part of the current one that was used
    current = next(g for g in grants if g.start <= talk <= g.until)
    posted = sum(g.hold.total for g in grants if g.until <= current.start)
    posted += charge_between(cum, current.start, talk).total
    assert posted == cum(talk).total
    assert posted <= money
