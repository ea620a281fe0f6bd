"""Talk time on the worker: what the grant allows, when to ask for more, warn and end (pure).

Times are talk seconds since the bridge, as on the wire (switch.wire.protocol). The worker never keeps
the legs bridged past `until` of the grant it holds; the core extends it through Continue, sent
`continue_lead` seconds before the grant runs out so the answer is back in time. Without an answer
by then the grant it holds is the last one (fail safe).

States (`TalkState`), moved only by `next_state`:

    GRANTED --continue_sent--> CONTINUING --granted--> GRANTED | LAST
    GRANTED | CONTINUING --core_lost--> CORE_LOST
    any live state --deadline | hangup--> ENDED
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ivr.flows.machine import IllegalMove

__all__ = ["TalkState", "TalkEvent", "IllegalTalkMove", "next_state", "Grant", "TalkPlan",
           "plan", "deadline_disposition", "talk_seconds"]


class TalkState(enum.Enum):
    GRANTED = "granted"        # bridged, more grant may come
    CONTINUING = "continuing"  # Continue sent, its answer awaited
    LAST = "last"              # the core said this grant is the last: warn, then end
    CORE_LOST = "core_lost"    # the core cannot be reached: finish this grant, then end
    ENDED = "ended"


class TalkEvent(enum.Enum):
    CONTINUE_SENT = "continue_sent"
    GRANTED = "granted"            # a Continue answer with more grant, not the last
    GRANTED_LAST = "granted_last"  # a Continue answer whose grant is the last
    CORE_LOST = "core_lost"        # link down, a failed Continue, or no answer in time
    DEADLINE = "deadline"          # the grant ran out
    HANGUP = "hangup"              # a leg hung up, or the call was terminated


class IllegalTalkMove(IllegalMove):
    def __init__(self, state: TalkState, event: TalkEvent) -> None:
        super().__init__("talk grant", state, event,
                         f"{event.value} is not allowed in talk state {state.value}")


_S, _E = TalkState, TalkEvent
_MOVES = {
    (_S.GRANTED, _E.CONTINUE_SENT): _S.CONTINUING,
    (_S.CONTINUING, _E.GRANTED): _S.GRANTED,
    (_S.CONTINUING, _E.GRANTED_LAST): _S.LAST,
    (_S.GRANTED, _E.CORE_LOST): _S.CORE_LOST,
    (_S.CONTINUING, _E.CORE_LOST): _S.CORE_LOST,
    (_S.LAST, _E.CORE_LOST): _S.LAST,          # nothing more was coming anyway
    (_S.CORE_LOST, _E.CORE_LOST): _S.CORE_LOST,
}
for _s in (_S.GRANTED, _S.CONTINUING, _S.LAST, _S.CORE_LOST):
    _MOVES[(_s, _E.DEADLINE)] = _S.ENDED
    _MOVES[(_s, _E.HANGUP)] = _S.ENDED


def next_state(state: TalkState, event: TalkEvent) -> TalkState:
    try:
        return _MOVES[(state, event)]
    except KeyError:
        raise IllegalTalkMove(state, event) from None


@dataclass(frozen=True)
class Grant:
    """What an Accept or Continue answer allows: bridge up to `until`; `last` says no more."""
    until: int
    last: bool
    warn_at: int | None = None

    def __post_init__(self) -> None:
        if self.until < 0:
            raise ValueError(f"grant_until must be >= 0, got {self.until}")


@dataclass(frozen=True)
class TalkPlan:
    """Talk seconds at which the worker acts next; None: nothing of that kind to do."""
    continue_at: float | None
    warn_at: float | None
    end_at: int


def plan(state: TalkState, grant: Grant, *, previous_until: int, continue_lead: float,
         warning_seconds: int, warned: bool) -> TalkPlan:
    """When to send Continue, play the warning and hang up, under `grant` in `state`.

    Continue goes `continue_lead` before the end, but never earlier than half-way through the
    period (short periods in tests); the warning is the core's `warn_at`, else `until -
    warning_seconds` when that is > 0, and only on the last grant.
    """
    continue_at = None
    if state is TalkState.GRANTED and not grant.last:
        period = grant.until - previous_until
        continue_at = max(previous_until + period / 2, grant.until - continue_lead)
    warn_at = None
    if state is TalkState.LAST and not warned:
        at = grant.warn_at if grant.warn_at is not None else grant.until - warning_seconds
        if 0 < at < grant.until:
            warn_at = at
    return TalkPlan(continue_at, warn_at, grant.until)


def deadline_disposition(state: TalkState) -> str:
    """How a call that reached the end of its grant in `state` is reported (protocol.DISPOSITIONS)."""
    return "grant_exhausted" if state is TalkState.LAST else "core_unreachable"


def talk_seconds(elapsed: float, grant_until: int) -> int:
    """Whole talk seconds to report: a started second counts, never more than was granted."""
    whole = int(elapsed)
    if elapsed - whole > 1e-3:
        whole += 1
    return max(0, min(whole, grant_until))
