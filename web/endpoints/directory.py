"""The directory over HTTP: facilities, kiosks, inmates (PIN unlock), contacts, blocks, routes
and calling schedules. Writes go through switch.provisioning.directory, the rules the CLI uses, and each is
audited with the row before and after. facility_staff reach only their facilities' things."""
from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from switch.provisioning import directory
from switch.rules.kiosk_source import SOURCES_PER_KIOSK_MAX, SourceError, parse_sources
from web.endpoints import REGISTRY
from web.endpoints.common import Model, Text
from web.problems import Forbidden, NotFoundProblem, invalid
from web.roles import Right

FacilityId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
KioskId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                           pattern=r"^[A-Za-z0-9_-]+$")]
InmateId = Annotated[str, StringConstraints(pattern=r"^[0-9]{3,15}$")]
Unit = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                        pattern=r"^[^\x00-\x1f\x7f]+$")]
Pin = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
NumberText = Annotated[str, StringConstraints(min_length=1, max_length=32,
                                              pattern=r"^[^\x00-\x1f\x7f]+$")]
Language = Literal["en", "es"]


def _row(r) -> dict | None:
    return None if r is None else json.loads(r)


async def _snapshot(conn, sql: str, *args) -> dict | None:
    return _row(await conn.fetchval(sql, *args))


def _directory_problem(e: Exception, field: str = "(whole)"):
    if isinstance(e, directory.NotFound):
        return NotFoundProblem(str(e))
    return invalid("body", field, str(e))


# -- facilities -------------------------------------------------------------------------------

class FacilityOut(Model):
    id: str
    name: str
    state: str
    time_zone: str
    adp: int
    kind: str
    profile: str
    max_call_seconds: int
    default_language: str
    recording: bool
    trunk: str | None


class FacilityList(Model):
    facilities: list[FacilityOut]


class FacilityPath(Model):
    facility: FacilityId


_FACILITY_COLS = ("id, name, state, time_zone, adp, kind, profile, max_call_seconds, "
                  "default_language, recording, trunk")


@REGISTRY.operation("GET", "/facilities", right=Right.DIRECTORY_READ, tag="directory",
                    summary="Facilities (facility_staff: their own)", response=FacilityList)
async def list_facilities(call):
    scope = call.facilities(None)
    async with call.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {_FACILITY_COLS} FROM facility WHERE $1::text[] IS NULL "
                                "OR id = ANY($1) ORDER BY id", scope)
    return FacilityList(facilities=[FacilityOut(**dict(r)) for r in rows])


@REGISTRY.operation("GET", "/facilities/{facility}", right=Right.DIRECTORY_READ,
                    tag="directory", summary="One facility", path_model=FacilityPath,
                    response=FacilityOut)
async def get_facility(call):
    call.require_facility(call.path.facility)
    async with call.pool.acquire() as conn:
        r = await conn.fetchrow(f"SELECT {_FACILITY_COLS} FROM facility WHERE id = $1",
                                call.path.facility)
    if r is None:
        raise NotFoundProblem(f"facility {call.path.facility!r} does not exist")
    return FacilityOut(**dict(r))


class FacilityIn(Model):
    id: FacilityId
    name: Annotated[Text, StringConstraints(min_length=1, max_length=200)]
    state: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    adp: Annotated[int, Field(ge=0, le=10_000_000)]
    kind: Literal["prison", "jail"]
    profile: Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[a-z0-9._-]+$")]
    local_exchanges: list[Annotated[str, StringConstraints(max_length=16)]] = Field(
        default_factory=list, max_length=1000)


class FacilityUpdate(Model):
    max_call_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] | None = None
    recording: bool | None = None
    default_language: Language | None = None
    trunk: Annotated[str, StringConstraints(min_length=5, max_length=200,
                                            pattern=r"^sip:[^\x00-\x20\x7f]+$")] | None = None
    adp: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


_FACILITY_SNAP = "SELECT to_jsonb(f)::text FROM facility f WHERE id = $1"


@REGISTRY.operation("POST", "/facilities", right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Add a facility (its rate-cap profile must be known)",
                    body=FacilityIn, response=FacilityOut, status=201)
