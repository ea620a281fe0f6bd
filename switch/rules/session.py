"""A call's billing session: its states, the one transition function, and the charging steps.

Charging uses one pricing definition: `cum(t)` is the price of the whole call had it lasted `t`
talk seconds (call charge and tax, in micro-units, from rating, under the tariff version pinned
when the call was authorized). The charge of any stretch of talk is a difference of `cum`, so what
the live loop collects step by step adds up, to the micro-unit, to the price of the call's talk.
`cum` must be non-decreasing in t.

Periods are 1-based; grants end at boundary(k) = min(k * period_seconds, max_seconds), or earlier
when the money runs out (that grant is the last). The steps, each a pure function returning a
`Step` (new state, one linked chain of transfers with their ids, the row, the answer):

- `accept`: hold (0, g] for the first grant; g shorter when the account covers less; not one
  second: refused (InsufficientFunds).
- `advance` (Continue, sent a lead before the grant ends, with the talk measured so far, t): post
  (posted_until, t] out of the open hold and hold (t, g'] in the same chain, g' the next boundary or
  as far as the money goes past the current grant (never less than the current grant: what the
  post released is held again). A Continue is never charged ahead of the talk.
- `settle` (End, with the measured talk T; the call costs cum(T)) and `lose` (worker silent: T is
  the last talk it confirmed): post (posted_until, T], release the rest.
- a late End (the worker's End of a call the core closed as lost: the core, not the worker, was
  absent, or the End waited in the worker's queue): the talk it measured past what was charged,
  up to the grant the worker held, is collected from the account (the shortfall rule for what it
  cannot pay now), once: the call then counts as settled by its worker.

Ledger answers (rules; the table test in tests/switch/test_charging_steps.py has one row each):
- insufficient funds for a hold: plan again on the balance read, under a new id (the ledger
  remembers a refused id forever).
- the open hold's post refused as hold_expired, hold_already_voided, hold_not_found, ...: the hold
  no longer holds the money; an expired one is released first, then the stretch is collected from
  the account as a single transfer, and what the account cannot pay now is debited to the house
  account `call_shortfall` (credited to revenue and tax as usual): the shortfall rule. No new hold
  follows: the grant the worker holds is its last.
- hold_already_posted or exists_with_different_*: the hold was resolved by another transfer of the
  call; nothing more is moved for that stretch, and the step notes `ledger_conflict`.
- after STEP_TRIES_MAX - 1 refused tries, the last try moves no new hold and books what it cannot
  collect as shortfall, so it cannot be refused for funds.
"""
from __future__ import annotations

import enum
import functools
import hashlib
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import ledger
from ivr.flows.machine import IllegalMove
from ledger.results import TransferResult

__all__ = ["CallState", "Event", "IllegalTransition", "step", "Charge", "Cum", "boundary",
           "Grant", "plan_grant", "charge_between",
           "Books", "Terms", "Money", "Row", "Refusal", "GrantAnswer", "Settlement", "Step",
           "accept", "advance", "settle", "lose", "refusals", "transfer_id", "CALL_NAMESPACE",
           "STEP_TRIES_MAX", "CONFLICTS"]


class CallState(enum.Enum):
    AUTHORIZED = "authorized"   # allowed; the called party has not accepted (no money held)
    TALKING = "talking"         # accepted; a period is held and more may follow
    LAST = "last"               # the grant held now is the final one
    ENDED = "ended"             # settled and the CDR written; terminal


class Event(enum.Enum):
    ACCEPT = "accept"
    CONTINUE = "continue"           # a period ended, more grant is possible
    CONTINUE_LAST = "continue_last" # a period ended and the next grant is the final one
    ACCEPT_LAST = "accept_last"     # accepted, and the first grant is already the final one
    END = "end"                     # the worker reported the end
    LOST = "lost"                   # the worker went silent; the core closes the call
    LATE_END = "late_end"           # the worker's End, after the core closed the call as lost


class IllegalTransition(IllegalMove):
    def __init__(self, state: CallState, event: Event) -> None:
        super().__init__("call session", state, event,
                         f"{event.value} is not allowed in state {state.value}")


