"""CDRs over HTTP: filtered keyset pages and the streamed CSV export (`ics cdr` shares web.cdrs)."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import StringConstraints, model_validator

from ledger.money import format_amount
from rating.jurisdiction import JurisdictionClass
from switch.rules.numbers import InvalidNumber, to_e164
from switch.wire.protocol import DISPOSITIONS
from web import cdrs
from web.endpoints import REGISTRY
from web.endpoints.common import (PAGE_SIZE_DEFAULT, Cursor, Model, Money, PageLimit,
                                  UtcDateTime)
from web.operations import Serialized, Stream
from web.problems import invalid
from web.roles import Right

FacilityId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[A-Za-z0-9._-]+$")]
InmateId = Annotated[str, StringConstraints(pattern=r"^[0-9]{3,15}$")]
NumberText = Annotated[str, StringConstraints(min_length=1, max_length=32)]
Disposition = Literal[DISPOSITIONS]
JurisdictionName = Literal[tuple(j.value for j in JurisdictionClass)]
EXPORT_QUEUE_CHUNKS = 8          # chunks of COPY output waiting for the HTTP consumer, at most


class CdrFilterQuery(Model):
    facility: FacilityId | None = None
    inmate: InmateId | None = None
    number: NumberText | None = None
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    disposition: Disposition | None = None
    jurisdiction: JurisdictionName | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class CdrQuery(CdrFilterQuery):
    cursor: Cursor | None = None
    limit: PageLimit = PAGE_SIZE_DEFAULT


class CdrOut(Model):
    call_id: uuid.UUID
    facility: str
    kiosk: str
    inmate: str
    number: str
    jurisdiction: str
    payment_type: str | None
    funding_account: str | None
    privileged: bool
    authorized_at: dt.datetime
    accepted_at: dt.datetime | None
    ended_at: dt.datetime
    talk_seconds: int
    billed_seconds: int
    disposition: str
    call_amount: Money
    tax_amount: Money
    total_amount: Money
    tariff_version: str | None
    trunk: str | None
    sip_code: int | None


class CdrPage(Model):
    cdrs: list[CdrOut]
    next_cursor: str | None


def cdr_filter(call, q: CdrFilterQuery) -> cdrs.CdrFilter:
    number = None
    if q.number is not None:
        try:
            number = to_e164(q.number)
        except InvalidNumber as e:
            raise invalid("query", "number", str(e)) from None
    return cdrs.CdrFilter(facilities=call.facilities(q.facility), inmate=q.inmate, number=number,
                          since=q.since, until=q.until, disposition=q.disposition,
                          jurisdiction=q.jurisdiction)


def cdr_data(r) -> dict:
    """A CDR row as CdrOut's fields."""
    return {
        "call_id": str(r["call_id"]), "facility": r["facility_id"], "kiosk": r["kiosk_id"],
        "inmate": r["inmate_id"], "number": r["e164"], "jurisdiction": r["jurisdiction"],
        "payment_type": r["payment_type"], "funding_account": r["funding_account"],
        "privileged": r["privileged"], "authorized_at": r["authorized_at"],
        "accepted_at": r["accepted_at"], "ended_at": r["ended_at"],
        "talk_seconds": r["talk_seconds"], "billed_seconds": r["billed_seconds"],
        "disposition": r["disposition"], "call_amount": format_amount(r["call_micros"]),
        "tax_amount": format_amount(r["tax_micros"]),
        "total_amount": format_amount(r["total_micros"]),
        "tariff_version": r["tariff_version"], "trunk": r["trunk"], "sip_code": r["sip_code"]}


def cdr_out(r) -> CdrOut:
    return CdrOut(**cdr_data(r))


@REGISTRY.operation("GET", "/cdrs", right=Right.CDRS_READ, tag="cdrs",
                    summary="CDRs, newest first, filtered, in keyset pages", query=CdrQuery,
                    response=CdrPage)
async def list_cdrs(call):
    q = call.query
    f = cdr_filter(call, q)
    async with call.pool.acquire() as conn:
        try:
            rows, next_cursor = await cdrs.page(conn, f, limit=q.limit, cursor=q.cursor)
        except cdrs.CursorInvalid as e:
            raise invalid("query", "cursor", str(e)) from None
    return Serialized(CdrPage, {"cdrs": [cdr_data(r) for r in rows], "next_cursor": next_cursor})


async def _copy_chunks(pool, f: cdrs.CdrFilter):
    """COPY output as an async iterator; the bounded queue carries the consumer's pace back."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=EXPORT_QUEUE_CHUNKS)

    async def sink(data) -> None:
        await queue.put(bytes(data))      # asyncpg hands out bytearrays; the transport wants bytes

    async def produce():
        async with pool.acquire() as conn:
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                await cdrs.export_csv(conn, f, sink)
    task = asyncio.ensure_future(produce())
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
                continue
            getter.cancel()
            # The producer is done: what it queued is all there is, then its outcome.
            while not queue.empty():
                yield queue.get_nowait()
            task.result()     # a failed COPY raises here: the stream is cut, not completed
            return
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@REGISTRY.operation("GET", "/cdrs.csv", right=Right.CDRS_READ, tag="cdrs",
                    summary="Every matching CDR as CSV, streamed", query=CdrFilterQuery,
                    stream="text/csv")
async def export_cdrs(call):
    f = cdr_filter(call, call.query)
    return Stream("text/csv; charset=utf-8", _copy_chunks(call.pool, f), filename="cdrs.csv")
