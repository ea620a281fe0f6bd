"""The charging steps (switch.rules.session accept / advance / settle / lose) without I/O.

A table walks every (state, event, ledger answer, funding) case with the transfers it makes; then
property tests drive the steps against the in-memory ledger model (tests/ledger/ledger_model.py,
the oracle the real ledger is tested against), the way the core drives them against PostgreSQL:
charged = price(measured talk) for every hang-up offset, inside the Continue lead included, money
conserved, no hold outliving its call, whatever the ledger answers.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import ledger
from ledger.results import TransferResult as R
from switch.rules import session as s
from switch.rules.session import CallState, Charge, Money

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))
from ledger_model import Model  # noqa: E402

K = ledger.TransferKind
CID = uuid.UUID("00000000-0000-4000-8000-00000000c0de")
FAMILY = "prepaid:+19515550101"
BOOKS = s.Books()
TERMS = s.Terms(period_seconds=60, warning_seconds=60, hold_slack_seconds=30)


def per_minute(rate=60_000, tax_pct=5, connect=0):
    """Per started minute with a percent tax: a stand-in for rating's price()."""
    def cum(t):
        if t <= 0:
            return Charge(0, 0)
        call = connect + -(-t // 60) * rate
        return Charge(call, call * tax_pct // 100)
    return cum


def per_second(rate_per_second=1_000, tax_pct=10):
    def cum(t):
        call = max(0, t) * rate_per_second
        return Charge(call, call * tax_pct // 100)
    return cum


def money(state=CallState.TALKING, period=1, grant=60, posted=0, max_seconds=900, hold=True,
          account=FAMILY, shortfall=0):
    return Money(CID, state, period, grant, posted, max_seconds, account,
                 uuid.uuid4() if hold else None, uuid.uuid4() if hold else None, shortfall)


def kinds(step):
    return [(t.kind, s.purpose(t)) for t in step.transfers]


def decide(fn, m, *args, available=None, answers=None, tries=0, cum=None):
    return fn(m, *args, cum or per_minute(), TERMS, BOOKS, available=available,
              answers=answers or {}, tries=tries)


# -- the table: (state, event, ledger answer, funding) -> transfers, new state, answer ----------

def test_accept_funded_holds_the_first_period_in_one_linked_chain():
    st_ = decide(s.accept, money(CallState.AUTHORIZED, 0, 0, 0, hold=False))
    assert kinds(st_) == [(K.HOLD, "hold"), (K.HOLD, "hold")]
    assert [t.linked for t in st_.transfers] == [True, False]
    assert [t.amount for t in st_.transfers] == [60_000, 3_000]
    assert [t.expires_in for t in st_.transfers] == [60 + 30, 60 + 30]   # the slack past its end
    assert st_.state is CallState.TALKING and st_.answer == s.GrantAnswer(60, False, None)
    assert (st_.row.hold_call, st_.row.hold_tax) == tuple(t.id for t in st_.transfers)


def test_accept_refused_for_funds_asks_for_the_balance_then_holds_less_under_a_new_id():
    m = money(CallState.AUTHORIZED, 0, 0, 0, hold=False)
    cum = per_second()
    first = decide(s.accept, m, cum=cum)
    asked = decide(s.accept, m, answers={"hold": R.INSUFFICIENT_FUNDS}, tries=1, cum=cum)
    assert asked.needs_balance and not asked.transfers
    second = decide(s.accept, m, available=33_000, answers={"hold": R.INSUFFICIENT_FUNDS},
                    tries=1, cum=cum)
    assert second.answer == s.GrantAnswer(30, True, 1)       # 30 s, last, warned at once
    assert sum(t.amount for t in second.transfers) == 33_000
    assert {t.id for t in second.transfers}.isdisjoint({t.id for t in first.transfers})
    assert second.state is CallState.LAST


@pytest.mark.parametrize("answer,available", [
    (R.INSUFFICIENT_FUNDS, 0),                 # not one second is paid for
    (R.DEBIT_ACCOUNT_NOT_FOUND, 10**9),        # the account is gone: no hold can be made
])
def test_accept_that_cannot_hold_one_second_is_refused_and_moves_nothing(answer, available):
    st_ = decide(s.accept, money(CallState.AUTHORIZED, 0, 0, 0, hold=False), available=available,
                 answers={"hold": answer}, tries=1)
    assert st_.answer is s.Refusal.INSUFFICIENT_FUNDS and not st_.transfers and st_.row is None


@pytest.mark.parametrize("state,answer", [
    (CallState.TALKING, s.GrantAnswer(60, False, None)),
    (CallState.LAST, s.GrantAnswer(60, True, 1)),
    (CallState.ENDED, s.Refusal.ALREADY_ENDED),
])
def test_a_resent_accept_is_answered_from_the_row(state, answer):
    st_ = decide(s.accept, money(state))
    assert st_.answer == answer and not st_.transfers and st_.row is None


def test_advance_posts_the_measured_talk_and_holds_to_the_next_period_end():
    m = money(grant=60)
    st_ = decide(s.advance, m, 1, 55, cum=per_second())
    assert kinds(st_) == [(K.POST, "resolve"), (K.POST, "resolve"), (K.HOLD, "hold"),
                          (K.HOLD, "hold")]
    post_call, post_tax, hold_call, hold_tax = st_.transfers
    assert (post_call.hold, post_call.amount, post_tax.amount) == (m.hold_call, 55_000, 5_500)
    assert (hold_call.amount, hold_tax.amount) == (65_000, 6_500)       # (55, 120]
    assert hold_call.expires_in == 65 + 30
    assert [t.linked for t in st_.transfers] == [True, True, True, False]
    assert (st_.row.period, st_.row.posted_until, st_.row.grant_until) == (2, 55, 120)
    assert st_.answer == s.GrantAnswer(120, False, None) and st_.state is CallState.TALKING


def test_advance_with_no_talk_since_the_last_post_voids_instead_of_posting_zero():
    st_ = decide(s.advance, money(grant=120, posted=60, period=2), 2, 60, cum=per_second())
    assert [t.kind for t in st_.transfers][:2] == [K.VOID, K.VOID]


def test_advance_refused_for_funds_holds_what_the_money_covers_as_the_last_grant():
    m = money(grant=60)
    st_ = decide(s.advance, m, 1, 55, available=20_000 + 2_000,
                 answers={"hold": R.INSUFFICIENT_FUNDS}, tries=1, cum=per_second())
    assert st_.answer == s.GrantAnswer(80, True, 20) and st_.state is CallState.LAST
    held = [t for t in st_.transfers if t.kind is K.HOLD]
    assert sum(t.amount for t in held) == (80 - 55) * 1_100    # released (55, 60] + 20 s more


def test_advance_with_no_money_left_keeps_the_current_grant_as_the_last():
    st_ = decide(s.advance, money(grant=60), 1, 55, available=0,
                 answers={"hold": R.INSUFFICIENT_FUNDS}, tries=1, cum=per_second())
    assert st_.answer == s.GrantAnswer(60, True, 1)
    held = [t for t in st_.transfers if t.kind is K.HOLD]
    assert sum(t.amount for t in held) == 5 * 1_100          # (55, 60] held again


@pytest.mark.parametrize("lost", [R.HOLD_EXPIRED, R.HOLD_ALREADY_VOIDED, R.HOLD_NOT_FOUND])
@pytest.mark.parametrize("available,collected,short", [
    (10**9, 60_500, 0),            # the account pays the stretch now
    (30_000, 30_000, 30_500),      # partly: the rest is a shortfall
    (0, 0, 60_500),                # nothing: all of it is a shortfall
])
def test_advance_over_a_lost_hold_collects_the_talk_and_books_the_rest_as_shortfall(
        lost, available, collected, short):
    m = money(grant=60)
    asked = decide(s.advance, m, 1, 55, answers={"resolve": lost}, tries=1, cum=per_second())
    assert asked.needs_balance
    # an expired hold is released first (the sweeper's ids), so the balance read counts it
    assert [(t.kind, t.hold, t.id) for t in asked.releases] == (
        [(K.EXPIRE, h, ledger.expiry_id(h)) for h in (m.hold_call, m.hold_tax)]
        if lost is R.HOLD_EXPIRED else [])
    st_ = decide(s.advance, m, 1, 55, available=available, answers={"resolve": lost}, tries=1,
                 cum=per_second())
    assert all(t.kind is K.SINGLE for t in st_.transfers)     # no post of the lost hold, no hold
    assert sum(t.amount for t in st_.transfers if t.debit == FAMILY) == collected
    assert sum(t.amount for t in st_.transfers if t.debit == BOOKS.shortfall) == short
    assert {t.credit for t in st_.transfers} <= {BOOKS.revenue, BOOKS.tax}
    assert st_.answer == s.GrantAnswer(60, True, 1) and st_.state is CallState.LAST
    assert (st_.row.hold_call, st_.row.hold_tax, st_.row.shortfall_micros) == (None, None, short)
    assert "hold_lost" in st_.notes and ("shortfall" in st_.notes) == (short > 0)


@pytest.mark.parametrize("conflict", sorted(s.CONFLICTS))
def test_advance_over_a_hold_resolved_elsewhere_moves_no_money_for_it_and_says_so(conflict):
    st_ = decide(s.advance, money(grant=60), 1, 60, answers={"resolve": conflict}, tries=1)
    assert all(t.kind is K.HOLD for t in st_.transfers)
    assert "ledger_conflict" in st_.notes


@pytest.mark.parametrize("state,period,answer", [
    (CallState.ENDED, 1, s.Refusal.ALREADY_ENDED),
    (CallState.AUTHORIZED, 1, s.Refusal.NOT_ACCEPTED),
    (CallState.TALKING, 3, s.Refusal.WRONG_PERIOD),
    (CallState.TALKING, 1, s.GrantAnswer(120, False, None)),   # a resend of period 1
    (CallState.LAST, 2, s.GrantAnswer(120, True, 60)),         # nothing more to grant
])
def test_an_advance_that_moves_nothing(state, period, answer):
    st_ = decide(s.advance, money(state, period=2, grant=120, posted=55), period, 115)
    assert st_.answer == answer and not st_.transfers and st_.row is None


def test_the_last_try_moves_no_new_hold():
    st_ = decide(s.advance, money(grant=60), 1, 55, available=10**9,
                 answers={"hold": R.INSUFFICIENT_FUNDS}, tries=s.STEP_TRIES_MAX - 1)
    assert [t.kind for t in st_.transfers] == [K.POST, K.POST]
    assert st_.answer.last and (st_.row.hold_call, st_.row.hold_tax) == (None, None)


@pytest.mark.parametrize("talk,posted,amounts", [
    (57, 0, [57_000, 5_700]),      # hung up inside the Continue lead: 57 s, not 60
    (125, 0, [60_000, 6_000]),     # never past the grant
    (10, 30, None),                # never less than already charged: void
])
def test_settle_posts_the_measured_talk_and_releases_the_rest(talk, posted, amounts):
    m = money(grant=60, posted=posted)
    st_ = decide(s.settle, m, talk, cum=per_second())
    if amounts is None:
        assert [t.kind for t in st_.transfers] == [K.VOID, K.VOID]
    else:
        assert [t.kind for t in st_.transfers] == [K.POST, K.POST]
        assert [t.amount for t in st_.transfers] == amounts
    assert st_.state is CallState.ENDED and st_.row.hold_call is None
    assert st_.answer.talk_seconds == max(posted, min(talk, 60))


def test_settle_of_a_never_accepted_call_costs_nothing():
    st_ = decide(s.settle, money(CallState.AUTHORIZED, 0, 0, 0, hold=False), 0)
    assert st_.answer == s.Settlement(0, Charge(0, 0), 0) and not st_.transfers
    assert st_.state is CallState.ENDED


def test_settle_without_an_open_hold_collects_the_talk_past_the_last_post():
    m = money(CallState.LAST, 2, grant=60, posted=55, hold=False)
    st_ = decide(s.settle, m, 58, available=10**9, cum=per_second())
    assert [(t.kind, t.debit, t.amount) for t in st_.transfers] == [
        (K.SINGLE, FAMILY, 3_000), (K.SINGLE, FAMILY, 300)]


def test_settle_of_an_expired_hold_on_an_empty_account_books_a_shortfall():
    m = money(grant=60, posted=0)
    st_ = decide(s.settle, m, 40, available=0, answers={"resolve": R.HOLD_EXPIRED}, tries=1,
                 cum=per_second())
    assert [(t.debit, t.credit, t.amount) for t in st_.transfers] == [
        (BOOKS.shortfall, BOOKS.revenue, 40_000), (BOOKS.shortfall, BOOKS.tax, 4_000)]
    assert st_.answer == s.Settlement(40, Charge(40_000, 4_000), 44_000)


def test_lose_charges_only_the_confirmed_talk():
    st_ = decide(s.lose, money(period=2, grant=120, posted=55))
    assert [t.kind for t in st_.transfers] == [K.VOID, K.VOID]
    assert st_.answer.talk_seconds == 55 and st_.state is CallState.ENDED


def test_settle_of_an_ended_call_is_refused_and_moves_nothing():
    st_ = decide(s.settle, money(CallState.ENDED), 30)
    assert st_.answer is s.Refusal.ALREADY_ENDED and not st_.transfers


def test_a_late_end_of_a_call_closed_as_lost_collects_the_measured_talk_past_the_close():
    m = dataclasses.replace(money(CallState.ENDED, 2, grant=120, posted=55, hold=False),
                            closed_lost=True)
    st_ = decide(s.settle, m, 100, cum=per_second())
    assert st_.needs_balance and not st_.transfers
    st_ = decide(s.settle, m, 100, available=30_000, cum=per_second())
    assert [(t.kind, t.debit, t.credit, t.amount) for t in st_.transfers] == [
        (K.SINGLE, FAMILY, BOOKS.revenue, 30_000),
        (K.SINGLE, BOOKS.shortfall, BOOKS.revenue, 15_000),
        (K.SINGLE, BOOKS.shortfall, BOOKS.tax, 4_500)]
    assert st_.state is CallState.ENDED and st_.row.posted_until == 100
    assert st_.answer == s.Settlement(100, Charge(100_000, 10_000), 19_500)
    assert "late_end" in st_.notes
    # a call the core ended itself, or one whose late End was settled, is ended for good
    for done in (money(CallState.ENDED, hold=False), dataclasses.replace(m, closed_lost=False)):
        assert decide(s.settle, done, 100, cum=per_second()).answer is s.Refusal.ALREADY_ENDED
    # the silence rule closing it again never moves anything
    assert decide(s.lose, m, cum=per_second()).answer is s.Refusal.ALREADY_ENDED


def test_a_free_call_moves_no_money_at_any_step():
    m = money(CallState.AUTHORIZED, 0, 0, 0, hold=False, account=None)
    free = lambda t: Charge(0, 0)  # noqa: E731
    a = decide(s.accept, m, cum=free)
    assert not a.transfers and a.answer == s.GrantAnswer(60, False, None)
    m = dataclasses.replace(m, state=CallState.TALKING, period=1, grant_until=60)
    c = decide(s.advance, m, 1, 55, cum=free)
    assert not c.transfers and c.answer.grant_until == 120
    e = decide(s.settle, dataclasses.replace(m, period=2, grant_until=120, posted_until=55), 100,
               cum=free)
    assert not e.transfers and e.answer.charge == Charge(0, 0)


# -- the steps driven against the ledger model ---------------------------------------------------

T0 = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.timezone.utc)


class ModelLedger:
    """A model ledger with a family account funded with `funds` and the house accounts."""

    def __init__(self, funds: int) -> None:
        self.model = Model()
        for a in (ledger.Account(FAMILY, "prepaid_phone"), ledger.Account("funding", "funding_clearing"),
                  ledger.Account(BOOKS.revenue, "revenue"), ledger.Account(BOOKS.tax, "tax_payable"),
                  ledger.Account(BOOKS.shortfall, "call_shortfall")):
            self.model.create_account(a)
        if funds:
            [r] = self.model.submit([ledger.Transfer(uuid.uuid4(), K.SINGLE, "funding", FAMILY,
                                                     funds)], T0)
            assert r.succeeded
        self.funds = funds

    def available(self) -> int:
        dp, dpo, cp, cpo = self.model.counters(FAMILY)
        return cpo - dp - dpo

    def carry_out(self, m: Money, fn, *args, cum, terms, at: dt.datetime):
        """What the core's _carry_out does, against the model."""
        answers: dict = {}
        available = None
        for tries in range(s.STEP_TRIES_MAX):
            st_ = fn(m, *args, cum, terms, BOOKS, available=available, answers=answers,
                     tries=tries)
            for t in st_.releases:
                self.model.submit([t], at)
            if st_.needs_balance:
                available = self.available()
                st_ = fn(m, *args, cum, terms, BOOKS, available=available, answers=answers,
                         tries=tries)
            if not st_.transfers:
                break
            refused = s.refusals(st_.transfers, self.model.submit(list(st_.transfers), at))
            if not refused:
                break
            answers.update(refused)
            available = None
        else:
            raise AssertionError(f"every try refused: {answers}")
        if st_.row is not None:
            r = st_.row
            m = dataclasses.replace(m, state=r.state, period=r.period, grant_until=r.grant_until,
                                    posted_until=r.posted_until, hold_call=r.hold_call,
                                    hold_tax=r.hold_tax, shortfall_micros=r.shortfall_micros)
        return m, st_


def pricing():
    return st.one_of(
        st.builds(per_minute, st.integers(0, 200_000), st.integers(0, 30), st.integers(0, 500_000)),
        st.builds(per_second, st.integers(0, 5_000), st.integers(0, 30)))


def simulate(cum, period, max_seconds, funds, hangup, lead, *, outage_at=None, outage=0,
             end_races_continue=False, resend=False):
    """One call as a worker runs it: Continue `lead` s before the grant ends (never before
    half-way), hang up at talk second `hangup` (or at the grant's end), End with the measured
    talk. An `outage` of that many seconds delays the step at talk second `outage_at`."""
    terms = s.Terms(period, 60, 30)
    books = ModelLedger(funds)
    m = Money(CID, CallState.AUTHORIZED, 0, 0, 0, max_seconds, FAMILY)
    delay = 0

    def wall(talk):
        return T0 + dt.timedelta(seconds=talk + delay)

    m, a = books.carry_out(m, s.accept, cum=cum, terms=terms, at=wall(0))
    if a.answer is s.Refusal.INSUFFICIENT_FUNDS:
        m, e = books.carry_out(m, s.settle, 0, cum=cum, terms=terms, at=wall(0))
        return books, e.answer, 0
    grant, previous, last, k = a.answer.grant_until, 0, a.answer.last, 1
    while not last:
        at = max(previous + (grant - previous + 1) // 2, grant - lead)
        if hangup <= at:
            break
        if outage_at is not None and at >= outage_at and not delay:
            delay = outage
        if end_races_continue and hangup < grant:
            break                   # End overtakes the Continue it raced
        m, c = books.carry_out(m, s.advance, k, at, cum=cum, terms=terms, at=wall(at))
        if resend:
            m, again = books.carry_out(m, s.advance, k, at, cum=cum, terms=terms, at=wall(at))
            assert again.answer == c.answer and not again.transfers
        previous, grant, last = grant, c.answer.grant_until, c.answer.last
        k += 1
    talk = min(hangup, grant)
    m, e = books.carry_out(m, s.settle, talk, cum=cum, terms=terms, at=wall(talk))
    if end_races_continue and not last and hangup < grant:
        # the raced Continue arrives after the End: refused, moves nothing
        m, late = books.carry_out(m, s.advance, k, hangup, cum=cum, terms=terms, at=wall(talk))
        assert late.answer is s.Refusal.ALREADY_ENDED and not late.transfers
    return books, e.answer, talk


def assert_books_balance(books: ModelLedger, settled: s.Settlement, cum, talk: int) -> None:
    model = books.model
    assert settled.talk_seconds == talk and settled.charge == cum(talk)
    family_paid = books.funds - books.available()
    rev, tax, short = (model.counters(a) for a in (BOOKS.revenue, BOOKS.tax, BOOKS.shortfall))
    # charged = price(talk): what revenue and tax received is the price of the measured talk,
    # paid by the family except what was booked as a shortfall (visible on its account).
    assert (rev[3], tax[3]) == (cum(talk).call_micros, cum(talk).tax_micros)
    assert family_paid + short[1] == cum(talk).total
    assert short[1] == settled.shortfall_micros
    # money conserved, and no hold outlives its call
    assert sum(a.cpo - a.dpo for a in model.state.accounts.values()) == 0
    assert model.open_holds() == [] and model.counters(FAMILY)[0] == 0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cum=pricing(), period=st.integers(1, 90), max_seconds=st.integers(1, 600),
       funds=st.integers(0, 3_000_000), hangup=st.integers(0, 700), lead=st.integers(0, 10),
       race=st.booleans(), resend=st.booleans())
def test_a_call_costs_the_price_of_its_measured_talk_for_every_hang_up_instant(
        cum, period, max_seconds, funds, hangup, lead, race, resend):
    books, settled, talk = simulate(cum, period, max_seconds, funds, hangup, lead,
                                    end_races_continue=race, resend=resend)
    assert_books_balance(books, settled, cum, talk)
    assert talk <= max_seconds and settled.shortfall_micros == 0   # no outage, no shortfall


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cum=pricing(), period=st.integers(5, 90), funds=st.integers(0, 3_000_000),
       hangup=st.integers(1, 400), outage_at=st.integers(0, 300), outage=st.integers(31, 400))
def test_an_outage_longer_than_hold_expiry_still_settles_with_every_charge_accounted(
        cum, period, funds, hangup, outage_at, outage):
    books, settled, talk = simulate(cum, period, 400, funds, hangup, 5, outage_at=outage_at,
                                    outage=outage)
    assert_books_balance(books, settled, cum, talk)


@pytest.mark.parametrize("hangup", range(50, 61))
def test_hanging_up_inside_the_continue_lead_bills_the_measured_seconds_raced_or_not(hangup):
    cum = per_second()
    bills = set()
    for race in (False, True):
        books, settled, talk = simulate(cum, 60, 900, 10**9, hangup, 5, end_races_continue=race)
        assert_books_balance(books, settled, cum, talk)
        bills.add((talk, books.funds - books.available()))
    assert bills == {(hangup, cum(hangup).total)}


def test_a_charge_on_a_part_that_was_never_held_is_collected_not_raised():
    # A pricing whose tax is not non-decreasing: nothing was held for tax, yet 30 s owe some.
    odd = lambda t: Charge(t * 1_000, 100 if 0 < t < 60 else 0)  # noqa: E731
    m = dataclasses.replace(money(grant=60), hold_tax=None)
    st_ = decide(s.settle, m, 30, available=10**9, cum=odd)
    assert [(t.kind, t.amount) for t in st_.transfers] == [
        (K.VOID, None), (K.SINGLE, 30_000), (K.SINGLE, 100)]
    assert st_.transfers[0].hold == m.hold_call and "hold_short" in st_.notes
    assert st_.answer == s.Settlement(30, Charge(30_000, 100), 0)