_MOVES: dict[tuple[CallState, Event], CallState] = {
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


def step(state: CallState, event: Event) -> CallState:
    try:
        return _MOVES[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


class Charge(NamedTuple):
    """Call and tax micro-units. A named tuple of ints: cheap to build, and the collector stops
    tracking it, so a call's table of prices costs the garbage collector nothing."""
    call_micros: int
    tax_micros: int

    @property
    def total(self) -> int:
        return self.call_micros + self.tax_micros

    def __sub__(self, other: "Charge") -> "Charge":
        return Charge(self[0] - other[0], self[1] - other[1])


Cum = Callable[[int], Charge]


def boundary(k: int, period_seconds: int, max_seconds: int) -> int:
    return min(k * period_seconds, max_seconds)


def charge_between(cum: Cum, a: int, b: int) -> Charge:
    hi, lo = cum(b), cum(a)
    call, tax = hi[0] - lo[0], hi[1] - lo[1]
    if call < 0 or tax < 0:
        raise ValueError(f"price decreased between {a}s and {b}s: the pricing function must be "
                         "non-decreasing in duration")
    return Charge(call, tax)


@dataclass(frozen=True)
class Grant:
    period: int
    start: int          # talk seconds already covered before this period
    until: int          # grant_until: talk seconds covered once this period's hold is in place
    hold: Charge        # what to hold for (start, until]
    last: bool


def plan_grant(cum: Cum, k: int, period_seconds: int, max_seconds: int,
               available_micros: int | None) -> Grant | None:
    """The grant for period k, given what the account can still pay (None: free call).

    Returns None when not one more second is affordable. A period cut short by money, or one that
    reaches max_seconds, is the last.
    """
    start = boundary(k - 1, period_seconds, max_seconds)
    end = boundary(k, period_seconds, max_seconds)
    if end <= start:
        return None
    full = charge_between(cum, start, end)
    if available_micros is None or full.total <= available_micros:
        return Grant(k, start, end, full, last=end >= max_seconds)
    # Largest t in (start, end) whose increment the money covers: cum is monotone, so bisect.
    lo, hi = start, end          # invariant: lo affordable, hi not
    base = cum(start)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (cum(mid) - base).total <= available_micros:
            lo = mid
        else:
            hi = mid
    if lo == start:
        return None
    return Grant(k, start, lo, cum(lo) - base, last=True)

# -- the charging steps ----------------------------------------------------------------------
#
# Money of a call, by its row: `posted_until` talk seconds are charged (posted or collected);
# one hold (a call part to revenue, a tax part to tax, each only when positive) covers
# (posted_until, grant_until], or there is no open hold (`hold_call` and `hold_tax` both None).
# Each step posts what the worker MEASURED (never a whole period ahead), so a call costs
# cum(talk) for every hang-up instant, and the stretch it releases is held again by the next hold
# in the same linked chain, so the grant the worker holds is never left unfunded.
#
# A step is decided from the row, the talk measured, `cum` (the pinned tariff's totals), the
# funding account's available balance (None: not read; the optimistic first try) and the
# ledger's answers to earlier tries of the same step (`answers`). The core submits
# `Step.transfers` as ONE linked chain (all or nothing), and on a refusal asks again with the
# answers; the try number goes into new ids, because the ledger remembers a refused id forever.

CALL_NAMESPACE = uuid.UUID("3f0e4c1a-7d5b-4a51-8d0e-6c1b2a9f7e10")
STEP_TRIES_MAX = 4      # the last try moves no new hold and books what it cannot collect


def transfer_id(call_id: uuid.UUID, period: int, purpose: str) -> uuid.UUID:
    """uuid5(CALL_NAMESPACE, "call:period:purpose")."""
    return _uuid5(f"{call_id}:{period}:{purpose}")


_NAMESPACE_BYTES = CALL_NAMESPACE.bytes
_UUID5_KEEP = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))    # all but version, variant
_UUID5_MARK = (5 << 76) | (0x8000 << 48)                                 # version 5, RFC 4122
_new_uuid, _set_slot, _SAFE_UNKNOWN = object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def _uuid5(name: str) -> uuid.UUID:
    """uuid.uuid5(CALL_NAMESPACE, name), the same bits built without uuid5's generic checks
    (ids are made several times per Continue; a test compares the two on arbitrary names)."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()
    u = _new_uuid(uuid.UUID)
    _set_slot(u, "int", (int.from_bytes(digest[:16]) & _UUID5_KEEP) | _UUID5_MARK)
    _set_slot(u, "is_safe", _SAFE_UNKNOWN)
    return u


@dataclass(frozen=True)
class Books:
    """The house accounts a call's money goes to. `shortfall` is debited for charges that can no
    longer be collected (a hold expired during an outage and the account cannot pay now): its
    debit balance is the written-off call money, on statements like any account."""
    revenue: str = "revenue"
    tax: str = "tax_payable"
    shortfall: str = "call_shortfall"


@dataclass(frozen=True)
class Terms:
    period_seconds: int = 60
    warning_seconds: int = 60
    hold_slack_seconds: int = 30    # a hold outlives the end of the talk it covers by this much


@dataclass(frozen=True)
class Money:
    """What the steps read from the call row."""
    call_id: uuid.UUID
    state: CallState
    period: int
    grant_until: int
    posted_until: int
    max_seconds: int
    account: str | None            # the funding account; None for a free (privileged) call
    hold_call: uuid.UUID | None = None
    hold_tax: uuid.UUID | None = None
    shortfall_micros: int = 0
    # Ended by the silence rule (charged only what the worker had confirmed) and no End of the
    # worker heard since: its late End may still charge the talk it measured, once.
    closed_lost: bool = False

    @functools.cached_property
    def holds(self) -> dict[str, uuid.UUID]:
        """The open hold's parts by name (read often by a step: worked out once; do not
        mutate it)."""
        out = {}
        if self.hold_call is not None:
            out["call"] = self.hold_call
        if self.hold_tax is not None:
            out["tax"] = self.hold_tax
        return out

    @functools.cached_property
    def ref(self) -> str:
        """The call id as its transfers' ref and as the head of their ids' names."""
        return str(self.call_id)


@dataclass(frozen=True)
class Row:
    """The call row after the step (written only if the chain applied)."""
    state: CallState
    period: int
    grant_until: int
    posted_until: int
    last_grant: bool
    hold_call: uuid.UUID | None
    hold_tax: uuid.UUID | None
    shortfall_micros: int


class Refusal(enum.Enum):
    """A request the step answers with a declared error, moving nothing."""
    ALREADY_ENDED = "already_ended"          # Accept/Continue of an ended call
    NOT_ACCEPTED = "not_accepted"            # Continue of a call never accepted
    WRONG_PERIOD = "wrong_period"            # Continue of a period the call is not in yet
    INSUFFICIENT_FUNDS = "insufficient_funds"  # Accept: not one second can be held


@dataclass(frozen=True)
class GrantAnswer:
    grant_until: int
    last: bool
    warn_at: int | None


@dataclass(frozen=True)
class Settlement:
    talk_seconds: int          # measured, clamped to [posted_until, grant_until]
    charge: Charge             # cum(talk): what the call costs
    shortfall_micros: int      # of all the call's charges, what was booked as a shortfall


@dataclass(frozen=True)
class Step:
    """One decision: the new state, one linked chain of transfers, the row and the answer.
    `needs_balance`: ask again with the funding account's available balance (nothing else set).
    `releases`: expires of the call's own expired hold, each on its own (the sweeper's ids, so a
    race with the sweeper answers `exists`), submitted before the chain and before the balance is
    read: releasing money already past its expiry is never half of anything.
    `notes`: outcomes worth a log line and a metric (hold_lost, shortfall, ledger_conflict)."""
    state: CallState
    transfers: tuple[ledger.Transfer, ...] = ()
    row: Row | None = None
    answer: GrantAnswer | Settlement | Refusal | None = None
    needs_balance: bool = False
    notes: tuple[str, ...] = ()
    releases: tuple[ledger.Transfer, ...] = ()


# A post or void refused with one of these found the hold resolved by a transfer of the same call
# under another content: the money of that stretch already moved, so it is not collected again.
CONFLICTS = frozenset({
    TransferResult.HOLD_ALREADY_POSTED, TransferResult.EXISTS_WITH_DIFFERENT_KIND,
    TransferResult.EXISTS_WITH_DIFFERENT_FLAGS, TransferResult.EXISTS_WITH_DIFFERENT_HOLD,
    TransferResult.EXISTS_WITH_DIFFERENT_EXPIRY, TransferResult.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT,
    TransferResult.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT, TransferResult.EXISTS_WITH_DIFFERENT_AMOUNT,
    TransferResult.EXISTS_WITH_DIFFERENT_CODE, TransferResult.EXISTS_WITH_DIFFERENT_REF})
# Every other refusal of a post or void (hold_expired, hold_already_voided, hold_not_found, ...)
# means the hold no longer holds the money: the stretch is collected from the account instead.
_BENIGN = frozenset({TransferResult.OK, TransferResult.EXISTS, TransferResult.LINKED_EVENT_FAILED,
                     TransferResult.LINKED_EVENT_CHAIN_OPEN})

# The ledger's refusals of earlier tries of this step, by what the refused transfer was for:
# "hold" (a new hold), "resolve" (the post or void of the open hold), "collect" (a single).
Answers = Mapping[str, TransferResult]


def purpose(t: ledger.Transfer) -> str:
    if t.kind is ledger.TransferKind.HOLD:
        return "hold"
    if t.kind in (ledger.TransferKind.POST, ledger.TransferKind.VOID):
        return "resolve"
    return "collect"


def refusals(transfers: Sequence[ledger.Transfer], results: Sequence[ledger.Result | int]
             ) -> dict[str, TransferResult]:
    """The answers of one try (ledger Results or bare result codes), by purpose; a linked
    chain's innocent members are left out."""
    out: dict[str, TransferResult] = {}
    for t, r in zip(transfers, results):
        code = TransferResult(r.result if isinstance(r, ledger.Result) else r)
        if code not in _BENIGN:
            out.setdefault(purpose(t), code)
    return out


