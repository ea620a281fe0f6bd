"""Live calls over HTTP: list the calls not yet ended; terminate one. Terminating asks the
call's worker (AMP Terminate over its link to the core); the worker hangs up and the call
settles through End like any other."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from switch.wire import protocol as wire
from web.endpoints import REGISTRY
from web.endpoints.common import Model
from web.problems import Conflict, NotFoundProblem, Unavailable
from web.roles import Right

from web.endpoints.cdrs import FacilityId

TERMINATE_ANSWER_SECONDS = 5.0      # a worker slower than this to acknowledge is reported 503


class LiveCallsQuery(Model):
    facility: FacilityId | None = None


class LiveCall(Model):
    call_id: uuid.UUID
    state: str
    facility: str
    kiosk: str
    inmate: str
    number: str
    jurisdiction: str
    privileged: bool
    worker: str | None
    authorized_at: dt.datetime
    accepted_at: dt.datetime | None
    talk_seconds_granted: int
    talk_seconds_charged: int
    max_seconds: int


class LiveCalls(Model):
    calls: list[LiveCall]


class CallPath(Model):
    call: uuid.UUID


def _not_a_disposition(reason: str) -> str:
    # The worker ends a call with a reason that names a disposition *as* that disposition: an
    # operator's "refused" would file a talked call's CDR as refused by the called party.
    if reason in wire.DISPOSITIONS:
        raise ValueError(f"{reason!r} is a call disposition, which the switch decides; give "
                         "your own reason (e.g. operator)")
    return reason


class TerminateIn(Model):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64,
                                             pattern=r"^[a-z][a-z0-9_]*$"),
                      AfterValidator(_not_a_disposition),
                      Field(description="why, for the audit trail (not a disposition: the CDR "
                                        "says completed for a call that talked)")] = "operator"


class Terminated(Model):
    call_id: uuid.UUID
    worker: str
    found: bool


def _live(r) -> LiveCall:
    return LiveCall(call_id=r["id"], state=r["state"], facility=r["facility_id"],
                    kiosk=r["kiosk_id"], inmate=r["inmate_id"], number=r["e164"],
                    jurisdiction=r["jurisdiction"], privileged=r["privileged"],
                    worker=r["worker_id"], authorized_at=r["authorized_at"],
                    accepted_at=r["accepted_at"], talk_seconds_granted=r["grant_until"],
                    talk_seconds_charged=r["posted_until"], max_seconds=r["max_seconds"])


@REGISTRY.operation("GET", "/calls", right=Right.CALLS_READ, tag="calls",
                    summary="Calls in progress", query=LiveCallsQuery, response=LiveCalls)
async def list_calls(call):
    scope = call.facilities(call.query.facility)
    async with call.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM call WHERE state <> 'ended' AND "
                                "($1::text[] IS NULL OR facility_id = ANY($1)) "
                                "ORDER BY authorized_at", scope)
    return LiveCalls(calls=[_live(r) for r in rows])


@REGISTRY.operation("POST", "/calls/{call}/terminate", right=Right.CALLS_WRITE, tag="calls",
                    summary="End a call now (its worker hangs up; it settles as usual)",
                    path_model=CallPath, body=TerminateIn, response=Terminated)
async def terminate_call(call):
    cid = call.path.call
    async with call.change() as conn:
        r = await conn.fetchrow("SELECT facility_id, state, worker_id FROM call WHERE id = $1",
                                cid)
        if r is None:
            raise NotFoundProblem(f"no call {cid}")
        call.require_facility(r["facility_id"])
        if r["state"] == "ended":
            raise Conflict(f"call {cid} has already ended")
        link = call.services.links.get(r["worker_id"]) if r["worker_id"] else None
        if link is None:
            raise Unavailable(f"call {cid}'s worker ({r['worker_id']}) is not connected; the "
                              "core closes its calls when it stays silent")
        # Audited before asking: the request is the operator's act, whatever the worker says.
        await call.audit(conn, "call.terminate", f"call:{cid}",
                         {"state": r["state"], "worker": r["worker_id"]},
                         {"reason": call.body.reason})
    try:
        answer = await asyncio.wait_for(
            link.callRemote(wire.Terminate, call_id=str(cid), reason=call.body.reason
                            ).asFuture(asyncio.get_running_loop()),
            TERMINATE_ANSWER_SECONDS)
    except (asyncio.TimeoutError, Exception) as e:
        raise Unavailable(f"worker {r['worker_id']} did not acknowledge: {type(e).__name__}"
                          ) from None
    return Terminated(call_id=cid, worker=r["worker_id"], found=bool(answer["found"]))
