"""Find and ask, and blocks: a holder finds a facility, then an inmate (only what the facility
publishes), asks to become an approved contact for a proven number (the contact's status is the
answer staff give), and blocks or unblocks calls from a facility or an inmate to their numbers.

A holder's block is a row of the switch's own `block` table (scope facility or inmate, requested
by the called party), so the core's authorization refuses those calls exactly as it refuses a
block keyed from the IVR; an unblock removes only called-party blocks, never staff's.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from families import audit, outbox
from families.errors import Invalid, NotFound, Refused
from families.numbers import parse_number, proven_owner
from switch.provisioning import directory

__all__ = ["find_facilities", "find_inmates", "request_contact", "requests_of", "decide",
           "ContactRequest", "block", "unblock", "blocks_of", "INMATE_MATCHES_MAX"]

INMATE_MATCHES_MAX = 20
NAME_QUERY_MIN = 2


async def find_facilities(conn: asyncpg.Connection, text: str | None) -> list[dict[str, Any]]:
    q = (text or "").strip()
    rows = await conn.fetch(
        "SELECT f.id, f.name, f.state, coalesce(p.publishes_inmates, true) AS publishes_inmates "
        "FROM facility f LEFT JOIN family_facility_policy p ON p.facility_id = f.id "
        "WHERE $1 = '' OR f.name ILIKE '%' || $1 || '%' OR f.id ILIKE $1 || '%' "
        "ORDER BY f.name, f.id LIMIT 50", q.replace("%", "").replace("_", ""))
    return [dict(r) for r in rows]


async def _publishes(conn: asyncpg.Connection, facility_id: str) -> None:
    r = await conn.fetchrow("SELECT coalesce(p.publishes_inmates, true) AS pub FROM facility f "
                            "LEFT JOIN family_facility_policy p ON p.facility_id = f.id "
                            "WHERE f.id = $1", facility_id)
    if r is None:
        raise NotFound("facility", f"no facility {facility_id!r}", "facility.unknown")
    if not r["pub"]:
        raise Refused("facility", "this facility does not publish its roster; ask it directly",
                      "facility.unpublished")


async def find_inmates(conn: asyncpg.Connection, facility_id: str, *, name: str | None = None,
                       inmate_id: str | None = None) -> list[dict[str, Any]]:
    """Inmates of a publishing facility by id (exact) or name (every word, in any order): their id
    and name only, and only active ones."""
    await _publishes(conn, facility_id)
    if inmate_id:
        rows = await conn.fetch("SELECT id, name FROM inmate WHERE facility_id = $1 AND id = $2 "
                                "AND status = 'active'", facility_id, inmate_id)
    else:
        words = [w.replace("%", "").replace("_", "") for w in (name or "").split()]
        words = [w for w in words if w]
        if sum(len(w) for w in words) < NAME_QUERY_MIN:
            raise Invalid("name", f"give at least {NAME_QUERY_MIN} letters of the name, or the id",
                      "name.too_short", min=NAME_QUERY_MIN)
        rows = await conn.fetch(
            "SELECT id, name FROM inmate WHERE facility_id = $1 AND status = 'active' AND "
            "(SELECT bool_and(name ILIKE '%' || w || '%') FROM unnest($2::text[]) w) "
            "ORDER BY name, id LIMIT $3", facility_id, words, INMATE_MATCHES_MAX)
    return [{"id": r["id"], "name": r["name"], "facility": facility_id} for r in rows]


@dataclass(frozen=True)
class ContactRequest:
    id: uuid.UUID
    holder_id: uuid.UUID
    inmate_id: str
    inmate_name: str
    facility_id: str
    number: str
    # The contact's status.
    state: Literal["requested", "approved", "denied", "removed"]
    created_at: dt.datetime
    decided_at: dt.datetime | None


_REQ = """SELECT r.id, r.holder_id, r.inmate_id, i.name AS inmate_name, i.facility_id, r.e164,
                 coalesce(c.status, 'removed') AS state, r.created_at, r.decided_at
          FROM family_contact_request r JOIN inmate i ON i.id = r.inmate_id
          LEFT JOIN contact c ON c.inmate_id = r.inmate_id AND c.e164 = r.e164"""


def _req(r: asyncpg.Record) -> ContactRequest:
    return ContactRequest(r["id"], r["holder_id"], r["inmate_id"], r["inmate_name"],
                          r["facility_id"], r["e164"], r["state"], r["created_at"],
                          r["decided_at"])


async def request_contact(conn: asyncpg.Connection, holder_id: uuid.UUID, inmate_id: str,
                          number: str, *, name: str,
                          relationship: str, now: dt.datetime) -> ContactRequest:
    async with conn.transaction():
        e164 = await proven_owner(conn, holder_id, number)
        facility = await conn.fetchval("SELECT facility_id FROM inmate WHERE id = $1 AND "
                                       "status = 'active'", inmate_id)
        if facility is None:
            raise NotFound("inmate", f"no inmate {inmate_id}", "inmate.unknown")
        await _publishes(conn, facility)
        prior = await conn.fetchrow(_REQ + " WHERE r.inmate_id = $1 AND r.e164 = $2",
                                    inmate_id, e164)
        if prior is not None and prior["holder_id"] == holder_id and \
                prior["state"] in ("requested", "approved"):
            return _req(prior)
        status = await conn.fetchval("SELECT status FROM contact WHERE inmate_id = $1 AND "
                                     "e164 = $2", inmate_id, e164)
        if status == "denied":
            raise Refused("number", "the facility denied this contact; ask the facility",
                          "contact.denied")
        if status not in ("approved", "requested"):
            try:
                await directory.add_contact(conn, inmate_id, e164, name=name,
                                            relationship=relationship, status="requested")
            except directory.Invalid as e:
                raise Refused("inmate", str(e), "contact.not_added") from None
        req_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO family_contact_request (id, holder_id, inmate_id, e164, created_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (inmate_id, e164) DO UPDATE SET "
            "holder_id = $2, created_at = $5, decided_by = NULL, decided_at = NULL",
            req_id, holder_id, inmate_id, e164, now)
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="contact.request", target=f"inmate:{inmate_id}",
                           detail={"number": e164})
        return _req(await conn.fetchrow(_REQ + " WHERE r.inmate_id = $1 AND r.e164 = $2",
                                        inmate_id, e164))


async def requests_of(conn: asyncpg.Connection, *, holder_id: uuid.UUID | None = None,
                      facilities: list[str] | None = None,
                      state: str | None = None) -> list[ContactRequest]:
    rows = await conn.fetch(
        _REQ + " WHERE ($1::uuid IS NULL OR r.holder_id = $1) AND "
        "($2::text[] IS NULL OR i.facility_id = ANY($2)) AND "
        "($3::text IS NULL OR coalesce(c.status, 'removed') = $3) ORDER BY r.created_at, r.id",
        holder_id, facilities, state)
    return [_req(r) for r in rows]


_DECIDED = {"en": ("Your contact request was {state}",
                   "{facility} {state} your request to be a contact of {inmate} at {number}."),
            "es": ("Su solicitud de contacto fue {state}",
                   "{facility}: solicitud de contacto de {inmate} al {number}: {state}.")}


async def decide(conn: asyncpg.Connection, request_id: uuid.UUID, *, approve: bool, actor: str,
                 now: dt.datetime,
                 facilities: list[str] | None = None) -> ContactRequest:
    """Staff approve or deny a request (within their facilities); the holder is mailed."""
    async with conn.transaction():
        r = await conn.fetchrow(_REQ + " WHERE r.id = $1", request_id)
        if r is None or (facilities is not None and r["facility_id"] not in facilities):
            raise NotFound("request", "no such contact request", "contact_request.unknown")
        if r["state"] != "requested":
            raise Refused("decision", f"the request is already {r['state']}",
                          "contact_request.decided", state=r["state"])
        status = "approved" if approve else "denied"
        await directory.set_contact_status(conn, r["inmate_id"], r["e164"], status)
        await conn.execute("UPDATE family_contact_request SET decided_by = $2, decided_at = $3 "
                           "WHERE id = $1", request_id, actor, now)
        h = await conn.fetchrow("SELECT email, language FROM family_holder WHERE id = $1",
                                r["holder_id"])
        facility = await conn.fetchval("SELECT name FROM facility WHERE id = $1",
                                       r["facility_id"])
        subject, body = _DECIDED[h["language"]]
        fields = {"state": status, "facility": facility, "inmate": r["inmate_name"],
                  "number": r["e164"]}
        await outbox.enqueue(conn, at=now, holder_id=r["holder_id"], recipient=h["email"],
                             kind="contact_decision", subject=subject.format(**fields),
                             body=body.format(**fields))
        await audit.record(conn, at=now, actor=actor, action=f"contact.{status}",
                           target=f"inmate:{r['inmate_id']}",
                           detail={"number": r["e164"], "request": str(request_id)})
        return _req(await conn.fetchrow(_REQ + " WHERE r.id = $1", request_id))


# -- blocks ---------------------------------------------------------------------------------

async def _scope(conn: asyncpg.Connection, facility_id: str | None,
                 inmate_id: str | None) -> tuple[str, str | None,
                                                                                 str | None]:
    if (facility_id is None) == (inmate_id is None):
        raise Invalid("facility", "block a facility or an inmate (one of them)", "block.one_target")
    if facility_id is not None:
        if not await conn.fetchval("SELECT true FROM facility WHERE id = $1", facility_id):
            raise NotFound("facility", f"no facility {facility_id!r}", "facility.unknown")
        return "facility", facility_id, None
    fac = await conn.fetchval("SELECT facility_id FROM inmate WHERE id = $1", inmate_id)
    if fac is None:
        raise NotFound("inmate", f"no inmate {inmate_id}", "inmate.unknown")
    return "inmate", fac, inmate_id


async def block(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *,
                facility_id: str | None = None,
                inmate_id: str | None = None, now: dt.datetime) -> None:
    async with conn.transaction():
        e164 = await proven_owner(conn, holder_id, number)
        scope, fac, inmate = await _scope(conn, facility_id, inmate_id)
        await directory.add_block(conn, e164, scope=scope, facility_id=fac, inmate_id=inmate,
                                  reason="blocked by the number's holder",
                                  requested_by="called_party")
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="block.add", target=e164,
                           detail={"scope": scope, "facility": fac, "inmate": inmate})


async def unblock(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *,
                  facility_id: str | None = None,
                  inmate_id: str | None = None, now: dt.datetime) -> int:
    async with conn.transaction():
        e164 = await proven_owner(conn, holder_id, number)
        scope, fac, inmate = await _scope(conn, facility_id, inmate_id)
        status = await conn.execute(
            "DELETE FROM block WHERE pattern = $1 AND NOT is_prefix AND scope = $2 AND "
            "requested_by = 'called_party' AND (($2 = 'facility' AND facility_id = $3) OR "
            "($2 = 'inmate' AND inmate_id = $4))", e164, scope, fac, inmate)
        removed = int(status.split()[-1])
        if not removed:
            raise NotFound("block", "no such block of yours on this number", "block.unknown")
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="block.remove", target=e164,
                           detail={"scope": scope, "facility": fac, "inmate": inmate})
        return removed


async def blocks_of(conn: asyncpg.Connection, holder_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT b.pattern, b.scope, b.facility_id, b.inmate_id, b.requested_by, b.created_at "
        "FROM block b JOIN family_number n ON n.e164 = b.pattern AND n.state = 'proven' "
        "WHERE n.holder_id = $1 AND NOT b.is_prefix AND b.scope IN ('facility', 'inmate') "
        "ORDER BY b.created_at, b.id", holder_id)
    return [dict(r) for r in rows]


__all__ += ["parse_number"]