def accept(m: Money, cum: Cum, terms: Terms, books: Books, *, available: int | None,
           answers: Answers, tries: int) -> Step:
    """The called party accepted: hold (0, g] for the first period, or less if the account
    covers less (a shorter, last grant under a new id); not one second: InsufficientFunds."""
    if m.state is CallState.ENDED:
        return Step(m.state, answer=Refusal.ALREADY_ENDED)
    if m.state is not CallState.AUTHORIZED:
        return Step(m.state, answer=_grant_answer(m.grant_until, m.state is CallState.LAST, terms))
    refused_hold = _refused(answers, "hold")
    if refused_hold and available is None:
        return Step(m.state, needs_balance=True)
    full = boundary(1, terms.period_seconds, m.max_seconds)
    if tries >= STEP_TRIES_MAX - 1 or _refused(answers, "hold", other_than_funds=True):
        until = 0
    else:
        until = _extend(cum, 0, full, available if refused_hold else None)
    if until <= 0:
        return Step(m.state, answer=Refusal.INSUFFICIENT_FUNDS)
    holds = _holds(m, 1, 0, until, cum, terms, books, tries)
    last = until < full or until >= m.max_seconds
    new = step(m.state, Event.ACCEPT_LAST if last else Event.ACCEPT)
    row = Row(new, 1, until, 0, last, *_hold_ids(holds), m.shortfall_micros)
    return Step(new, _chain(holds), row, _grant_answer(until, last, terms))


