"""Proving a number by a call: ask for a call, record what became of it, take the code.

The I/O around `families.proof_rules` (which has the ladders, the state machine and the why):

* `request` reads what the rules need (claim, owners, class, global blocks, routes, recent
  calls), decides, and on yes stores a fresh code's salted scrypt and returns a `Ticket` holding
  the code in clear: the one copy, handed to the switch and then dropped. A refusal is audited
  (committed) and raised as `ProofCallRefused` naming the rule.
* `dispatch` hands the ticket to a dialler (switch.control.proof_calls.ProofDialer.place) and records
  whether a worker took it; `call_ended` records the worker's end report (the call's CDR-like
  record: worker, trunk, SIP code, outcome, times).
* `close_lost` (the family sweep) closes a call whose worker died mid-call: no end report will
  come, so a `calling` proof older than the longest call (`ProofRules.call_seconds_max`) becomes
  failed with outcome `lost`; the holder's status says so and they may ask again.
* `enter_code` checks a code: the row is locked, every compared code costs an attempt (committed
  even when the answer is no), the comparison is constant-time, and a right code proves the
  number (families.numbers.prove) and is used up.

Requests of one holder and calls to one number are serialized with advisory locks (holder first,
then number), so parallel requests cannot outrun a limit. No money moves anywhere here.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from families import audit, numbers
from families.errors import NotFound, Refused
from families.proof_rules import (
    CODE_SALT_BYTES,
    CodeFacts,
    CodeRefusal,
    ProofEvent,
    ProofRules,
    ProofState,
    RequestFacts,
    RequestRefusal,
    check_code,
    code_matches,
    decide_request,
    hash_code,
    new_code,
    next_state,
    well_formed,
)
from rating.jurisdiction import classify
from switch.control.proof_calls import trunks_for

__all__ = ["Ticket", "ProofStatus", "ProofCallRefused", "CodeRefused", "request", "dispatch",
           "placed", "call_ended", "close_lost", "enter_code", "status", "REQUEST_MESSAGES", "CODE_MESSAGES"]

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)

REQUEST_MESSAGES = {
    RequestRefusal.NOT_CLAIMED: "add this number to your account first",
    RequestRefusal.ALREADY_PROVEN: "this number is already proven",
    RequestRefusal.PROVEN_BY_OTHER: "this number is already proven by another account holder",
    RequestRefusal.REFUSED_NUMBER_CLASS: "the switch does not call this kind of number "
                                         "(emergency, service, toll-free, premium or foreign)",
    RequestRefusal.BLOCKED: "this number does not take calls from the switch",
    RequestRefusal.NO_ROUTE: "the switch has no route to this number",
    RequestRefusal.TOO_SOON: "a call to this number was placed moments ago: wait a minute",
    RequestRefusal.NUMBER_DAILY_LIMIT: "this number had all the proof calls allowed today",
    RequestRefusal.HOLDER_DAILY_LIMIT: "you asked for all the proof calls allowed today",
    RequestRefusal.NODE_HOURLY_LIMIT: "too many proof calls right now: try again later",
}
CODE_MESSAGES = {
    CodeRefusal.NO_PROOF: "no proof call was asked for this number",
    CodeRefusal.USED: "this code was already used",
    CodeRefusal.NOT_SPOKEN: "the call did not say a code: ask for another call",
    CodeRefusal.EXPIRED: "the code has expired: ask for another call",
    CodeRefusal.ATTEMPTS_USED: "too many wrong codes: ask for another call",
    CodeRefusal.MALFORMED: "the code is the digits the call said",
    CodeRefusal.WRONG_CODE: "that is not the code the call said",
}
# Refusals that say "not now" rather than "no": answered 429 by the API.
LIMITS = frozenset({RequestRefusal.TOO_SOON, RequestRefusal.NUMBER_DAILY_LIMIT,
                    RequestRefusal.HOLDER_DAILY_LIMIT, RequestRefusal.NODE_HOURLY_LIMIT})


class ProofCallRefused(Refused):
    """A proof call not placed; `reason` is the rule (families.proof_rules.RequestRefusal)."""

    def __init__(self, reason: RequestRefusal) -> None:
        super().__init__("number", REQUEST_MESSAGES[reason], f"proof_call.{reason.value}")
        self.reason = reason

    @property
    def is_limit(self) -> bool:
        return self.reason in LIMITS


class CodeRefused(Refused):
    """An entered code that proves nothing; `reason` and the attempts left."""

    def __init__(self, reason: CodeRefusal, attempts_left: int) -> None:
        message = CODE_MESSAGES[reason]
        if reason in (CodeRefusal.WRONG_CODE, CodeRefusal.MALFORMED):
            message += f" ({attempts_left} attempt{'s' if attempts_left != 1 else ''} left)"
        super().__init__("code", message, f"proof_code.{reason.value}", left=attempts_left)
        self.reason, self.attempts_left = reason, attempts_left


@dataclass(frozen=True)
class Ticket:
    """A proof call to place. `code` is the only clear copy: give it to the switch, drop it."""
    proof_id: uuid.UUID
    e164: str
    language: str
    trunks: tuple[str, ...]
    expires_at: dt.datetime
    code: str = field(repr=False)


@dataclass(frozen=True)
class ProofStatus:
    id: uuid.UUID
    e164: str
    state: ProofState
    attempts_left: int
    created_at: dt.datetime
    expires_at: dt.datetime
    outcome: str | None


def _status(r: asyncpg.Record, rules: ProofRules) -> ProofStatus:
    return ProofStatus(r["id"], r["e164"], ProofState(r["state"]),
                       max(0, rules.attempts_max - r["attempts"]), r["created_at"],
                       r["expires_at"], r["outcome"])


async def _lock(conn: asyncpg.Connection, holder_id: uuid.UUID, e164: str) -> None:
    # Always holder first, then number: two requests never wait on each other in a cycle.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('proof-holder:' || $1)), "
                       "pg_advisory_xact_lock(hashtext('proof-number:' || $2))",
                       str(holder_id), e164)


_FACTS_SQL = """
SELECT
  (SELECT state FROM family_number WHERE holder_id = $1 AND e164 = $2) AS claim,
  EXISTS (SELECT 1 FROM family_number WHERE e164 = $2 AND state = 'proven'
          AND holder_id <> $1) AS proven_by_other,
  EXISTS (SELECT 1 FROM block WHERE scope = 'global'
          AND (pattern = $2 OR (is_prefix AND $2 LIKE pattern || '%'))) AS blocked,
  (SELECT max(created_at) FROM family_number_proof
    WHERE e164 = $2 AND outcome IS DISTINCT FROM 'no_worker') AS last_call,
  (SELECT count(*) FROM family_number_proof WHERE e164 = $2 AND created_at > $3
     AND outcome IS DISTINCT FROM 'no_worker')::int AS number_today,
  (SELECT count(*) FROM family_number_proof WHERE holder_id = $1 AND created_at > $3
     AND outcome IS DISTINCT FROM 'no_worker' AND outcome IS DISTINCT FROM 'lost')::int
     AS holder_today,
  (SELECT count(*) FROM family_number_proof WHERE created_at > $4
     AND outcome IS DISTINCT FROM 'no_worker')::int AS node_hour,
  (SELECT language FROM family_holder WHERE id = $1) AS language