async def add_facility(call):
    from rating import facility as facilities
    from rating.profiles import load_profiles
    b = call.body
    if call.principal.facilities is not None:
        raise Forbidden("facility_staff may not add facilities")
    try:
        f = facilities.Facility(id=b.id, name=b.name, state=b.state, time_zone=b.time_zone,
                                adp=b.adp, kind=b.kind, profile=b.profile,
                                local_exchanges=tuple(b.local_exchanges))
    except facilities.FacilityError as e:
        raise invalid("body", getattr(e, "field", "(whole)"), str(e)) from None
    if f.profile not in load_profiles():
        raise invalid("body", "profile", f"unknown profile {f.profile!r}")
    async with call.change() as conn:
        try:
            await facilities.add(conn, f)
        except facilities.FacilityError as e:
            raise invalid("body", getattr(e, "field", "id"), str(e)) from None
        await call.audit(conn, "facility.add", f"facility:{f.id}", None,
                         await _snapshot(conn, _FACILITY_SNAP, f.id))
        r = await conn.fetchrow(f"SELECT {_FACILITY_COLS} FROM facility WHERE id = $1", f.id)
    return FacilityOut(**dict(r))


@REGISTRY.operation("POST", "/facilities/{facility}", right=Right.DIRECTORY_WRITE,
                    tag="directory", summary="Change a facility's call-control settings",
                    path_model=FacilityPath, body=FacilityUpdate, response=FacilityOut)
async def update_facility(call):
    facility = call.path.facility
    call.require_facility(facility)
    changes = {k: v for k, v in call.body.model_dump().items() if v is not None}
    if not changes:
        raise invalid("body", "(whole)", "nothing to update: give at least one field")
    async with call.change() as conn:
        before = await _snapshot(conn, _FACILITY_SNAP + " FOR UPDATE", facility)
        if before is None:
            raise NotFoundProblem(f"facility {facility!r} does not exist")
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, 2))
        await conn.execute(f"UPDATE facility SET {sets} WHERE id = $1", facility,
                           *changes.values())
        await call.audit(conn, "facility.update", f"facility:{facility}", before,
                         await _snapshot(conn, _FACILITY_SNAP, facility))
        r = await conn.fetchrow(f"SELECT {_FACILITY_COLS} FROM facility WHERE id = $1",
                                facility)
    return FacilityOut(**dict(r))


# -- kiosks -----------------------------------------------------------------------------------

def _one_network(v: str) -> str:
    # The CLI's own rule (switch.rules.kiosk_source), one network per entry: a comma here would let one
    # entry smuggle in several past the per-kiosk limit.
    if "," in v:
        raise ValueError(f"{v!r}: one network per entry (give several as several entries)")
    try:
        (net,) = parse_sources(v)
    except SourceError as e:
        raise ValueError(str(e).removeprefix("source #1 ")) from None
    return str(net)


SourceNetwork = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_one_network),
    Field(description="a network the kiosk calls from: CIDR (10.1.2.0/24, 2001:db8::/48) or a "
                      "bare address (a /32 or /128); host bits under the mask are refused",
          examples=["10.1.2.0/24"])]


class KioskIn(Model):
    id: KioskId
    facility: FacilityId
    unit: Unit | None = None
    sources: list[SourceNetwork] = Field(
        default_factory=list, max_length=SOURCES_PER_KIOSK_MAX,
        description="the networks the kiosk may call from (replaces the kiosk's list); empty: "
                    "from anywhere, unless the node requires sources. A trusted kiosk's PIN "
                    "header counts only from these.")
    trusted: bool = False


class KioskOut(Model):
    id: str
    facility: str
    unit: str | None
    sources: list[str] = Field(description="CIDR networks, as stored (a bare address as /32)")
    trusted: bool
    active: bool


class KioskList(Model):
    kiosks: list[KioskOut]


class FacilityFilter(Model):
    facility: FacilityId | None = None


def _kiosk(r) -> KioskOut:
    return KioskOut(id=r["id"], facility=r["facility_id"], unit=r["unit"],
                    sources=[str(n) for n in r["sources"]],
                    trusted=r["trusted"], active=r["active"])


@REGISTRY.operation("GET", "/kiosks", right=Right.DIRECTORY_READ, tag="directory",
                    summary="Kiosks", query=FacilityFilter, response=KioskList)
