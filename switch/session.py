"""A call's billing session: its states, the one transition function, and the money of each step.

Charging uses one pricing definition: `cum(t)` is the price of the whole call had it lasted `t`
talk seconds (call charge and tax, in micro-units, from rating). The charge of any stretch of talk
is a difference of `cum`, so what the live loop collects period by period adds up, to the
micro-unit, to what bulk re-rating prices for the finished call. `cum` must be non-decreasing in t.

Periods are 1-based. Period k covers talk seconds (boundary(k-1), boundary(k)], where boundary(k)
= min(k * period_seconds, max_seconds). Its money is held when it starts and posted when it ends;
the hold is cut short when the account cannot cover the whole period, and that grant is the last.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

__all__ = ["CallState", "Event", "IllegalTransition", "step", "Charge", "Cum", "boundary",
           "Grant", "plan_grant", "charge_between"]


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


class IllegalTransition(Exception):
    def __init__(self, state: CallState, event: Event) -> None:
        super().__init__(f"{event.value} is not allowed in state {state.value}")
        self.state, self.event = state, event


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
}


def step(state: CallState, event: Event) -> CallState:
    try:
        return _MOVES[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


@dataclass(frozen=True)
class Charge:
    call_micros: int
    tax_micros: int

    @property
    def total(self) -> int:
        return self.call_micros + self.tax_micros

    def __sub__(self, other: "Charge") -> "Charge":
        return Charge(self.call_micros - other.call_micros, self.tax_micros - other.tax_micros)


Cum = Callable[[int], Charge]


def boundary(k: int, period_seconds: int, max_seconds: int) -> int:
    return min(k * period_seconds, max_seconds)


def charge_between(cum: Cum, a: int, b: int) -> Charge:
    d = cum(b) - cum(a)
    if d.call_micros < 0 or d.tax_micros < 0:
        raise ValueError(f"price decreased between {a}s and {b}s: the pricing function must be "
                         "non-decreasing in duration")
    return d


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
