"""Tariffs in PostgreSQL: import a deck as a new version (all or nothing), load a facility's tariff.

A facility's `Tariff` is all its versions; a facility with none uses the agency-wide default
versions (facility NULL), in the facility's own time zone. Versions are numbered 1, 2, ... per
facility (and for the agency) under an advisory lock, and never edited afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg

from rating import deck as decks
from rating import facility as facilities
from rating.calendar import Holiday
from rating.errors import RateCapExceeded
from rating.import_codes import DeckErrorCode as C
from rating.profiles import Profile, Violation, check, load_profiles
from rating.tariff import (
    AGENCY_PLAN,
    FALLBACK_DEPTH_MAX,
    Band,
    CapAction,
    Line,
    PaymentType,
    RateGroup,
    Rounding,
    Surcharge,
    SurchargeKind,
    Tariff,
    TariffVersion,
)

__all__ = [
    "VersionInfo",
    "Imported",
    "load_tariff",
    "load_versions",
    "list_versions",
    "save_version",
    "import_deck",
    "AGENCY_TIME_ZONE",
]

AGENCY_TIME_ZONE = "UTC"  # how agency versions are read when no facility is in view
_LOCK_NAMESPACE = 0x1C5_7A41  # advisory lock: one import per facility at a time


@dataclass(frozen=True)
class VersionInfo:
    facility_id: str | None
    number: int
    effective_from: datetime
    imported_at: datetime
    source: str
    lines: int
    surcharges: int


@dataclass(frozen=True)
class Imported:
    version: TariffVersion
    violations: list[Violation]  # empty unless the import was told to accept them
    unchanged: bool = False  # identical to the latest version, already in force: no-op


async def _version_rows(
    conn: asyncpg.Connection, facility_id: str | None, number: int | None = None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, facility_id, number, effective_from, parent FROM tariff_version "
        "WHERE facility_id IS NOT DISTINCT FROM $1 AND ($2::int IS NULL OR number = $2) "
        "ORDER BY effective_from, number",
        facility_id,
        number,
    )
    return rows


async def load_versions(
    conn: asyncpg.Connection, facility_id: str | None, number: int | None = None
) -> list[TariffVersion]:
    """The versions stored for one facility (None: the agency), oldest first."""
    rows = await _version_rows(conn, facility_id, number)
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    lines = await conn.fetch(
        "SELECT * FROM tariff_line WHERE version_id = ANY($1::bigint[]) "
        "ORDER BY version_id, position",
        ids,
    )
    groups = await conn.fetch(
        "SELECT * FROM tariff_rate_group WHERE version_id = ANY($1::bigint[]) "
        "ORDER BY version_id, line_position, position",
        ids,
    )
    extras = await conn.fetch(
        "SELECT * FROM tariff_surcharge WHERE version_id = ANY($1::bigint[]) "
        "ORDER BY version_id, position",
        ids,
    )
    days_off = await conn.fetch(
        "SELECT * FROM tariff_holiday WHERE version_id = ANY($1::bigint[]) "
        "ORDER BY version_id, position",
        ids,
    )
    holidays_of: dict[int, list[Holiday]] = {}
    for h in days_off:
        holidays_of.setdefault(h["version_id"], []).append(Holiday(h["name"], tuple(h["dates"])))
    groups_of: dict[tuple[int, int], list[RateGroup]] = {}
    for g in groups:
        groups_of.setdefault((g["version_id"], g["line_position"]), []).append(
            RateGroup(g["from_second"], g["price_micros"], g["per_seconds"], g["increment_seconds"])
        )
    lines_of: dict[int, list[Line]] = {}
    for r in lines:
        lines_of.setdefault(r["version_id"], []).append(
            Line(
                r["name"],
                r["destination"],
                PaymentType(r["payment"]),
                Band(r["days"], r["start_second"], r["weight"], tuple(r["dates"])),
                tuple(groups_of.get((r["version_id"], r["position"]), ())),
                r["connect_micros"],
                r["minimum_seconds"],
                r["cost_cap_micros"],
                Rounding(r["rounding"]),
                r["decimals"],
                CapAction(r["cap_action"]),
                r["closed"],
            )
        )
    extras_of: dict[int, list[Surcharge]] = {}
    for s in extras:
        extras_of.setdefault(s["version_id"], []).append(
            Surcharge(
                SurchargeKind(s["kind"]),
                s["name"],
                s["destination"],
                PaymentType(s["payment"]),
                s["percent_ppm"],
                s["price_micros"],
                s["per_seconds"],
            )
        )
    return [
        TariffVersion(
            r["number"],
            r["effective_from"],
            tuple(lines_of.get(r["id"], ())),
            tuple(extras_of.get(r["id"], ())),
            r["facility_id"],
            tuple(holidays_of.get(r["id"], ())),
            r["parent"],
        )
        for r in rows
    ]


async def _plans(
    conn: asyncpg.Connection, versions: list[TariffVersion] | tuple[TariffVersion, ...]
) -> tuple[tuple[str, tuple[TariffVersion, ...]], ...]:
    """Every fallback plan these versions reach, to FALLBACK_DEPTH_MAX parents deep."""
    found: dict[str, tuple[TariffVersion, ...]] = {}
    wanted = {v.parent for v in versions if v.parent}
    for _ in range(FALLBACK_DEPTH_MAX):
        wanted -= set(found)
        if not wanted:
            break
        for key in sorted(wanted):
            found[key] = tuple(await load_versions(conn, None if key == AGENCY_PLAN else key))
        wanted = {v.parent for vs in found.values() for v in vs if v.parent}
    return tuple(found.items())


async def load_tariff(
    conn: asyncpg.Connection, facility_id: str | None, *, time_zone: str | None = None
) -> Tariff:
    """The tariff that prices a facility's calls: its own versions, or the agency's when it has
    none, with the fallback plans they name. ``facility_id`` None loads the agency tariff (in
    ``time_zone``, default UTC). Raises UnknownFacility."""
    if facility_id is None:
        own = await load_versions(conn, None)
        return Tariff(None, time_zone or AGENCY_TIME_ZONE, tuple(own), await _plans(conn, own))
    f = await facilities.load(conn, facility_id)
    own = await load_versions(conn, facility_id)
    if own:
        return Tariff(facility_id, f.time_zone, tuple(own), await _plans(conn, own))
    agency = await load_versions(conn, None)
    return Tariff(None, f.time_zone, tuple(agency), await _plans(conn, agency))


async def _fallback_errors(
    conn: asyncpg.Connection, owner: str, parent: str, row: int | None
) -> list[decks.RowError]:
    """A fallback must name a plan with versions, and no chain of fallbacks from it (through any
    version's parent) may come back to ``owner`` (a cycle) or go deeper than FALLBACK_DEPTH_MAX."""

    def error(code: C, message: str) -> list[decks.RowError]:
        return [decks.RowError(row, "parent", parent, message, code.value)]

    async def walk(key: str, chain: list[str]) -> list[decks.RowError]:
        path = " -> ".join(chain + [key])
        if key in chain:
            return error(C.FALLBACK_CYCLE, f"falls back in a circle: {path}")
        if len(chain) > FALLBACK_DEPTH_MAX:
            return error(
                C.FALLBACK_TOO_DEEP, f"more than {FALLBACK_DEPTH_MAX} fallbacks deep: {path}"
            )
        rows = await conn.fetch(
            "SELECT DISTINCT parent FROM tariff_version WHERE facility_id IS NOT DISTINCT FROM $1",
            None if key == AGENCY_PLAN else key,
        )
        if not rows:
            return (
                error(
                    C.UNKNOWN_PARENT,
                    f"no plan {key!r} to fall back to (the agency or a "
                    "facility with a tariff of its own)",
                )
                if len(chain) == 1
                else []
            )
        for nxt in sorted(r["parent"] for r in rows if r["parent"]):
            found = await walk(nxt, chain + [key])
            if found:
                return found
        return []

    return await walk(parent, [owner])


async def list_versions(conn: asyncpg.Connection, facility_id: str | None) -> list[VersionInfo]:
    rows = await conn.fetch(
        "SELECT v.facility_id, v.number, v.effective_from, v.imported_at, v.source, "
        "  (SELECT count(*) FROM tariff_line l WHERE l.version_id = v.id) AS lines, "
        "  (SELECT count(*) FROM tariff_surcharge s WHERE s.version_id = v.id) AS surcharges "
        "FROM tariff_version v WHERE v.facility_id IS NOT DISTINCT FROM $1 "
        "ORDER BY v.effective_from, v.number",
        facility_id,
    )
    return [
        VersionInfo(
            r["facility_id"],
            r["number"],
            r["effective_from"],
            r["imported_at"],
            r["source"],
            r["lines"],
            r["surcharges"],
        )
        for r in rows
    ]


async def save_version(
    conn: asyncpg.Connection,
    facility_id: str | None,
    effective_from: datetime,
    lines: tuple[Line, ...],
    surcharges: tuple[Surcharge, ...],
    source: str = "",
    holidays: tuple[Holiday, ...] = (),
    parent: str | None = None,
) -> TariffVersion:
    """Write a new version (validated first; raises InvalidTariff) in one transaction."""
    TariffVersion(1, effective_from, lines, surcharges, facility_id, holidays, parent)  # validates
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, '')))",
            _LOCK_NAMESPACE,
            facility_id,
        )
        number = await conn.fetchval(
            "SELECT coalesce(max(number), 0) + 1 FROM tariff_version "
            "WHERE facility_id IS NOT DISTINCT FROM $1",
            facility_id,
        )
        vid = await conn.fetchval(
            "INSERT INTO tariff_version (facility_id, number, effective_from, source, parent) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            facility_id,
            number,
            effective_from,
            source,
            parent,
        )
        await conn.executemany(
            "INSERT INTO tariff_line (version_id, position, name, destination, payment, days, "
            "start_second, weight, connect_micros, minimum_seconds, cost_cap_micros, rounding, "
            "decimals, dates, closed, cap_action) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            [
                (
                    vid,
                    i,
                    ln.name,
                    ln.destination,
                    ln.payment.value,
                    ln.band.days,
                    ln.band.start,
                    ln.band.weight,
                    ln.connect_micros,
                    ln.minimum_seconds,
                    ln.cost_cap_micros,
                    ln.rounding.value,
                    ln.decimals,
                    list(ln.band.dates),
                    ln.closed,
                    ln.cap_action.value,
                )
                for i, ln in enumerate(lines)
            ],
        )
        await conn.executemany(
            "INSERT INTO tariff_holiday (version_id, position, name, dates) "
            "VALUES ($1, $2, $3, $4)",
            [(vid, i, h.name, list(h.dates)) for i, h in enumerate(holidays)],
        )
        await conn.executemany(
            "INSERT INTO tariff_rate_group (version_id, line_position, position, from_second, "
            "price_micros, per_seconds, increment_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (vid, i, k, g.from_second, g.price_micros, g.per_seconds, g.increment)
                for i, ln in enumerate(lines)
                for k, g in enumerate(ln.groups)
            ],
        )
        await conn.executemany(
            "INSERT INTO tariff_surcharge (version_id, position, kind, name, destination, "
            "payment, percent_ppm, price_micros, per_seconds) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                (
                    vid,
                    i,
                    s.kind.value,
                    s.name,
                    s.destination,
                    s.payment.value,
                    s.percent_ppm,
                    s.price_micros,
                    s.per_seconds,
                )
                for i, s in enumerate(surcharges)
            ],
        )
    return TariffVersion(number, effective_from, lines, surcharges, facility_id, holidays, parent)