async def list_kiosks(call):
    scope = call.facilities(call.query.facility)
    async with call.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM kiosk WHERE $1::text[] IS NULL OR "
                                "facility_id = ANY($1) ORDER BY id", scope)
    return KioskList(kiosks=[_kiosk(r) for r in rows])


@REGISTRY.operation("POST", "/kiosks", right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Add or update a kiosk", body=KioskIn, response=KioskOut)
async def put_kiosk(call):
    b = call.body
    call.require_facility(b.facility)
    snap = "SELECT to_jsonb(k)::text FROM kiosk k WHERE id = $1"
    async with call.change() as conn:
        before = await _snapshot(conn, snap, b.id)
        if before is not None:
            call.require_facility(before["facility_id"])
        try:
            await directory.add_kiosk(conn, b.id, b.facility, unit=b.unit, sources=list(b.sources),
                                      trusted=b.trusted)
        except (directory.Invalid, directory.NotFound) as e:
            raise _directory_problem(e, "id") from None
        await call.audit(conn, "kiosk.put", f"kiosk:{b.id}", before,
                         await _snapshot(conn, snap, b.id))
        return _kiosk(await conn.fetchrow("SELECT * FROM kiosk WHERE id = $1", b.id))


# -- inmates ----------------------------------------------------------------------------------

class InmateOut(Model):
    id: str
    name: str
    facility: str
    unit: str | None
    status: Literal["active", "suspended", "released"]
    language: str
    calls_per_day: int | None
    minutes_per_day: int | None
    calls_per_month: int | None
    minutes_per_month: int | None
    contacts_max: int
    has_recorded_name: bool
    created_at: dt.datetime


class InmateList(Model):
    inmates: list[InmateOut]


class InmatePath(Model):
    inmate: InmateId


Quota = Annotated[int, Field(ge=0, le=100_000)]


class InmateIn(Model):
    id: InmateId
    name: Annotated[Text, StringConstraints(min_length=1, max_length=200)]
    facility: FacilityId
    pin: Pin
    unit: Unit | None = None
    language: Language = "en"
    calls_per_day: Quota | None = None
    minutes_per_day: Quota | None = None
    calls_per_month: Quota | None = None
    minutes_per_month: Quota | None = None


class InmateUpdate(Model):
    status: Literal["active", "suspended", "released"] | None = None
    language: Language | None = None
    pin: Pin | None = None


def _inmate(r) -> InmateOut:
    return InmateOut(id=r["id"], name=r["name"], facility=r["facility_id"], unit=r["unit"],
                     status=r["status"], language=r["language"],
                     calls_per_day=r["calls_per_day"], minutes_per_day=r["minutes_per_day"],
                     calls_per_month=r["calls_per_month"],
                     minutes_per_month=r["minutes_per_month"], contacts_max=r["contacts_max"],
                     has_recorded_name=r["name_wav"] is not None, created_at=r["created_at"])


_INMATE_SNAP = "SELECT (to_jsonb(i) - 'pin_hash')::text FROM inmate i WHERE id = $1"


async def _inmate_row(conn, call, inmate_id: str, *, lock: bool = False):
    r = await conn.fetchrow("SELECT * FROM inmate WHERE id = $1" + (" FOR UPDATE" if lock
                                                                     else ""), inmate_id)
    if r is None:
        raise NotFoundProblem(f"inmate {inmate_id!r} does not exist")
    call.require_facility(r["facility_id"])
    return r


@REGISTRY.operation("GET", "/inmates", right=Right.DIRECTORY_READ, tag="directory",
                    summary="Inmates", query=FacilityFilter, response=InmateList)
async def list_inmates(call):
    scope = call.facilities(call.query.facility)
    async with call.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM inmate WHERE $1::text[] IS NULL OR "
                                "facility_id = ANY($1) ORDER BY id", scope)
    return InmateList(inmates=[_inmate(r) for r in rows])


@REGISTRY.operation("GET", "/inmates/{inmate}", right=Right.DIRECTORY_READ, tag="directory",
                    summary="One inmate", path_model=InmatePath, response=InmateOut)
async def get_inmate(call):
    async with call.pool.acquire() as conn:
        return _inmate(await _inmate_row(conn, call, call.path.inmate))


@REGISTRY.operation("POST", "/inmates", right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Enrol an inmate (creates their debit account)", body=InmateIn,
                    response=InmateOut, status=201)