def advance(m: Money, period: int, talk: int, cum: Cum, terms: Terms, books: Books, *,
            available: int | None, answers: Answers, tries: int) -> Step:
    """Continue at the end of `period`: charge the talk measured so far out of the open hold,
    and hold from there to the next period's end (or as far as the money goes, or only to the
    current grant: then it is the last)."""
    if m.state is CallState.ENDED:
        return Step(m.state, answer=Refusal.ALREADY_ENDED)
    if m.state is CallState.AUTHORIZED:
        return Step(m.state, answer=Refusal.NOT_ACCEPTED)
    if period > m.period:
        return Step(m.state, answer=Refusal.WRONG_PERIOD)
    if period < m.period or m.state is CallState.LAST:
        return Step(m.state, answer=_grant_answer(m.grant_until, m.state is CallState.LAST, terms))
    t = _clamp(talk, m)
    charged, notes, balance_needed = _charge(m, t, cum, books, available, answers, tries)
    if balance_needed:
        return Step(m.state, needs_balance=True, releases=charged.releases)
    refused_hold = _refused(answers, "hold")
    if refused_hold and available is None:
        return Step(m.state, needs_balance=True)
    k = m.period + 1
    full = boundary(k, terms.period_seconds, m.max_seconds)
    hold_usable = not _hold_lost(m, answers) and bool(m.holds or _held(cum, m).total == 0)
    if not hold_usable or tries >= STEP_TRIES_MAX - 1 or _refused(answers, "hold",
                                                                  other_than_funds=True):
        # No new hold: the worker keeps the grant it has and ends at it. What it talks past
        # `t` is collected at End (there is no hold to post from).
        until, holds = m.grant_until, []
        notes += ("no_new_hold",) if hold_usable else ()
    else:
        # The released stretch (t, grant_until] is held again from the money the post
        # released; only the extension past grant_until needs new money.
        until = _extend(cum, m.grant_until, full, available if refused_hold else None)
        holds = _holds(m, k, t, until, cum, terms, books, tries)
    last = until < full or until >= m.max_seconds or until == m.grant_until
    new = step(m.state, Event.CONTINUE_LAST if last else Event.CONTINUE)
    hold_call, hold_tax = _hold_ids(holds)
    row = Row(new, k, until, t, last, hold_call, hold_tax,
              m.shortfall_micros + charged.shortfall.total)
    return Step(new, _chain(charged.transfers + holds), row, _grant_answer(until, last, terms),
                notes=notes, releases=charged.releases)


