"""A facility as rating sees it: clock, state, local exchanges, size and regulatory profile.

`Facility` is plain data (validated on construction); `load`, `load_all` and `add` take an asyncpg
connection but import nothing from it, so pricing can use the dataclass without a database.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rating.errors import RatingError

if TYPE_CHECKING:
    import asyncpg  # the caller's connection; nothing is imported at run time

__all__ = [
    "Facility",
    "FacilityKind",
    "FacilityError",
    "UnknownFacility",
    "parse_exchange",
    "load",
    "load_all",
    "add",
    "AGENCY",
]

AGENCY = None  # facility id of agency-wide defaults (a tariff whose facility is NULL)
FacilityKind = str  # "prison" | "jail"
KINDS = ("prison", "jail")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STATE_PATTERN = re.compile(r"^[A-Z]{2}$")
EXCHANGE_PATTERN = re.compile(r"^\(?([2-9][0-9]{2})\)?[-. ]?([2-9][0-9]{2})$")


class FacilityError(RatingError, ValueError):
    """A facility field is unusable; the message names the field and the value."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        super().__init__(
            f"{field_name}={value!r}: {problem}", what=problem, where=field_name, value=value
        )
        self.field = field_name
        self.value = value


class UnknownFacility(RatingError, LookupError):
    """No facility has this id."""

    def __init__(self, facility_id: str) -> None:
        super().__init__(
            f"unknown facility {facility_id!r}",
            what="unknown facility",
            where="facility",
            value=facility_id,
        )
        self.facility_id = facility_id


def parse_exchange(text: str) -> str:
    """'916-555', '916555', '(916) 555' -> '916-555' (NPA-NXX); raises FacilityError."""
    m = EXCHANGE_PATTERN.match(text.strip())
    if not m:
        raise FacilityError("local_exchanges", text, "not an NPA-NXX such as 916-555")
    return f"{m.group(1)}-{m.group(2)}"


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    state: str  # USPS code, e.g. "CA"
    time_zone: str  # IANA name, e.g. "America/Los_Angeles"
    adp: int  # average daily population
    kind: FacilityKind  # prison | jail
    profile: str  # regulatory profile name, config/profiles/<profile>.toml
    local_exchanges: tuple[str, ...] = field(default=())  # NPA-NXX, e.g. ("916-555",)

    def __post_init__(self) -> None:
        if not ID_PATTERN.match(self.id or ""):
            raise FacilityError("id", self.id, "letters, digits, '_', '.', '-' (at most 64)")
        if not self.name:
            raise FacilityError("name", self.name, "must not be empty")
        if not STATE_PATTERN.match(self.state or ""):
            raise FacilityError("state", self.state, "two capital letters (USPS code)")
        from rating.jurisdiction import us_states

        if self.state not in us_states():
            raise FacilityError("state", self.state, "not a US state, DC or territory (USPS code)")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise FacilityError("time_zone", self.time_zone, "not an IANA time zone") from None
        if isinstance(self.adp, bool) or not isinstance(self.adp, int) or self.adp < 0:
            raise FacilityError("adp", self.adp, "a whole number >= 0")
        if self.kind not in KINDS:
            raise FacilityError("kind", self.kind, "prison or jail")
        if not self.profile:
            raise FacilityError("profile", self.profile, "must name a regulatory profile")
        object.__setattr__(
            self, "local_exchanges", tuple(parse_exchange(x) for x in self.local_exchanges)
        )

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


_COLUMNS = "id, name, state, time_zone, adp, kind, profile, local_exchanges"


def _from_row(row: asyncpg.Record) -> Facility:
    return Facility(
        id=row["id"],
        name=row["name"],
        state=row["state"],
        time_zone=row["time_zone"],
        adp=row["adp"],
        kind=row["kind"],
        profile=row["profile"],
        local_exchanges=tuple(row["local_exchanges"]),
    )


async def load(conn: asyncpg.Connection, facility_id: str) -> Facility:
    """The facility with this id; raises UnknownFacility."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM facility WHERE id = $1", facility_id)
    if row is None:
        raise UnknownFacility(facility_id)
    return _from_row(row)


async def load_all(conn: asyncpg.Connection) -> list[Facility]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM facility ORDER BY id")
    return [_from_row(r) for r in rows]


async def add(conn: asyncpg.Connection, f: Facility) -> None:
    """Insert a facility (validated by construction); a duplicate id is a FacilityError."""
    status = await conn.execute(
        "INSERT INTO facility (id, name, state, time_zone, adp, kind, profile, local_exchanges) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        f.id,
        f.name,
        f.state,
        f.time_zone,
        f.adp,
        f.kind,
        f.profile,
        list(f.local_exchanges),
    )
    if status.endswith(" 0"):
        raise FacilityError("id", f.id, "a facility with this id already exists")