async def add_inmate(call):
    b = call.body
    call.require_facility(b.facility)
    quotas = {k: getattr(b, k) for k in ("calls_per_day", "minutes_per_day", "calls_per_month",
                                         "minutes_per_month")}
    async with call.change() as conn:
        if await conn.fetchval("SELECT true FROM inmate WHERE id = $1", b.id):
            raise invalid("body", "id", f"inmate {b.id} already exists")
        try:
            await directory.add_inmate(conn, b.id, b.name, b.facility, b.pin, unit=b.unit,
                                       language=b.language, quotas=quotas,
                                       currency=call.services.currency)
        except (directory.Invalid, directory.NotFound) as e:
            raise _directory_problem(e) from None
        await call.audit(conn, "inmate.add", f"inmate:{b.id}", None,
                         await _snapshot(conn, _INMATE_SNAP, b.id))
        return _inmate(await conn.fetchrow("SELECT * FROM inmate WHERE id = $1", b.id))


@REGISTRY.operation("POST", "/inmates/{inmate}", right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Change an inmate's status, language or PIN", path_model=InmatePath,
                    body=InmateUpdate, response=InmateOut)
async def update_inmate(call):
    b, inmate_id = call.body, call.path.inmate
    async with call.change() as conn:
        await _inmate_row(conn, call, inmate_id, lock=True)
        before = await _snapshot(conn, _INMATE_SNAP, inmate_id)
        if b.pin is not None:
            await directory.set_pin(conn, inmate_id, b.pin)
        for col in ("status", "language"):
            if getattr(b, col) is not None:
                await conn.execute(f"UPDATE inmate SET {col} = $2 WHERE id = $1", inmate_id,
                                   getattr(b, col))
        after = await _snapshot(conn, _INMATE_SNAP, inmate_id)
        if b.pin is not None:
            after["pin_changed"] = True           # the PIN itself never enters the audit trail
        await call.audit(conn, "inmate.update", f"inmate:{inmate_id}", before, after)
        return _inmate(await conn.fetchrow("SELECT * FROM inmate WHERE id = $1", inmate_id))


class Unlocked(Model):
    inmate: str
    failures_cleared: int


@REGISTRY.operation("POST", "/inmates/{inmate}/unlock", right=Right.DIRECTORY_WRITE,
                    tag="directory", summary="Clear a PIN lockout (failures before now stop "
                    "counting)", path_model=InmatePath, response=Unlocked)
async def unlock_inmate(call):
    inmate_id = call.path.inmate
    async with call.change() as conn:
        await _inmate_row(conn, call, inmate_id, lock=True)
        # Failures count only after the inmate's last successful attempt: an operator's unlock
        # is recorded as one, so the failures before it no longer lock the PIN.
        failures = await conn.fetchval(
            "SELECT count(*) FROM pin_attempt WHERE inmate_id = $1 AND NOT ok AND id > "
            "coalesce((SELECT max(id) FROM pin_attempt WHERE inmate_id = $1 AND ok), 0)",
            inmate_id)
        await conn.execute("INSERT INTO pin_attempt (kiosk, inmate_id, ok, outcome, source) "
                           "VALUES ($1, $2, true, 'unlocked', 'operator')",
                           f"operator:{call.principal.actor}", inmate_id)
        await call.audit(conn, "inmate.unlock", f"inmate:{inmate_id}",
                         {"failures": failures}, {"failures": 0})
    return Unlocked(inmate=inmate_id, failures_cleared=failures)


# -- contacts ---------------------------------------------------------------------------------

class ContactIn(Model):
    number: NumberText
    name: Text = ""
    relationship: Text = ""
    status: Literal["requested", "approved"] = "requested"
    privileged: bool = False
    passive_accept: bool = False


class ContactOut(Model):
    inmate: str
    number: str
    name: str
    relationship: str
    status: Literal["requested", "approved", "denied", "removed"]
    privileged: bool
    passive_accept: bool
    updated_at: dt.datetime


class ContactList(Model):
    contacts: list[ContactOut]


class ContactPath(Model):
    inmate: InmateId
    number: NumberText


class ContactStatusIn(Model):
    status: Literal["approved", "denied", "removed"]


def _contact(r) -> ContactOut:
    return ContactOut(inmate=r["inmate_id"], number=r["e164"], name=r["name"],
                      relationship=r["relationship"], status=r["status"],
                      privileged=r["privileged"], passive_accept=r["passive_accept"],
                      updated_at=r["updated_at"])