def settle(m: Money, talk: int | None, cum: Cum, terms: Terms, books: Books, *,
           available: int | None, answers: Answers, tries: int) -> Step:
    """End (talk measured by the worker) or lose (talk None: the worker went silent, so only
    what it confirmed, `posted_until`, is charged): charge cum(talk) in all, release the rest.
    The End of a call closed as lost charges its measured talk past the close (a late End)."""
    if m.state is CallState.ENDED and not (m.closed_lost and talk is not None):
        return Step(m.state, answer=Refusal.ALREADY_ENDED)
    event = (Event.LATE_END if m.state is CallState.ENDED else
             Event.LOST if talk is None else Event.END)
    new = step(m.state, event)
    if m.state is CallState.AUTHORIZED:
        row = Row(new, m.period, 0, 0, False, None, None, m.shortfall_micros)
        return Step(new, (), row, Settlement(0, Charge(0, 0), m.shortfall_micros))
    t = _clamp(m.posted_until if talk is None else talk, m)
    charged, notes, balance_needed = _charge(m, t, cum, books, available, answers, tries)
    if balance_needed:
        return Step(m.state, needs_balance=True, releases=charged.releases)
    shortfall = m.shortfall_micros + charged.shortfall.total
    row = Row(new, m.period, m.grant_until, t, m.state is CallState.LAST, None, None, shortfall)
    if event is Event.LATE_END:
        notes += ("late_end",)
    return Step(new, _chain(charged.transfers), row, Settlement(t, cum(t), shortfall),
                notes=notes, releases=charged.releases)


def lose(m: Money, cum: Cum, terms: Terms, books: Books, *, available: int | None,
         answers: Answers, tries: int) -> Step:
    """The worker went silent: settle on what it confirmed."""
    return settle(m, None, cum, terms, books, available=available, answers=answers, tries=tries)


# -- helpers of the steps ------------------------------------------------------------------------

_HOLD, _POST, _VOID = ledger.TransferKind.HOLD, ledger.TransferKind.POST, ledger.TransferKind.VOID
_CALL_CHARGE, _TAX = ledger.TransferCode.CALL_CHARGE, ledger.TransferCode.TAX
_NOTHING = Charge(0, 0)

