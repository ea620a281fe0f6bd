"""Tariffs over HTTP, on rating's own code: check a CSV deck (every error at once, and the
facility's regulatory profile), import it as a version effective at a given time, list, export
and diff versions, quote a call and the longest call a balance buys."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ledger.money import AmountInvalid, format_amount, parse_amount
from rating import deck as decks
from rating import facility as facilities
from rating import store
from rating.errors import RateCapExceeded, RatingRefusal
from rating.jurisdiction import classify
from rating.pricing import affordable_seconds, price
from rating.tariff import PaymentType
from switch.rules.numbers import InvalidNumber, to_e164
from web.endpoints import REGISTRY
from web.endpoints.cdrs import FacilityId, NumberText
from web.endpoints.common import AmountIn, Model, Money, UtcDateTime
from web.operations import Stream
from web.problems import BadInput, Conflict, FieldError, NotFoundProblem, invalid
from web.roles import Right

CALL_SECONDS_MAX = 24 * 3600
DECK_CHARACTERS_MAX = 900_000     # inside the default 1 MiB body limit (api.body_bytes_max)
DeckText = Annotated[str, StringConstraints(min_length=1, max_length=DECK_CHARACTERS_MAX)]
Payment = Literal["prepaid", "debit", "collect"]


class DeckIn(Model):
    facility: FacilityId | None = Field(None, description="omitted: the agency-wide default")
    csv: DeckText
    effective_from: UtcDateTime | None = Field(None, description="check: default now")


class ImportIn(Model):
    facility: FacilityId | None = None
    csv: DeckText
    effective_from: UtcDateTime
    accept_violations: bool = False


class DeckErrorOut(Model):
    line: int | None
    column: str
    value: str
    reason: str
    code: str = Field(description="stable import error code (rating/import_codes.py), e.g. "
                      "bad_number or bare_carriage_return; 'refused' for a refusal of the deck "
                      "as a whole")


class ViolationOut(Model):
    profile: str
    version: int
    line: str
    field: str
    value: str
    cap: str
    message: str


class DeckReport(Model):
    valid: bool
    errors: list[DeckErrorOut]
    violations: list[ViolationOut]
    lines: int
    surcharges: int


class VersionOut(Model):
    facility: str | None
    number: int
    effective_from: dt.datetime
    imported_at: dt.datetime
    source: str
    lines: int
    surcharges: int


class VersionList(Model):
    versions: list[VersionOut]


def _violations(vs) -> list[ViolationOut]:
    return [ViolationOut(profile=v.profile, version=v.version, line=v.line, field=v.field,
                         value=v.value, cap=v.cap, message=v.message) for v in vs]


def _errors(e: decks.DeckError) -> list[DeckErrorOut]:
    return [DeckErrorOut(line=r.line, column=r.column, value=r.value, reason=r.message,
                         code=r.code) for r in e.errors]


async def _known_facility(conn, facility: str | None) -> None:
    if facility is not None and not await conn.fetchval(
            "SELECT true FROM facility WHERE id = $1", facility):
        raise NotFoundProblem(f"facility {facility!r} does not exist")


@REGISTRY.operation("POST", "/tariffs/check", right=Right.TARIFFS_READ, tag="tariffs",
                    summary="Validate a CSV deck: every error (line, column, value, reason) and "
                    "every profile violation; stores nothing", body=DeckIn, response=DeckReport)
async def check_deck(call):
    b = call.body
    async with call.pool.acquire() as conn:
        await _known_facility(conn, b.facility)
        async with conn.transaction():
            try:
                imported = await store.import_deck(conn, b.csv,
                                                   facility_id=b.facility,
                                                   effective_from=b.effective_from,
                                                   accept_violations=True, dry_run=True)
            except decks.DeckError as e:
                return DeckReport(valid=False, errors=_errors(e), violations=[], lines=0,
                                  surcharges=0)
            except RatingRefusal as e:
                return DeckReport(valid=False, errors=[DeckErrorOut(
                    line=None, column="deck", value="", reason=str(e), code="refused")],
                    violations=[], lines=0,
                    surcharges=0)
    v = imported.version
    return DeckReport(valid=not imported.violations, errors=[],
                      violations=_violations(imported.violations), lines=len(v.lines),
                      surcharges=len(v.surcharges))


@REGISTRY.operation("POST", "/tariffs", right=Right.TARIFFS_WRITE, tag="tariffs",
                    summary="Import a deck as a new version, in force from effective_from "
                    "(all or nothing)", body=ImportIn, response=VersionOut, status=201)
async def import_tariff(call):
    b = call.body
    async with call.change() as conn:
        await _known_facility(conn, b.facility)
        try:
            imported = await store.import_deck(
                conn, b.csv, facility_id=b.facility,
                effective_from=b.effective_from, source=f"api:{call.principal.actor}",
                accept_violations=b.accept_violations)
        except decks.DeckError as e:
            raise BadInput(f"{len(e.errors)} error(s) in the deck; nothing was imported",
                           [FieldError(location="body", field="csv",
                                       message=str(r)) for r in e.errors]) from None
        except RateCapExceeded as e:
            raise Conflict(str(e)) from None
        except RatingRefusal as e:
            raise invalid("body", "csv", str(e)) from None
        v = imported.version
        await call.audit(conn, "tariff.import", f"tariff:{b.facility or 'agency'}", None,
                         {"version": v.number, "effective_from": v.effective_from.isoformat(),
                          "lines": len(v.lines), "violations_accepted":
                          [str(x) for x in imported.violations]})
        info = next(i for i in await store.list_versions(conn, b.facility)
                    if i.number == v.number)
    return _version(info)


def _version(i) -> VersionOut:
    return VersionOut(facility=i.facility_id, number=i.number, effective_from=i.effective_from,
                      imported_at=i.imported_at, source=i.source, lines=i.lines,
                      surcharges=i.surcharges)


class TariffQuery(Model):
    facility: FacilityId | None = None


@REGISTRY.operation("GET", "/tariffs/versions", right=Right.TARIFFS_READ, tag="tariffs",
                    summary="Versions of a facility's tariff (or the agency's)",
                    query=TariffQuery, response=VersionList)
async def list_tariff_versions(call):
    async with call.pool.acquire() as conn:
        await _known_facility(conn, call.query.facility)
        return VersionList(versions=[_version(i) for i in
                                     await store.list_versions(conn, call.query.facility)])


class ExportQuery(Model):
    facility: FacilityId | None = None
    version: Annotated[int, Field(ge=1, le=1_000_000)]


async def _deck_text(conn, facility: str | None, number: int) -> str:
    vs = await store.load_versions(conn, facility, number)
    if not vs:
        raise NotFoundProblem(f"no version {number} of {facility or 'the agency'}'s tariff")
    return decks.write(vs[0].lines, vs[0].surcharges)


@REGISTRY.operation("GET", "/tariffs/export", right=Right.TARIFFS_READ, tag="tariffs",
                    summary="A version as a CSV deck (imports back to the same version)",
                    query=ExportQuery, stream="text/csv")
async def export_tariff(call):
    async with call.pool.acquire() as conn:
        await _known_facility(conn, call.query.facility)
        text = await _deck_text(conn, call.query.facility, call.query.version)

    async def one():
        yield text.encode()
    return Stream("text/csv; charset=utf-8", one(),
                  filename=f"tariff-{call.query.facility or 'agency'}-v{call.query.version}.csv")


class DiffQuery(Model):
    facility: FacilityId | None = None
    from_version: Annotated[int, Field(ge=1, le=1_000_000)]
    to_version: Annotated[int, Field(ge=1, le=1_000_000)]


class TariffDiff(Model):
    from_version: int
    to_version: int
    removed: list[str] = Field(description="deck rows only in from_version")
    added: list[str] = Field(description="deck rows only in to_version")


@REGISTRY.operation("GET", "/tariffs/diff", right=Right.TARIFFS_READ, tag="tariffs",
                    summary="Deck rows removed and added between two versions",
                    query=DiffQuery, response=TariffDiff)
async def diff_tariff(call):
    q = call.query
    async with call.pool.acquire() as conn:
        await _known_facility(conn, q.facility)
        a = (await _deck_text(conn, q.facility, q.from_version)).splitlines()[1:]
        b = (await _deck_text(conn, q.facility, q.to_version)).splitlines()[1:]
    sa, sb = set(a), set(b)
    return TariffDiff(from_version=q.from_version, to_version=q.to_version,
                      removed=[r for r in a if r not in sb], added=[r for r in b if r not in sa])


class QuoteQuery(Model):
    facility: FacilityId
    number: NumberText
    at: UtcDateTime
    seconds: Annotated[int, Field(ge=0, le=CALL_SECONDS_MAX)] = 900
    payment_type: Payment = "prepaid"


class Quote(Model):
    facility: str
    number: str
    jurisdiction: str
    payment_type: str
    at: dt.datetime
    seconds: int
    billed_seconds: int
    tariff_version: int
    line: str
    connect: Money
    call: Money
    taxes: Money
    total: Money


async def _facility_and_destination(conn, facility_id: str, number: str):
    try:
        f = await facilities.load(conn, facility_id)
    except facilities.UnknownFacility:
        raise NotFoundProblem(f"facility {facility_id!r} does not exist") from None
    try:
        e164 = to_e164(number)
    except InvalidNumber as e:
        raise invalid("query", "number", str(e)) from None
    return f, classify(e164, f.state, f.local_exchanges)


@REGISTRY.operation("GET", "/tariffs/quote", right=Right.TARIFFS_READ, tag="tariffs",
                    summary="Price one call (the one pricing function)", query=QuoteQuery,
                    response=Quote)
async def quote(call):
    q = call.query
    async with call.pool.acquire() as conn:
        f, j = await _facility_and_destination(conn, q.facility, q.number)
        tariff = await store.load_tariff(conn, f.id)
    try:
        p = price(tariff, j, PaymentType(q.payment_type), q.at, q.seconds)
    except RatingRefusal as e:
        raise Conflict(str(e)) from None
    return Quote(facility=f.id, number=j.e164 or q.number, jurisdiction=j.kind.value,
                 payment_type=q.payment_type, at=q.at, seconds=q.seconds,
                 billed_seconds=p.billed_seconds, tariff_version=p.version, line=p.line,
                 connect=format_amount(p.connect_micros), call=format_amount(p.call_micros),
                 taxes=format_amount(p.tax_micros), total=format_amount(p.total_micros))


class MaxSecondsQuery(Model):
    facility: FacilityId
    number: NumberText
    at: UtcDateTime
    balance: AmountIn
    payment_type: Payment = "prepaid"
    seconds_max: Annotated[int, Field(ge=0, le=CALL_SECONDS_MAX)] = CALL_SECONDS_MAX


class MaxSeconds(Model):
    facility: str
    number: str
    jurisdiction: str
    balance: Money
    seconds: int = Field(description="the longest call the balance pays for, taxes included")
    total: Money = Field(description="what that call costs")


@REGISTRY.operation("GET", "/tariffs/max-seconds", right=Right.TARIFFS_READ, tag="tariffs",
                    summary="The longest call a balance buys, for a facility, number and time",
                    query=MaxSecondsQuery, response=MaxSeconds)
async def max_seconds(call):
    q = call.query
    try:
        balance = parse_amount(q.balance, allow_zero=True)
    except AmountInvalid as e:
        raise invalid("query", "balance", str(e)) from None
    async with call.pool.acquire() as conn:
        f, j = await _facility_and_destination(conn, q.facility, q.number)
        tariff = await store.load_tariff(conn, f.id)
    pay = PaymentType(q.payment_type)
    try:
        seconds = affordable_seconds(tariff, j, pay, q.at, balance, q.seconds_max)
        total = price(tariff, j, pay, q.at, seconds).total_micros
    except RatingRefusal as e:
        raise Conflict(str(e)) from None
    return MaxSeconds(facility=f.id, number=j.e164 or q.number, jurisdiction=j.kind.value,
                      balance=format_amount(balance), seconds=seconds, total=format_amount(total))