def _located(v: Violation, deck: decks.Deck) -> Violation:
    """The violation with the deck's file line and column (the rate group's row for a price)."""
    rows = deck.rows.get(v.line)
    if rows is None:
        return v
    first, groups = rows
    row = groups[v.group] if v.group is not None and v.group < len(groups) else first
    return replace(v, row=row, column=v.field if v.field in decks.COLUMNS else "line")


async def import_deck(
    conn: asyncpg.Connection,
    text: str | bytes,
    *,
    facility_id: str | None,
    effective_from: datetime | None = None,
    source: str = "",
    profiles: dict[str, Profile] | None = None,
    accept_violations: bool = False,
    dry_run: bool = False,
) -> Imported:
    """Validate a deck completely, check it against the facility's regulatory profile, then store
    it as a new version. Raises DeckError (with line, column and value of every error) or
    RateCapExceeded, and then writes nothing. A deck identical to the latest version, which is
    already in force at ``effective_from``, is not imported again (``unchanged``). Agency decks
    are checked against the profile of
    every facility that has no tariff of its own. ``effective_from`` defaults to now."""
    if effective_from is None:
        effective_from = datetime.now(UTC)
    known = {r["id"] for r in await conn.fetch("SELECT id FROM facility")}
    if facility_id is not None and facility_id not in known:
        raise decks.DeckError(
            [decks.RowError(None, "facility", facility_id, "unknown facility", "unknown_facility")]
        )
    deck = decks.parse(text, facility=facility_id, known_facilities=known)
    if deck.parent is not None:
        bad = await _fallback_errors(conn, facility_id or AGENCY_PLAN, deck.parent, deck.parent_row)
        if bad:
            raise decks.DeckError(bad)
    latest = max(await load_versions(conn, facility_id), key=lambda v: v.number, default=None)
    if (
        latest is not None
        and latest.effective_from <= effective_from
        and (latest.lines, latest.surcharges, latest.holidays, latest.parent)
        == (deck.lines, deck.surcharges, deck.holidays, deck.parent)
    ):
        return Imported(latest, [], unchanged=True)
    preview = await conn.fetchval(
        "SELECT coalesce(max(number), 0) + 1 FROM tariff_version "
        "WHERE facility_id IS NOT DISTINCT FROM $1",
        facility_id,
    )
    candidate = TariffVersion(
        preview,
        effective_from,
        deck.lines,
        deck.surcharges,
        facility_id,
        deck.holidays,
        deck.parent,
    )
    if facility_id is not None:
        affected = [await facilities.load(conn, facility_id)]
    else:
        own = {
            r["facility_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT facility_id FROM tariff_version WHERE facility_id IS NOT NULL"
            )
        }
        affected = [f for f in await facilities.load_all(conn) if f.id not in own]
    violations: list[Violation] = []
    if affected:
        profiles = profiles if profiles is not None else load_profiles()
        for f in affected:
            prof = profiles.get(f.profile)
            if prof is None:
                raise RateCapExceeded(
                    [
                        Violation(
                            f.profile,
                            0,
                            "(facility)",
                            "profile",
                            f.profile,
                            "a known profile",
                            f"facility {f.id} names no known profile",
                        )
                    ]
                )
            existing = tuple(v for v in await load_versions(conn, facility_id))
            tariff = Tariff(
                facility_id,
                f.time_zone,
                existing + (candidate,),
                await _plans(conn, existing + (candidate,)),
            )
            violations += check(prof, f, tariff, candidate)
    violations = [_located(x, deck) for x in violations]
    if violations and not accept_violations:
        raise RateCapExceeded(violations)
    if dry_run:
        return Imported(candidate, violations)
    version = await save_version(
        conn,
        facility_id,
        effective_from,
        deck.lines,
        deck.surcharges,
        source,
        deck.holidays,
        deck.parent,
    )
    return Imported(version, violations)
