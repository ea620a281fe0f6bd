"""The family API, people and history: find a facility and an inmate, ask to be an approved
contact, block and unblock, see calls and money (JSON, CSV, per month); and the operations side:
staff decide contact requests and set what their facility publishes."""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import asyncpg
from pydantic import Field, StringConstraints, model_validator

from families import contacts, history
from web import problems
from web.dispatch import Call
from web.endpoints import REGISTRY
from ledger.money import format_amount as money
from web.endpoints.common import Model, Money, Text
from web.endpoints.family_common import (Amount, NumberText, family_problems, holder,
                                         micros_of)
from web.operations import Stream
from web.roles import Right

TAG = "family"
FacilityId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
InmateId = Annotated[str, StringConstraints(pattern=r"^[0-9]{3,15}$")]
Query = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00-\x1f\x7f%_]*$")]
Month = Annotated[str, StringConstraints(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$")]


class FacilityQuery(Model):
    q: Query = ""


class FacilityOut(Model):
    id: str
    name: str
    state: str
    publishes_inmates: bool


class FacilityList(Model):
    facilities: list[FacilityOut]


@REGISTRY.operation("GET", "/family/facilities", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Find a facility by name", query=FacilityQuery, response=FacilityList)
async def family_facilities(call: Call) -> FacilityList:
    async with call.pool.acquire() as conn:
        return FacilityList(facilities=[FacilityOut(**f) for f in
                                        await contacts.find_facilities(conn, call.query.q)])


class FacilityPath(Model):
    facility: FacilityId


class InmateQuery(Model):
    name: Query | None = None
    id: InmateId | None = None

    @model_validator(mode="after")
    def _one(self) -> InmateQuery:
        if (self.name is None) == (self.id is None):
            raise ValueError("give a name or an id (one of them)")
        return self


class InmateOut(Model):
    id: str
    name: str
    facility: str


class InmateList(Model):
    inmates: list[InmateOut]


@REGISTRY.operation("GET", "/family/facilities/{facility}/inmates", right=Right.FAMILY,
                    tag=TAG, auth="holder", summary="Find an inmate by name or id (only what "
                    "the facility publishes)", path_model=FacilityPath, query=InmateQuery,
                    response=InmateList)
async def family_inmates(call: Call) -> InmateList:
    async with call.pool.acquire() as conn:
        with family_problems("query"):
            found = await contacts.find_inmates(conn, call.path.facility, name=call.query.name,
                                                inmate_id=call.query.id)
    return InmateList(inmates=[InmateOut(**i) for i in found])


class ContactRequestIn(Model):
    inmate: InmateId
    number: NumberText
    name: Annotated[Text, StringConstraints(max_length=100)] = ""
    relationship: Annotated[Text, StringConstraints(max_length=50)] = ""


class ContactRequestOut(Model):
    id: uuid.UUID
    inmate: str
    inmate_name: str
    facility: str
    number: str
    state: Literal["requested", "approved", "denied", "removed"]
    created_at: dt.datetime
    decided_at: dt.datetime | None


class ContactRequestList(Model):
    requests: list[ContactRequestOut]


def _req(r: contacts.ContactRequest) -> ContactRequestOut:
    return ContactRequestOut(id=r.id, inmate=r.inmate_id, inmate_name=r.inmate_name,
                             facility=r.facility_id, number=r.number, state=r.state,
                             created_at=r.created_at, decided_at=r.decided_at)


@REGISTRY.operation("POST", "/family/contact-requests", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Ask to become an approved contact for a proven number",
                    body=ContactRequestIn, response=ContactRequestOut, status=201)
async def family_request_contact(call: Call) -> ContactRequestOut:
    b = call.body
    async with call.pool.acquire() as conn:
        with family_problems():
            r = await contacts.request_contact(conn, holder(call), b.inmate, b.number,
                                               name=b.name, relationship=b.relationship,
                                               now=call.services.clock())
    return _req(r)


@REGISTRY.operation("GET", "/family/contact-requests", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Your contact requests and their state",
                    response=ContactRequestList)
async def family_contact_requests(call: Call) -> ContactRequestList:
    async with call.pool.acquire() as conn:
        return ContactRequestList(requests=[_req(r) for r in
                                            await contacts.requests_of(conn,
                                                                       holder_id=holder(call))])


# -- blocks -----------------------------------------------------------------------------------

class BlockIn(Model):
    number: NumberText
    facility: FacilityId | None = None
    inmate: InmateId | None = None


class BlockOut(Model):
    number: str
    scope: Literal["facility", "inmate"]
    facility: str | None
    inmate: str | None
    by: Literal["called_party", "staff"]
    created_at: dt.datetime


class BlockList(Model):
    blocks: list[BlockOut]


async def _blocks(conn: asyncpg.Connection, holder_id: uuid.UUID) -> BlockList:
    return BlockList(blocks=[BlockOut(number=b["pattern"], scope=b["scope"],
                                      facility=b["facility_id"], inmate=b["inmate_id"],
                                      by=b["requested_by"], created_at=b["created_at"])
                             for b in await contacts.blocks_of(conn, holder_id)])


@REGISTRY.operation("GET", "/family/blocks", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Blocks on your numbers", response=BlockList)
async def family_blocks(call: Call) -> BlockList:
    async with call.pool.acquire() as conn:
        return await _blocks(conn, holder(call))


@REGISTRY.operation("POST", "/family/blocks", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Block calls from a facility or an inmate to one of your numbers",
                    body=BlockIn, response=BlockList, status=201)
async def family_block(call: Call) -> BlockList:
    b = call.body
    async with call.pool.acquire() as conn:
        with family_problems():
            await contacts.block(conn, holder(call), b.number, facility_id=b.facility,
                                 inmate_id=b.inmate, now=call.services.clock())
        return await _blocks(conn, holder(call))


@REGISTRY.operation("POST", "/family/blocks/remove", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Unblock (only blocks you or your called party made)", body=BlockIn,
                    response=BlockList)
async def family_unblock(call: Call) -> BlockList:
    b = call.body
    async with call.pool.acquire() as conn:
        with family_problems():
            await contacts.unblock(conn, holder(call), b.number, facility_id=b.facility,
                                   inmate_id=b.inmate, now=call.services.clock())
        return await _blocks(conn, holder(call))


# -- history ----------------------------------------------------------------------------------

class HistoryQuery(Model):
    month: Month | None = Field(None, description="YYYY-MM; omitted: everything")


class CallOut(Model):
    date: dt.datetime
    number: str
    duration_seconds: int
    cost: Money
    facility: str
    disposition: str


class MoneyLineOut(Model):
    date: dt.datetime
    kind: Literal["deposit", "fee", "refund"]
    target: str
    amount: Money
    provider_ref: str | None


class HistoryOut(Model):
    month: str | None
    calls: list[CallOut]
    money: list[MoneyLineOut]
    calls_total: Money
    deposits_total: Money
    fees_total: Money
    refunds_total: Money


def _range(q: HistoryQuery) -> tuple[dt.datetime, dt.datetime] | tuple[None, None]:
    return history.month_range(q.month) if q.month else (None, None)


@REGISTRY.operation("GET", "/family/history", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Calls and money, newest first; with month= it is that month's "
                    "statement", query=HistoryQuery, response=HistoryOut)
async def family_history(call: Call) -> HistoryOut:
    since, until = _range(call.query)
    async with call.pool.acquire() as conn:
        cs = await history.calls(conn, holder(call), since=since, until=until)
        ms = await history.money_lines(conn, holder(call), since=since, until=until)

    def total(kind: str) -> str:
        return money(sum(m["amount"] for m in ms if m["kind"] == kind))
    return HistoryOut(month=call.query.month,
                      calls=[CallOut(**{**c, "cost": money(c["cost"])}) for c in cs],
                      money=[MoneyLineOut(**{**m, "amount": money(m["amount"])}) for m in ms],
                      calls_total=money(sum(c["cost"] for c in cs)),
                      deposits_total=total("deposit"), fees_total=total("fee"),
                      refunds_total=total("refund"))


async def _one(text: str) -> AsyncIterator[bytes]:
    yield text.encode()


@REGISTRY.operation("GET", "/family/history/calls.csv", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Your calls as CSV", query=HistoryQuery,
                    stream="text/csv")
async def family_calls_csv(call: Call) -> Stream:
    since, until = _range(call.query)
    async with call.pool.acquire() as conn:
        cs = await history.calls(conn, holder(call), since=since, until=until)
    return Stream("text/csv", _one(history.to_csv(
        cs, ["date", "number", "duration_seconds", "cost", "facility", "disposition"],
        ("cost",))), "calls.csv")


@REGISTRY.operation("GET", "/family/history/money.csv", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Your deposits, fees and refunds as CSV",
                    query=HistoryQuery, stream="text/csv")
async def family_money_csv(call: Call) -> Stream:
    since, until = _range(call.query)
    async with call.pool.acquire() as conn:
        ms = await history.money_lines(conn, holder(call), since=since, until=until)
    return Stream("text/csv", _one(history.to_csv(
        ms, ["date", "kind", "target", "amount", "provider_ref"], ("amount",))), "money.csv")


# -- the operations side ----------------------------------------------------------------------

class StaffRequestQuery(Model):
    facility: FacilityId | None = None
    state: Literal["requested", "approved", "denied", "removed"] | None = None


@REGISTRY.operation("GET", "/family-requests", right=Right.DIRECTORY_READ, tag="family-staff",
                    summary="Families' contact requests (facility_staff: their facilities')",
                    query=StaffRequestQuery, response=ContactRequestList)
async def list_family_requests(call: Call) -> ContactRequestList:
    scope = call.facilities(call.query.facility)
    async with call.pool.acquire() as conn:
        rs = await contacts.requests_of(conn, facilities=scope, state=call.query.state)
    return ContactRequestList(requests=[_req(r) for r in rs])


class RequestPath(Model):
    request: uuid.UUID


class DecisionIn(Model):
    decision: Literal["approve", "deny"]


@REGISTRY.operation("POST", "/family-requests/{request}/decision", right=Right.DIRECTORY_WRITE,
                    tag="family-staff", summary="Approve or deny a family's contact request "
                    "(the holder is mailed)", path_model=RequestPath, body=DecisionIn,
                    response=ContactRequestOut)
async def decide_family_request(call: Call) -> ContactRequestOut:
    scope = call.facilities(None)
    async with call.pool.acquire() as conn:
        with family_problems():
            r = await contacts.decide(conn, call.path.request,
                                      approve=call.body.decision == "approve",
                                      actor=call.principal.actor, now=call.services.clock(),
                                      facilities=scope)
    return _req(r)


class PolicyIn(Model):
    publishes_inmates: bool = True
    deposits_approved_only: bool = True
    debit_monthly_max: Amount = "300.00"


class PolicyOut(Model):
    facility: str
    publishes_inmates: bool
    deposits_approved_only: bool
    debit_monthly_max: Money


@REGISTRY.operation("POST", "/family-policies/{facility}", right=Right.DIRECTORY_WRITE,
                    tag="family-staff", summary="What a facility publishes to families and the "
                    "monthly limit of deposits to an inmate", path_model=FacilityPath,
                    body=PolicyIn, response=PolicyOut)
async def set_family_policy(call: Call) -> PolicyOut:
    call.require_facility(call.path.facility)
    b = call.body
    limit = micros_of("debit_monthly_max", b.debit_monthly_max)
    async with call.change() as conn:
        if not await conn.fetchval("SELECT true FROM facility WHERE id = $1",
                                   call.path.facility):
            raise problems.NotFoundProblem(f"no facility {call.path.facility!r}")
        before = await conn.fetchrow("SELECT * FROM family_facility_policy WHERE "
                                     "facility_id = $1", call.path.facility)
        await conn.execute(
            "INSERT INTO family_facility_policy (facility_id, publishes_inmates, "
            "deposits_approved_only, debit_monthly_max) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (facility_id) DO UPDATE SET publishes_inmates = $2, "
            "deposits_approved_only = $3, debit_monthly_max = $4", call.path.facility,
            b.publishes_inmates, b.deposits_approved_only, limit)
        await call.audit(conn, "family_policy.set", f"facility:{call.path.facility}",
                         dict(before) if before else None,
                         {"publishes_inmates": b.publishes_inmates,
                          "deposits_approved_only": b.deposits_approved_only,
                          "debit_monthly_max": limit})
    return PolicyOut(facility=call.path.facility, publishes_inmates=b.publishes_inmates,
                     deposits_approved_only=b.deposits_approved_only,
                     debit_monthly_max=money(limit))


class StatementIn(Model):
    number: NumberText
    month: Month
    delivery: Literal["paper", "electronic"] = "electronic"


class StatementOut(Model):
    number: str
    month: str
    delivery: str
    calls: int
    fee: Money
    profile: str
    repeat: bool


@REGISTRY.operation("POST", "/family/statements", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Order a month's statement: electronic (free) or paper (the "
                    "profile's fee, from the balance)", body=StatementIn, response=StatementOut,
                    status=201)
async def family_order_statement(call: Call) -> StatementOut:
    from families import numbers
    from web.endpoints.family_common import fam
    b = call.body
    async with call.pool.acquire() as conn:
        with family_problems():
            e164 = await numbers.proven_owner(conn, holder(call), b.number)
            r = await history.order_statement(conn, fam(call).fees, holder_id=holder(call),
                                              e164=e164, month=b.month, delivery=b.delivery,
                                              now=call.services.clock())
    return StatementOut(number=e164, month=b.month, delivery=b.delivery, calls=r["calls"],
                        fee=money(r["fee"]), profile=r["profile"], repeat=r["repeat"])