_CONTACT_SNAP = "SELECT to_jsonb(c)::text FROM contact c WHERE inmate_id = $1 AND e164 = $2"


@REGISTRY.operation("GET", "/inmates/{inmate}/contacts", right=Right.DIRECTORY_READ,
                    tag="directory", summary="An inmate's contacts", path_model=InmatePath,
                    response=ContactList)
async def list_contacts(call):
    async with call.pool.acquire() as conn:
        await _inmate_row(conn, call, call.path.inmate)
        rows = await conn.fetch("SELECT * FROM contact WHERE inmate_id = $1 ORDER BY e164",
                                call.path.inmate)
    return ContactList(contacts=[_contact(r) for r in rows])


@REGISTRY.operation("POST", "/inmates/{inmate}/contacts", right=Right.DIRECTORY_WRITE,
                    tag="directory", summary="Request (or add approved) a contact",
                    path_model=InmatePath, body=ContactIn, response=ContactOut, status=201)
async def add_contact(call):
    b, inmate_id = call.body, call.path.inmate
    async with call.change() as conn:
        await _inmate_row(conn, call, inmate_id)
        try:
            e164 = await directory.add_contact(
                conn, inmate_id, b.number, name=b.name, relationship=b.relationship,
                status=b.status, privileged=b.privileged, passive_accept=b.passive_accept)
        except directory.Invalid as e:
            field = "number" if str(e).startswith("number") else "status"
            raise invalid("body", field, str(e)) from None
        await call.audit(conn, "contact.add", f"inmate:{inmate_id}", None,
                         await _snapshot(conn, _CONTACT_SNAP, inmate_id, e164))
        return _contact(await conn.fetchrow("SELECT * FROM contact WHERE inmate_id = $1 AND "
                                            "e164 = $2", inmate_id, e164))


@REGISTRY.operation("POST", "/inmates/{inmate}/contacts/{number}/status",
                    right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Approve, deny or remove a contact", path_model=ContactPath,
                    body=ContactStatusIn, response=ContactOut)
async def set_contact_status(call):
    inmate_id = call.path.inmate
    async with call.change() as conn:
        await _inmate_row(conn, call, inmate_id)
        try:
            e164 = directory._e164("number", call.path.number)
        except directory.Invalid as e:
            raise invalid("path", "number", str(e)) from None
        before = await _snapshot(conn, _CONTACT_SNAP, inmate_id, e164)
        if before is None:
            raise NotFoundProblem(f"inmate {inmate_id} has no contact {e164}")
        if call.body.status == "approved" and before["status"] != "approved":
            limit = await conn.fetchval("SELECT contacts_max FROM inmate WHERE id = $1",
                                        inmate_id)
            count = await conn.fetchval(
                "SELECT count(*) FROM contact WHERE inmate_id = $1 AND status IN "
                "('requested', 'approved') AND e164 <> $2", inmate_id, e164)
            if count >= limit:
                raise invalid("body", "status", f"inmate {inmate_id} already has {count} "
                              f"contacts (limit {limit})")
        await directory.set_contact_status(conn, inmate_id, e164, call.body.status)
        await call.audit(conn, f"contact.{call.body.status}", f"inmate:{inmate_id}", before,
                         await _snapshot(conn, _CONTACT_SNAP, inmate_id, e164))
        return _contact(await conn.fetchrow("SELECT * FROM contact WHERE inmate_id = $1 AND "
                                            "e164 = $2", inmate_id, e164))


# -- blocks -----------------------------------------------------------------------------------

class BlockIn(Model):
    pattern: NumberText = Field(description="a number, or with prefix=true a '+digits' prefix")
    prefix: bool = False
    scope: Literal["global", "facility", "inmate"] = "global"
    facility: FacilityId | None = None
    inmate: InmateId | None = None
    reason: Text = ""


class BlockOut(Model):
    id: int
    pattern: str
    prefix: bool
    scope: str
    facility: str | None
    inmate: str | None
    reason: str
    requested_by: str
    created_at: dt.datetime


class BlockList(Model):
    blocks: list[BlockOut]