@dataclass(frozen=True)
class _Charged:
    transfers: list[ledger.Transfer]
    shortfall: Charge
    releases: tuple[ledger.Transfer, ...] = ()


def _clamp(talk: int, m: Money) -> int:
    # Never charge past the grant, nor give back what was already charged.
    return max(m.posted_until, min(talk, m.grant_until))


def _held(cum: Cum, m: Money) -> Charge:
    return charge_between(cum, m.posted_until, m.grant_until)


def _hold_lost(m: Money, answers: Answers) -> bool:
    """Did the ledger say the open hold no longer holds its money (hold_expired, voided, ...)?"""
    r = answers.get("resolve")
    return bool(m.holds) and r is not None and r not in _BENIGN and r not in CONFLICTS


def _conflicted(m: Money, answers: Answers) -> bool:
    return bool(m.holds) and answers.get("resolve") in CONFLICTS


def _charge(m: Money, t: int, cum: Cum, books: Books, available: int | None, answers: Answers,
            tries: int) -> tuple[_Charged, tuple[str, ...], bool]:
    """Charge (posted_until, t] and release the rest of the open hold: post/void the hold, or,
    when there is none or the ledger said it is gone, collect from the account (as much as it
    has, the rest to the shortfall account). Returns (charged, notes, balance needed)."""
    used = charge_between(cum, m.posted_until, t)
    if m.holds and _conflicted(m, answers):
        return _Charged([], Charge(0, 0)), ("ledger_conflict",), False
    # A part charged that has no hold cannot be posted (a tariff whose parts are not each
    # non-decreasing): release what is held and collect the stretch instead.
    holds = m.holds
    uncovered = ((used.call_micros > 0 and "call" not in holds)
                 or (used.tax_micros > 0 and "tax" not in holds))
    pre: list[ledger.Transfer] = []
    if m.holds and not _hold_lost(m, answers) and uncovered:
        pre = [ledger.Transfer(id=transfer_id(m.call_id, m.period, f"void-{part}:{hold}"),
                               kind=ledger.TransferKind.VOID, hold=hold, ref=str(m.call_id),
                               linked=True)
               for part, hold in m.holds.items()]
    elif m.holds and not _hold_lost(m, answers):
        out = []
        ref = m.ref
        for part, amount in (("call", used.call_micros), ("tax", used.tax_micros)):
            hold = holds.get(part)
            if hold is None:
                continue
            if amount > 0:
                out.append(ledger.Transfer(
                    _uuid5(f"{ref}:{m.period}:post-{part}:{hold}"), _POST, hold=hold,
                    amount=amount, ref=ref, linked=True))
            else:
                out.append(ledger.Transfer(
                    _uuid5(f"{ref}:{m.period}:void-{part}:{hold}"), _VOID, hold=hold, ref=ref,
                    linked=True))
        return _Charged(out, _NOTHING), (), False
    notes: tuple[str, ...] = (
        ("hold_lost",) if m.holds and not pre else (("hold_short",) if pre else ()))
    releases = _releases(m, answers)
    if used.total == 0:
        return _Charged(pre, Charge(0, 0), releases), notes, False
    collect_refused = _refused(answers, "collect")
    last_try = tries >= STEP_TRIES_MAX - 1
    if available is None and not last_try:
        return _Charged([], Charge(0, 0), releases), notes, True
    if pre:     # the voids give the held money back before it is collected
        available = (available or 0) + _held(cum, m).total
    can = 0 if last_try or m.account is None else max(0, min(available or 0, used.total))
    from_call = min(used.call_micros, can)
    from_tax = min(used.tax_micros, can - from_call)
    short = Charge(used.call_micros - from_call, used.tax_micros - from_tax)
    out = list(pre)
    tag = f"{m.posted_until}-{t}" + (f"#{tries}" if collect_refused or tries else "")
    for part, credit, code, mine, theirs in (
            ("call", books.revenue, ledger.TransferCode.CALL_CHARGE, from_call, short.call_micros),
            ("tax", books.tax, ledger.TransferCode.TAX, from_tax, short.tax_micros)):
        if mine > 0:
            out.append(ledger.Transfer(
                id=transfer_id(m.call_id, m.period, f"collect-{part}:{tag}"),
                kind=ledger.TransferKind.SINGLE, debit=m.account, credit=credit, amount=mine,
                code=code, ref=str(m.call_id), linked=True))
        if theirs > 0:
            out.append(ledger.Transfer(
                id=transfer_id(m.call_id, m.period, f"shortfall-{part}:{tag}"),
                kind=ledger.TransferKind.SINGLE, debit=books.shortfall, credit=credit,
                amount=theirs, code=code, ref=str(m.call_id), linked=True))
    if short.total:
        notes += ("shortfall",)
    return _Charged(out, short), notes, False


