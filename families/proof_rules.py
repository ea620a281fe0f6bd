"""Proof of a number by a call that speaks a one-time code: the rules, pure (no I/O).

A holder who claimed a number asks the switch to call it; the call speaks a short code; the holder
enters it; the number is proven. The switch must never become a way to ring strangers or run up
calls to costly destinations, so a request goes through `decide_request`, a ladder of refusals in
the precedence order of `RequestRefusal` (the first that applies is reported), and an entered code
through `check_code` (`CodeRefusal`). The I/O around them is `families.number_proof`.

A proof's life is an enum plus one transition function (`next_state`)::

    REQUESTED --placed--> CALLING --spoken--> SPOKEN --code_ok--> PROVEN
        |                   |--unanswered--> UNANSWERED
        |--place_failed-->  FAILED <--failed--|
    CALLING --lost (no end report within the longest call)--> FAILED (outcome lost)
    REQUESTED, CALLING, SPOKEN --wrong code, last attempt--> EXHAUSTED
    every open state --a newer request for the same number--> SUPERSEDED

Expiry is not a state: a code older than `code_seconds` is refused whatever its state says.
Codes are entered while CALLING too (the holder may type it while the repeat still plays) and in
SPOKEN; never in REQUESTED (no one heard it), UNANSWERED or FAILED (the call did not speak it).
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from ivr.flows.machine import IllegalMove

__all__ = ["ProofState", "ProofEvent", "IllegalProofMove", "next_state", "OPEN_STATES",
           "ProofRules", "RequestFacts", "RequestRefusal", "decide_request", "CodeFacts",
           "CodeRefusal", "check_code", "new_code", "hash_code", "code_matches",
           "ALLOWED_CLASSES", "CODE_SALT_BYTES", "well_formed", "longest_call_seconds",
           "PROOF_TRUNKS_MAX", "END_REPORT_SLACK_SECONDS"]

CODE_SALT_BYTES = 16
# scrypt, as for passwords (families.passwords): a dump of the table does not give the codes
# away for free; with a 10-minute life and a few attempts this cost is plenty.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _HASH_BYTES = 2**14, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024

# Classes of number the switch will ring for a proof (rating.jurisdiction's class values, seen
# from no facility: every US number is "interstate"). International only when the rules allow.
ALLOWED_CLASSES = frozenset({"local", "intrastate", "interstate"})
# The most trunks a worker tries for one proof call (switch.worker.proof_place.TRUNKS_MAX).
PROOF_TRUNKS_MAX = 8
# Placement and the end report's first send, on top of the call itself.
END_REPORT_SLACK_SECONDS = 30


class ProofState(enum.Enum):
    REQUESTED = "requested"      # a code made, the call not yet with a worker
    CALLING = "calling"          # a worker is dialling or speaking
    SPOKEN = "spoken"            # the call ended after the code was said in full at least once
    UNANSWERED = "unanswered"    # no answer, busy
    FAILED = "failed"            # no worker, no route, the trunk failed, hung up before the code
    PROVEN = "proven"            # the right code was entered: used up
    EXHAUSTED = "exhausted"      # too many wrong codes
    SUPERSEDED = "superseded"    # a newer request for the same holder and number replaced it


class ProofEvent(enum.Enum):
    PLACED = "placed"
    PLACE_FAILED = "place_failed"
    SPOKEN = "spoken"
    UNANSWERED = "unanswered"
    FAILED = "failed"
    CODE_OK = "code_ok"
    LAST_WRONG_CODE = "last_wrong_code"
    SUPERSEDED = "superseded"
    LOST = "lost"                # no end report within the longest call: the worker died


OPEN_STATES = frozenset({ProofState.REQUESTED, ProofState.CALLING, ProofState.SPOKEN})
_S, _E = ProofState, ProofEvent
_MOVES: dict[tuple[ProofState, ProofEvent], ProofState] = {
    (_S.REQUESTED, _E.PLACED): _S.CALLING,
    (_S.REQUESTED, _E.PLACE_FAILED): _S.FAILED,
    (_S.CALLING, _E.SPOKEN): _S.SPOKEN,
    (_S.CALLING, _E.UNANSWERED): _S.UNANSWERED,
    (_S.CALLING, _E.FAILED): _S.FAILED,
    (_S.CALLING, _E.LOST): _S.FAILED,
    (_S.CALLING, _E.CODE_OK): _S.PROVEN,
    (_S.SPOKEN, _E.CODE_OK): _S.PROVEN,
    **{(s, _E.LAST_WRONG_CODE): _S.EXHAUSTED for s in (_S.CALLING, _S.SPOKEN)},
    **{(s, _E.SUPERSEDED): _S.SUPERSEDED for s in OPEN_STATES},
}


class IllegalProofMove(IllegalMove):
    """An event the proof's state cannot take (our bug, or a report that came too late)."""

    def __init__(self, state: ProofState, event: ProofEvent) -> None:
        super().__init__("number proof", state, event,
                         f"a proof in state {state.value} cannot take {event.value}")