def _block(r) -> BlockOut:
    return BlockOut(id=r["id"], pattern=r["pattern"], prefix=r["is_prefix"], scope=r["scope"],
                    facility=r["facility_id"], inmate=r["inmate_id"], reason=r["reason"],
                    requested_by=r["requested_by"], created_at=r["created_at"])


@REGISTRY.operation("GET", "/blocks", right=Right.DIRECTORY_READ, tag="directory",
                    summary="Blocked numbers and prefixes", response=BlockList)
async def list_blocks(call):
    scope = call.facilities(None)
    async with call.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT b.* FROM block b LEFT JOIN inmate i ON i.id = b.inmate_id "
            "WHERE $1::text[] IS NULL OR b.scope = 'global' OR b.facility_id = ANY($1) "
            "OR i.facility_id = ANY($1) ORDER BY b.id", scope)
    return BlockList(blocks=[_block(r) for r in rows])


@REGISTRY.operation("POST", "/blocks", right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Block a number or prefix (idempotent)", body=BlockIn,
                    response=BlockList, status=201)
async def add_block(call):
    b = call.body
    async with call.change() as conn:
        if b.scope == "global" and call.principal.facilities is not None:
            raise Forbidden("facility_staff may block for their facilities, not globally")
        if b.scope == "facility":
            call.require_facility(b.facility)
        if b.scope == "inmate":
            if b.inmate is None:
                raise invalid("body", "inmate", "an inmate block names the inmate")
            await _inmate_row(conn, call, b.inmate)
        try:
            await directory.add_block(conn, b.pattern, scope=b.scope, facility_id=b.facility,
                                      inmate_id=b.inmate, prefix=b.prefix, reason=b.reason)
        except directory.Invalid as e:
            msg = str(e)
            field = ("facility" if "facility" in msg else "inmate" if "inmate" in msg
                     else "pattern")
            raise invalid("body", field, msg) from None
        except Exception as e:
            import asyncpg
            if isinstance(e, asyncpg.ForeignKeyViolationError):
                raise invalid("body", "facility", "no such facility") from None
            raise
        rows = await conn.fetch("SELECT * FROM block WHERE scope = $1 AND is_prefix = $2 AND "
                                "coalesce(facility_id, '') = coalesce($3, '') AND "
                                "coalesce(inmate_id, '') = coalesce($4, '') ORDER BY id DESC "
                                "LIMIT 1", b.scope, b.prefix,
                                b.facility if b.scope != "global" else None,
                                b.inmate if b.scope == "inmate" else None)
        await call.audit(conn, "block.add", f"block:{rows[0]['pattern'] if rows else b.pattern}",
                         None, {"scope": b.scope, "pattern": b.pattern, "prefix": b.prefix,
                                "facility": b.facility, "inmate": b.inmate, "reason": b.reason})
        return BlockList(blocks=[_block(r) for r in rows])


# -- routes and schedules ---------------------------------------------------------------------

class RouteIn(Model):
    prefix: Annotated[str, StringConstraints(pattern=r"^\+[0-9]{0,15}$")]
    trunk: Annotated[str, StringConstraints(min_length=5, max_length=200,
                                            pattern=r"^[^\x00-\x20\x7f]+$")]
    priority: Annotated[int, Field(ge=0, le=1000)] = 0
    capacity: Annotated[int, Field(ge=0, le=100_000)] = 0


class RouteOut(Model):
    id: int
    prefix: str
    priority: int
    trunk: str
    capacity: int


class RouteList(Model):
    routes: list[RouteOut]


@REGISTRY.operation("GET", "/routes", right=Right.DIRECTORY_READ, tag="directory",
                    summary="Outbound trunks by destination prefix", response=RouteList)
async def list_routes(call):
    async with call.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM route ORDER BY prefix, priority")
    return RouteList(routes=[RouteOut(**dict(r)) for r in rows])


@REGISTRY.operation("POST", "/routes", right=Right.DIRECTORY_WRITE, tag="directory",
                    summary="Add or update a route (node-wide: not for facility_staff)",
                    body=RouteIn, response=RouteOut)