def _releases(m: Money, answers: Answers) -> tuple[ledger.Transfer, ...]:
    if answers.get("resolve") is not TransferResult.HOLD_EXPIRED:
        return ()
    return tuple(ledger.Transfer(ledger.expiry_id(h), ledger.TransferKind.EXPIRE, hold=h)
                 for h in m.holds.values())


def _refused(answers: Answers, what: str, *, other_than_funds: bool = False) -> bool:
    """Did the ledger refuse this step's `what` ("hold", "collect") in an earlier try?"""
    r = answers.get(what)
    if r is None or r in _BENIGN:
        return False
    return not (other_than_funds and r is TransferResult.INSUFFICIENT_FUNDS)


def _extend(cum: Cum, start: int, end: int, available: int | None) -> int:
    """The furthest u in [start, end] whose price past `start` the money covers (None: all)."""
    if end <= start or available is None:
        return max(start, end)
    base = cum(start)
    if (cum(end) - base).total <= available:
        return end
    lo, hi = start, end          # invariant: lo affordable, hi not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (cum(mid) - base).total <= available:
            lo = mid
        else:
            hi = mid
    return lo


def _holds(m: Money, k: int, start: int, until: int, cum: Cum, terms: Terms, books: Books,
           tries: int) -> list[ledger.Transfer]:
    """Hold (start, until] as period k: one transfer per positive part. The id names the
    stretch and the try, so a shorter hold after a refusal is a new transfer."""
    if m.account is None:
        return []
    amount = charge_between(cum, start, until)
    # The hold must outlive the talk it covers (from now, at talk second `start`) by the slack.
    expires = (until - start) + terms.hold_slack_seconds
    tag = f"{start}-{until}" + (f"#{tries}" if tries else "")
    out = []
    if amount.call_micros > 0:
        out.append(ledger.Transfer(
            _uuid5(f"{m.ref}:{k}:hold-call:{tag}"), _HOLD, m.account, books.revenue,
            amount.call_micros, expires_in=expires, code=_CALL_CHARGE, ref=m.ref, linked=True))
    if amount.tax_micros > 0:
        out.append(ledger.Transfer(
            _uuid5(f"{m.ref}:{k}:hold-tax:{tag}"), _HOLD, m.account, books.tax,
            amount.tax_micros, expires_in=expires, code=_TAX, ref=m.ref, linked=True))
    return out


def _hold_ids(holds: list[ledger.Transfer]) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    by = {t.code: t.id for t in holds}
    return by.get(ledger.TransferCode.CALL_CHARGE), by.get(ledger.TransferCode.TAX)


def _chain(transfers: list[ledger.Transfer]) -> tuple[ledger.Transfer, ...]:
    """Link every transfer to the next: the ledger applies the step whole or not at all. The
    steps make their transfers linked; only the last is copied with its flag cleared (the copy
    keeps the checks its original passed)."""
    if not transfers:
        return ()
    *head, tail = transfers
    return (*(t if t.linked else t.relinked(True) for t in head), tail.relinked(False))


def _grant_answer(until: int, last: bool, terms: Terms) -> GrantAnswer:
    if not last:
        return GrantAnswer(until, False, None)
    # The warning plays `warning_seconds` before the end, or at once (second 1) when the last
    # grant is shorter than that; the worker plays it only strictly inside (0, until).
    at: int | None = until - terms.warning_seconds
    if at is not None and at <= 0:
        at = 1 if until > 1 else None
    return GrantAnswer(until, True, at)