def next_state(state: ProofState, event: ProofEvent) -> ProofState:
    try:
        return _MOVES[(state, event)]
    except KeyError:
        raise IllegalProofMove(state, event) from None


@dataclass(frozen=True)
class ProofRules:
    """The bounds of proof calls (`[families]` proof_* settings)."""
    code_digits: int = 6
    code_seconds: int = 600                  # a code works this long after the request
    attempts_max: int = 5                    # wrong codes before the proof is used up
    calls_per_number_per_day: int = 3        # calls to one number, whoever asks (24 h window)
    calls_per_holder_per_day: int = 5        # calls one holder asks for, to any number
    calls_per_node_per_hour: int = 120       # every proof call of the node: a toll-fraud fuse
    gap_seconds: int = 60                    # between two calls to one number
    international: bool = False              # ring numbers outside the US
    prompt_seconds: int = 60                 # the call's words, both readings, at most
    # The longest a proof call can last, from placement to end report (longest_call_seconds of
    # the workers' trunk timers, set by the node's assembly): a `calling` proof older than this
    # lost its worker and is closed as failed, outcome lost.
    call_seconds_max: int = 480

    def __post_init__(self) -> None:
        if not 4 <= self.code_digits <= 10:
            raise ValueError(f"families.proof_code_digits must be 4..10, got {self.code_digits}")
        for name in ("code_seconds", "attempts_max", "calls_per_number_per_day",
                     "calls_per_holder_per_day", "calls_per_node_per_hour", "prompt_seconds",
                     "call_seconds_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"families.proof_{name} must be >= 1, got {getattr(self, name)}")
        if self.gap_seconds < 0:
            raise ValueError(f"families.proof_gap_seconds must be >= 0, got {self.gap_seconds}")

    @classmethod
    def from_section(cls, section: object, worker: object = None,
                     trunks: int = PROOF_TRUNKS_MAX) -> "ProofRules":
        """From the config's [families] section (its proof_* keys), and the longest call from
        `worker` (the [worker] section's trunk timers) when given."""
        import dataclasses
        rules = cls(**{f.name: getattr(section, f"proof_{f.name}")
                       for f in dataclasses.fields(cls) if f.name != "call_seconds_max"})
        if worker is None:
            return rules
        return dataclasses.replace(rules, call_seconds_max=longest_call_seconds(
            trunks=trunks, trunk_setup_seconds=getattr(worker, "trunk_setup_seconds"),
            trunk_answer_seconds=getattr(worker, "trunk_answer_seconds"),
            prompt_seconds=rules.prompt_seconds))


def longest_call_seconds(*, trunks: int, trunk_setup_seconds: float,
                         trunk_answer_seconds: float, prompt_seconds: float) -> int:
    """The longest a proof call can last before its end report. Each trunk tried may ring up to
    the answer timer (a trunk that rings, then answers 503, passes to the next one with fresh
    timers); the setup timer only cuts a silent trunk short. Then the words, then the report."""
    dial = trunks * max(trunk_setup_seconds, trunk_answer_seconds)
    return math.ceil(dial + prompt_seconds + END_REPORT_SLACK_SECONDS)


class RequestRefusal(enum.Enum):
    """Why a proof call is not placed, in precedence order. Values are stable (API, audit)."""
    NOT_CLAIMED = "not_claimed"                  # the holder has not added this number
    ALREADY_PROVEN = "already_proven"            # by this holder: nothing to do
    PROVEN_BY_OTHER = "proven_by_other"          # another holder owns it
    REFUSED_NUMBER_CLASS = "refused_number_class"  # emergency, N11, premium, toll-free, foreign
    BLOCKED = "blocked"                          # the number is on the global block list
    NO_ROUTE = "no_route"                        # no trunk reaches it
    TOO_SOON = "too_soon"                        # the last call to it was moments ago
    NUMBER_DAILY_LIMIT = "number_daily_limit"
    HOLDER_DAILY_LIMIT = "holder_daily_limit"
    NODE_HOURLY_LIMIT = "node_hourly_limit"


@dataclass(frozen=True)
class RequestFacts:
    claimed: bool
    proven_by_holder: bool
    proven_by_other: bool
    number_class: str                    # rating.jurisdiction class value
    blocked: bool
    routed: bool
    seconds_since_last_call: float | None  # to this number, by anyone
    calls_to_number_today: int
    calls_by_holder_today: int
    calls_by_node_this_hour: int


def decide_request(f: RequestFacts, rules: ProofRules) -> RequestRefusal | None:
    """The first refusal that applies, or None: place the call."""
    R = RequestRefusal
    if not f.claimed:
        return R.NOT_CLAIMED
    if f.proven_by_holder:
        return R.ALREADY_PROVEN
    if f.proven_by_other:
        return R.PROVEN_BY_OTHER
    allowed = ALLOWED_CLASSES | ({"international"} if rules.international else frozenset())
    if f.number_class not in allowed:
        return R.REFUSED_NUMBER_CLASS
    if f.blocked:
        return R.BLOCKED
    if not f.routed:
        return R.NO_ROUTE
    if f.seconds_since_last_call is not None and f.seconds_since_last_call < rules.gap_seconds:
        return R.TOO_SOON
    if f.calls_to_number_today >= rules.calls_per_number_per_day:
        return R.NUMBER_DAILY_LIMIT
    if f.calls_by_holder_today >= rules.calls_per_holder_per_day:
        return R.HOLDER_DAILY_LIMIT
    if f.calls_by_node_this_hour >= rules.calls_per_node_per_hour:
        return R.NODE_HOURLY_LIMIT
    return None


class CodeRefusal(enum.Enum):
    """Why an entered code does not prove the number, in precedence order."""
    NO_PROOF = "no_proof"            # no call was asked for this number (or it was replaced)
    USED = "used"                    # the code already proved the number: single use
    NOT_SPOKEN = "not_spoken"        # the call did not speak the code (yet, or at all)
    EXPIRED = "expired"
    ATTEMPTS_USED = "attempts_used"
    MALFORMED = "malformed"          # not `code_digits` digits (costs an attempt all the same)
    WRONG_CODE = "wrong_code"


@dataclass(frozen=True)
class CodeFacts:
    state: ProofState | None         # None: no proof for this holder and number
    expired: bool
    attempts: int                    # wrong codes so far


def check_code(f: CodeFacts, rules: ProofRules) -> CodeRefusal | None:
    """What refuses an entered code before it is compared (None: compare it)."""
    C = CodeRefusal
    if f.state is None or f.state is ProofState.SUPERSEDED:
        return C.NO_PROOF
    if f.state is ProofState.PROVEN:
        return C.USED
    if f.state in (ProofState.REQUESTED, ProofState.UNANSWERED, ProofState.FAILED):
        return C.NOT_SPOKEN
    if f.expired:
        return C.EXPIRED
    if f.state is ProofState.EXHAUSTED or f.attempts >= rules.attempts_max:
        return C.ATTEMPTS_USED
    return None


def well_formed(code: str, rules: ProofRules) -> bool:
    return isinstance(code, str) and len(code) == rules.code_digits and code.isascii() \
        and code.isdigit()


def new_code(rules: ProofRules) -> str:
    """A uniformly random code of `code_digits` digits (leading zeros kept)."""
    return f"{secrets.randbelow(10 ** rules.code_digits):0{rules.code_digits}d}"


def hash_code(code: str, salt: bytes) -> bytes:
    return hashlib.scrypt(code.encode("ascii"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                          maxmem=_MAXMEM, dklen=_HASH_BYTES)


def code_matches(code: str, salt: bytes, stored: bytes) -> bool:
    """Constant-time comparison of the entered code's hash with the stored one."""
    return hmac.compare_digest(hash_code(code, salt), stored)