async def put_route(call):
    b = call.body
    if call.principal.facilities is not None:
        raise Forbidden("routes are node-wide; facility_staff may not change them")
    snap = "SELECT to_jsonb(r)::text FROM route r WHERE prefix = $1 AND priority = $2"
    async with call.change() as conn:
        before = await _snapshot(conn, snap, b.prefix, b.priority)
        try:
            await directory.add_route(conn, b.prefix, b.trunk, priority=b.priority,
                                      capacity=b.capacity)
        except directory.Invalid as e:
            raise invalid("body", "trunk" if "trunk" in str(e) else "prefix", str(e)) from None
        after = await _snapshot(conn, snap, b.prefix, b.priority)
        await call.audit(conn, "route.put", f"route:{b.prefix}/{b.priority}", before, after)
        return RouteOut(**{k: after[k] for k in ("id", "prefix", "priority", "trunk",
                                                 "capacity")})


class WindowIn(Model):
    spec: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="e.g. 'mon-fri 08:00-22:00'")
    unit: Unit | None = None


class WindowOut(Model):
    id: int
    facility: str
    unit: str | None
    spec: str


class WindowList(Model):
    windows: list[WindowOut]


def _window(r) -> WindowOut:
    return WindowOut(id=r["id"], facility=r["facility_id"], unit=r["unit"], spec=r["spec"])


@REGISTRY.operation("GET", "/facilities/{facility}/schedule", right=Right.DIRECTORY_READ,
                    tag="directory", summary="A facility's calling windows",
                    path_model=FacilityPath, response=WindowList)
async def list_windows(call):
    call.require_facility(call.path.facility)
    async with call.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM calling_window WHERE facility_id = $1 ORDER BY "
                                "id", call.path.facility)
    return WindowList(windows=[_window(r) for r in rows])


@REGISTRY.operation("POST", "/facilities/{facility}/schedule", right=Right.DIRECTORY_WRITE,
                    tag="directory", summary="Add a calling window", path_model=FacilityPath,
                    body=WindowIn, response=WindowOut, status=201)
async def add_window(call):
    facility = call.path.facility
    call.require_facility(facility)
    async with call.change() as conn:
        try:
            await directory.add_window(conn, facility, call.body.spec, unit=call.body.unit)
        except directory.Invalid as e:
            raise invalid("body", "spec", str(e)) from None
        except directory.NotFound as e:
            raise NotFoundProblem(str(e)) from None
        r = await conn.fetchrow("SELECT * FROM calling_window WHERE facility_id = $1 "
                                "ORDER BY id DESC LIMIT 1", facility)
        await call.audit(conn, "schedule.add", f"facility:{facility}", None,
                         {"id": r["id"], "unit": r["unit"], "spec": r["spec"]})
        return _window(r)


# -- recorded names ---------------------------------------------------------------------------

NAME_UPLOAD_CHARACTERS_MAX = 900_000   # base64 of a few seconds of PCM, inside the body limit


class NameIn(Model):
    wav_base64: Annotated[str, StringConstraints(min_length=4,
                                                 max_length=NAME_UPLOAD_CHARACTERS_MAX)] = \
        Field(description="a PCM WAV file (any rate), base64; made 8 kHz mono, trimmed, levelled")


@REGISTRY.operation("POST", "/inmates/{inmate}/name", right=Right.DIRECTORY_WRITE,
                    tag="directory", summary="Upload the inmate's recorded name (played to "
                    "called parties)", path_model=InmatePath, body=NameIn, response=InmateOut)
async def upload_name(call):
    import base64
    import binascii
    import os
    import tempfile
    from pathlib import Path
    inmate_id = call.path.inmate
    try:
        wav = base64.b64decode(call.body.wav_base64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid("body", "wav_base64", f"not base64: {e}") from None
    data_dir = Path(call.services.data_dir)
    async with call.change() as conn:
        await _inmate_row(conn, call, inmate_id, lock=True)
        before = await _snapshot(conn, _INMATE_SNAP, inmate_id)
        (data_dir / "uploads").mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".wav", dir=data_dir / "uploads")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(wav)
            try:
                await directory.record_name(conn, inmate_id, Path(tmp), data_dir)
            except directory.Invalid as e:
                raise invalid("body", "wav_base64",
                              str(e).replace(tmp, "the upload")) from None
        finally:
            os.unlink(tmp)
        await call.audit(conn, "inmate.name", f"inmate:{inmate_id}", before,
                         await _snapshot(conn, _INMATE_SNAP, inmate_id))
        return _inmate(await conn.fetchrow("SELECT * FROM inmate WHERE id = $1", inmate_id))
