"""The family API, proof of a number by a call: ask the switch to call a claimed number with a
one-time code, see how that call went, and enter the code (families.number_proof)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from families import number_proof
from families.proof_rules import ProofRules, ProofState, RequestRefusal
from web import problems
from switch.control.proof_calls import ProofDialer
from web.dispatch import Call
from web.endpoints import REGISTRY
from web.endpoints.common import Model
from web.endpoints.family_common import TooManyRequests, fam, family_problems, holder
from web.endpoints.family_money import NumberOut, NumberPath, _number_out
from web.roles import Right

__all__ = ["ProofOut", "CodeIn", "MESSAGES"]

TAG = "family"
Code = Annotated[str, StringConstraints(min_length=1, max_length=20, pattern=r"^[0-9 -]+$"),
                 Field(description="the digits the call said (spaces and dashes are ignored)")]
State = Literal["requested", "calling", "spoken", "unanswered", "failed", "proven", "exhausted"]

# What the holder is told for each state of their latest proof call (the portal says the same).
MESSAGES = {
    "requested": "We are placing the call.",
    "calling": "We are calling your number now. Enter the code it says.",
    "spoken": "The call said your code. Enter it before it expires.",
    "unanswered": "Nobody answered the call. Ask for another call.",
    "failed": "The call could not be made. Ask for another call in a minute.",
    "no_worker": "No line is free to call you right now. Ask again in a minute.",
    "lost": "We lost the call before it ended. Ask for another call.",
    "proven": "This number is proven.",
    "exhausted": "Too many wrong codes. Ask for another call.",
}


class ProofOut(Model):
    number: str
    state: State
    outcome: str | None = Field(description="how the call ended: spoken, hung_up, no_answer, "
                                            "busy, failed, no_worker or lost (the switch lost the call)")
    attempts_left: int
    created_at: dt.datetime
    expires_at: dt.datetime
    message: str


class CodeIn(Model):
    code: Code


def _observe(call: Call, what: str, outcome: str) -> None:
    """ops.metrics counts proof requests and codes (ics_number_proof_*_total)."""
    observer = getattr(call.services.core, "observer", None)
    if observer is not None:
        observer(what, outcome)


def _rules(call: Call) -> ProofRules:
    rules: ProofRules = getattr(fam(call), "proof", None) or ProofRules()
    return rules


def _out(s: number_proof.ProofStatus) -> ProofOut:
    key = s.outcome if s.outcome in ("no_worker", "lost") else s.state.value
    return ProofOut(number=s.e164, state=s.state.value, outcome=s.outcome,  # type: ignore[arg-type]
                    attempts_left=s.attempts_left, created_at=s.created_at,
                    expires_at=s.expires_at, message=MESSAGES.get(key, ""))


@REGISTRY.operation("POST", "/family/numbers/{number}/proof-call", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Ask the switch to call a number you added and say a "
                    "one-time code (429 when a daily limit or the gap between calls refuses)",
                    path_model=NumberPath, response=ProofOut, status=202)
async def family_proof_call(call: Call) -> ProofOut:
    rules = _rules(call)
    services = call.services
    async with call.pool.acquire() as conn:
        with family_problems("path"):
            try:
                ticket = await number_proof.request(conn, holder(call), call.path.number,
                                                    now=services.clock(), rules=rules)
            except number_proof.ProofCallRefused as e:
                _observe(call, "proof_request", e.reason.value)
                if e.reason is RequestRefusal.NOT_CLAIMED:     # not one of yours: as elsewhere
                    raise problems.NotFoundProblem(f"number: {e.message}") from None
                if e.is_limit:
                    raise TooManyRequests(f"number: {e.message}",
                                          headers={"Retry-After": str(rules.gap_seconds)}) \
                        from None
                raise
    _observe(call, "proof_request", "allow")
    dialer = ProofDialer(services.links or {}, services.workers,
                         observe=getattr(services.core, "observer", None))
    caller = str(getattr(fam(call), "proof_caller_name", "") or "")
    await number_proof.dispatch(call.pool, ticket, dialer.place if services.workers else
                                _nobody, now=services.clock(), caller_name=caller)
    async with call.pool.acquire() as conn:
        s = await number_proof.status(conn, holder(call), ticket.e164, rules=rules)
    assert s is not None
    return _out(s)


async def _nobody(**kw: object) -> None:
    return None                 # a node that runs no switch places no calls


@REGISTRY.operation("GET", "/family/numbers/{number}/proof-call", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="How your latest proof call of this number went",
                    path_model=NumberPath, response=ProofOut)
async def family_proof_status(call: Call) -> ProofOut:
    async with call.pool.acquire() as conn:
        with family_problems("path"):
            s = await number_proof.status(conn, holder(call), call.path.number,
                                          rules=_rules(call))
    if s is None or s.state is ProofState.SUPERSEDED:
        raise problems.NotFoundProblem("number: no proof call was asked for this number")
    return _out(s)


@REGISTRY.operation("POST", "/family/numbers/{number}/proof-code", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Enter the code the proof call said: proves the "
                    "number and opens its prepaid account", path_model=NumberPath, body=CodeIn,
                    response=NumberOut)
async def family_proof_code(call: Call) -> NumberOut:
    async with call.pool.acquire() as conn:
        with family_problems("body"):
            try:
                n = await number_proof.enter_code(conn, holder(call), call.path.number,
                                                  call.body.code, now=call.services.clock(),
                                                  rules=_rules(call),
                                                  currency=call.services.currency)
            except number_proof.CodeRefused as e:
                _observe(call, "proof_code", e.reason.value)
                raise
        _observe(call, "proof_code", "ok")
        return await _number_out(conn, n)