"""


async def request(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *,
                  now: dt.datetime, rules: ProofRules,
                  language: str | None = None) -> Ticket:
    """A new proof call for a number the holder claimed, or ProofCallRefused (audited)."""
    e164 = numbers.parse_number(number)
    actor = audit.holder_actor(holder_id)
    refusal: RequestRefusal | None = None
    async with conn.transaction():
        await _lock(conn, holder_id, e164)
        f = await conn.fetchrow(_FACTS_SQL, holder_id, e164, now - DAY, now - HOUR)
        if f["language"] is None:
            raise NotFound("holder", "no such account holder", "holder.unknown")
        trunks = await trunks_for(conn, e164)
        last = f["last_call"]
        facts = RequestFacts(
            claimed=f["claim"] is not None, proven_by_holder=f["claim"] == "proven",
            proven_by_other=f["proven_by_other"],
            number_class=classify(e164, "").kind.value, blocked=f["blocked"],
            routed=bool(trunks),
            seconds_since_last_call=(now - last).total_seconds() if last is not None else None,
            calls_to_number_today=f["number_today"], calls_by_holder_today=f["holder_today"],
            calls_by_node_this_hour=f["node_hour"])
        refusal = decide_request(facts, rules)
        if refusal is not None:
            await audit.record(conn, at=now, actor=actor, action="number.proof_call_refused",
                               target=e164, detail={"reason": refusal.value})
        else:
            lang = language or f["language"]
            await conn.execute(
                "UPDATE family_number_proof SET state = $3 WHERE holder_id = $1 AND e164 = $2 "
                "AND state = ANY($4::text[])", holder_id, e164, ProofState.SUPERSEDED.value,
                [s.value for s in (ProofState.REQUESTED, ProofState.CALLING,
                                   ProofState.SPOKEN)])
            code = new_code(rules)
            salt = os.urandom(CODE_SALT_BYTES)
            digest = await asyncio.to_thread(hash_code, code, salt)
            proof_id = uuid.uuid4()
            expires = now + dt.timedelta(seconds=rules.code_seconds)
            await conn.execute(
                "INSERT INTO family_number_proof (id, holder_id, e164, language, code_salt, "
                "code_hash, state, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8)",
                proof_id, holder_id, e164, lang, salt, digest, now, expires)
            await audit.record(conn, at=now, actor=actor, action="number.proof_call_requested",
                               target=e164, detail={"proof": str(proof_id), "language": lang})
    if refusal is not None:
        raise ProofCallRefused(refusal)
    return Ticket(proof_id, e164, lang, tuple(trunks), expires, code)


Place = Callable[..., Awaitable[str | None]]


async def dispatch(pool: asyncpg.Pool, ticket: Ticket, place: Place, *, now: dt.datetime,
                   caller_name: str = "") -> str | None:
    """Hand the call to a worker (`place`, e.g. ProofDialer.place); record who took it, or that
    none did (state failed, outcome no_worker: the holder may ask again at once)."""
    worker_id = await place(proof_id=str(ticket.proof_id), e164=ticket.e164,
                            trunks=list(ticket.trunks), language=ticket.language,
                            code=ticket.code, caller_name=caller_name)
    async with pool.acquire() as conn:
        await placed(conn, ticket.proof_id, worker_id, now=now)
    return worker_id


async def placed(conn: asyncpg.Connection, proof_id: uuid.UUID, worker_id: str | None, *,
                 now: dt.datetime) -> None:
    async with conn.transaction():
        r = await conn.fetchrow("SELECT state, e164 FROM family_number_proof WHERE id = $1 "
                                "FOR UPDATE", proof_id)
        if r is None or r["state"] != ProofState.REQUESTED.value:
            return          # the end report came first, or a newer request replaced it
        if worker_id is None:
            state = next_state(ProofState.REQUESTED, ProofEvent.PLACE_FAILED)
            await conn.execute("UPDATE family_number_proof SET state = $2, outcome = 'no_worker',"
                               " ended_at = $3 WHERE id = $1", proof_id, state.value, now)
        else:
            state = next_state(ProofState.REQUESTED, ProofEvent.PLACED)
            await conn.execute("UPDATE family_number_proof SET state = $2, worker_id = $3, "
                               "placed_at = $4 WHERE id = $1", proof_id, state.value, worker_id,
                               now)
        await audit.record(conn, at=now, actor="node", action="number.proof_call_placed",
                           target=r["e164"], detail={"proof": str(proof_id),
                                                     "worker": worker_id})


_END_EVENTS = {"spoken": ProofEvent.SPOKEN, "no_answer": ProofEvent.UNANSWERED,
               "busy": ProofEvent.UNANSWERED, "hung_up": ProofEvent.FAILED,
               "failed": ProofEvent.FAILED}


async def call_ended(conn: asyncpg.Connection, proof_id: str, *, worker_id: str, outcome: str,
                     talk_seconds: int, trunk: str | None, sip_code: int | None,
                     now: dt.datetime) -> bool:
    """Record a worker's end report. False for a proof this worker was not given (unknown id,
    or placed on another worker). A repeated report changes nothing and answers True."""
    try:
        pid = uuid.UUID(proof_id)
    except ValueError:
        return False
    async with conn.transaction():
        r = await conn.fetchrow("SELECT * FROM family_number_proof WHERE id = $1 FOR UPDATE", pid)
        if r is None or (r["worker_id"] is not None and r["worker_id"] != worker_id):
            return False
        if r["outcome"] == LOST:
            # The sweep gave the call up before this report came (a worker back from a long
            # stall): the call's record takes the real outcome; the proof stays failed.
            await conn.execute("UPDATE family_number_proof SET outcome = $2, talk_seconds = $3, "
                               "trunk = $4, sip_code = $5 WHERE id = $1", pid, outcome,
                               talk_seconds, trunk, sip_code)
            return True
        if r["ended_at"] is not None and r["outcome"] is not None:
            return True                          # a resent report
        state = ProofState(r["state"])
        if state is ProofState.REQUESTED:        # the report overtook the placement's record
            state = next_state(state, ProofEvent.PLACED)
        event = _END_EVENTS[outcome]
        if state is ProofState.CALLING:
            state = next_state(state, event)
        # A proof already proven, used up or replaced keeps its state; the call is recorded.
        await conn.execute(
            "UPDATE family_number_proof SET state = $2, outcome = $3, talk_seconds = $4, "
            "trunk = $5, sip_code = $6, ended_at = $7, worker_id = $8, "
            "placed_at = coalesce(placed_at, $7) WHERE id = $1",
            pid, state.value, outcome, talk_seconds, trunk, sip_code, now, worker_id)
        await audit.record(conn, at=now, actor="node", action="number.proof_call_ended",
                           target=r["e164"], detail={"proof": proof_id, "outcome": outcome,
                                                     "sip_code": sip_code, "worker": worker_id,
                                                     "talk_seconds": talk_seconds})
    return True


LOST = "lost"


async def close_lost(conn: asyncpg.Connection, *, now: dt.datetime,
                     rules: ProofRules) -> list[uuid.UUID]:
    """Close the proof calls no end report will ever come for: `calling` since longer than the
    longest call (`rules.call_seconds_max`) means the worker died mid-call. Each becomes failed
    with outcome lost, audited; the ids closed. Safe on many nodes at once (rows locked, skipped
    when another sweep holds them) and against a report arriving meanwhile (state re-checked)."""
    cutoff = now - dt.timedelta(seconds=rules.call_seconds_max)
    closed: list[uuid.UUID] = []
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, e164, worker_id FROM family_number_proof WHERE state = 'calling' "
            "AND placed_at < $1 ORDER BY placed_at LIMIT 500 FOR UPDATE SKIP LOCKED", cutoff)
        state = next_state(ProofState.CALLING, ProofEvent.LOST).value
        for r in rows:
            await conn.execute("UPDATE family_number_proof SET state = $2, outcome = $3, "
                               "ended_at = $4 WHERE id = $1", r["id"], state, LOST, now)
            await audit.record(conn, at=now, actor="node", action="number.proof_call_lost",
                               target=r["e164"], detail={"proof": str(r["id"]),
                                                         "worker": r["worker_id"]})
            closed.append(r["id"])
    return closed


def _clean_code(code: object) -> str:
    """People type '481 902' or '481-902': spaces and dashes are not part of the code."""
    if not isinstance(code, str):
        return ""
    return code.replace(" ", "").replace("-", "")[:32]


async def enter_code(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, code: str, *,
                     now: dt.datetime, rules: ProofRules,
                     currency: str = "USD") -> numbers.OwnedNumber:
    """The code the call said: proves the number, or CodeRefused (a compared code costs an
    attempt, committed before the refusal is raised)."""
    e164 = numbers.parse_number(number)
    text = _clean_code(code)
    actor = audit.holder_actor(holder_id)
    refusal: CodeRefusal | None = None
    left = 0
    proven: numbers.OwnedNumber | None = None
    async with conn.transaction():
        r = await conn.fetchrow(
            "SELECT * FROM family_number_proof WHERE holder_id = $1 AND e164 = $2 "
            "AND state <> 'superseded' ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
            holder_id, e164)
        facts = CodeFacts(ProofState(r["state"]) if r is not None else None,
                          expired=r is not None and now >= r["expires_at"],
                          attempts=r["attempts"] if r is not None else 0)
        refusal = check_code(facts, rules)
        if refusal is None and r is not None:
            ok = well_formed(text, rules) and await asyncio.to_thread(
                code_matches, text, bytes(r["code_salt"]), bytes(r["code_hash"]))
            state = ProofState(r["state"])
            if ok:
                state = next_state(state, ProofEvent.CODE_OK)
                await conn.execute("UPDATE family_number_proof SET state = $2, used_at = $3 "
                                   "WHERE id = $1", r["id"], state.value, now)
                await audit.record(conn, at=now, actor=actor, action="number.proof_code_ok",
                                   target=e164, detail={"proof": str(r["id"])})
                proven = await numbers.prove(conn, holder_id, e164, by=f"call:{r['id']}",
                                             now=now, currency=currency)
            else:
                attempts = r["attempts"] + 1
                left = max(0, rules.attempts_max - attempts)
                if left == 0:
                    state = next_state(state, ProofEvent.LAST_WRONG_CODE)
                await conn.execute("UPDATE family_number_proof SET attempts = $2, state = $3 "
                                   "WHERE id = $1", r["id"], attempts, state.value)
                refusal = (CodeRefusal.WRONG_CODE if well_formed(text, rules)
                           else CodeRefusal.MALFORMED)
                await audit.record(conn, at=now, actor=actor, action="number.proof_code_wrong",
                                   target=e164, detail={"proof": str(r["id"]),
                                                        "attempts": attempts})
    if refusal is not None:
        if refusal is CodeRefusal.NO_PROOF:
            raise NotFound("number", f"{e164}: {CODE_MESSAGES[refusal]}", "proof_code.no_proof")
        raise CodeRefused(refusal, left)
    assert proven is not None
    return proven


async def status(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *,
                 rules: ProofRules) -> ProofStatus | None:
    """The holder's latest proof of this number (None: never asked)."""
    e164 = numbers.parse_number(number)
    r = await conn.fetchrow("SELECT * FROM family_number_proof WHERE holder_id = $1 AND e164 = $2"
                            " AND state <> 'superseded' ORDER BY created_at DESC LIMIT 1",
                            holder_id, e164)
    return _status(r, rules) if r is not None else None
