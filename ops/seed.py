"""Load a directory file (facility, schedule, kiosks, inmates, contacts, accounts, routes) in one
transaction: everything or nothing, and loading the same file again changes nothing."""
from __future__ import annotations

import tomllib
from pathlib import Path

import ledger
from ledger.money import parse_amount
from ops.errors import OpsError
from rating import facility as facilities
from switch.provisioning import directory as d

__all__ = ["SeedError", "load_directory", "DEMO_DIR"]

DEMO_DIR = Path(__file__).resolve().parent.parent / "config" / "demo"
_SECTIONS = {"facility", "window", "kiosk", "inmate", "contact", "account", "route"}


class SeedError(OpsError, ValueError):
    """The directory file is unusable; the message names the file, entry and field."""


def _entries(data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    return value if isinstance(value, list) else [value]


async def load_directory(conn, path: Path, *, currency: str = "USD", progress=None,
                         shards: int = ledger.DEFAULT_SHARDS) -> dict:
    """Load `path`. The house accounts, if this is the first to make them, are spread over
    `shards` balance rows (config: ledger.revenue_shards, as the node makes them)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SeedError(f"{path}: {e}") from None
    unknown = set(data) - _SECTIONS
    if unknown:
        raise SeedError(f"{path}: unknown section(s) {sorted(unknown)}")
    f = data.get("facility")
    if not isinstance(f, dict):
        raise SeedError(f"{path}: a [facility] table is required")
    counts = {}
    where = ""
    try:
        async with conn.transaction():
            where = "[facility]"
            fac = facilities.Facility(
                id=f["id"], name=f["name"], state=f["state"], time_zone=f["time_zone"],
                adp=f["adp"], kind=f["kind"], profile=f["profile"],
                local_exchanges=tuple(f.get("local_exchanges", ())))
            if not await conn.fetchval("SELECT true FROM facility WHERE id = $1", fac.id):
                await facilities.add(conn, fac)
            await conn.execute(
                "UPDATE facility SET max_call_seconds = $2, recording = $3, default_language = $4 "
                "WHERE id = $1", fac.id, f.get("max_call_seconds", 900), f.get("recording", True),
                f.get("default_language", "en"))
            await d.ensure_house_accounts(conn, currency, shards=shards)
            await conn.execute("DELETE FROM calling_window WHERE facility_id = $1", fac.id)
            for n, w in enumerate(_entries(data, "window"), 1):
                where = f"[[window]] #{n}"
                await d.add_window(conn, fac.id, w["spec"], unit=w.get("unit"))
            for n, k in enumerate(_entries(data, "kiosk"), 1):
                where = f"[[kiosk]] #{n}"
                await d.add_kiosk(conn, k["id"], fac.id, unit=k.get("unit"),
                                  sources=k.get("sources", k.get("source")), trusted=k.get("trusted", False))
            for n, i in enumerate(_entries(data, "inmate"), 1):
                where = f"[[inmate]] #{n} ({i.get('id')})"
                if not await conn.fetchval("SELECT true FROM inmate WHERE id = $1", i["id"]):
                    quotas = {q: i.get(q) for q in ("calls_per_day", "minutes_per_day",
                                                    "calls_per_month", "minutes_per_month")}
                    await d.add_inmate(conn, i["id"], i["name"], fac.id, i["pin"],
                                       unit=i.get("unit"), language=i.get("language", "en"),
                                       quotas=quotas, currency=currency)
                if i.get("debit_funds"):
                    await d.fund_inmate(conn, i["id"], parse_amount(i["debit_funds"]),
                                        f"seed:{fac.id}:{i['id']}:debit")
            for n, a in enumerate(_entries(data, "account"), 1):
                where = f"[[account]] #{n} ({a.get('number')})"
                await d.add_phone_account(conn, a["number"], a["owner"], currency=currency)
                if a.get("fund"):
                    await d.fund_phone_account(conn, a["number"], parse_amount(a["fund"]),
                                               a.get("ref") or f"seed:{a['number']}")
            for n, c in enumerate(_entries(data, "contact"), 1):
                where = f"[[contact]] #{n} ({c.get('number')})"
                await d.add_contact(conn, c["inmate"], c["number"], name=c.get("name", ""),
                                    relationship=c.get("relationship", ""),
                                    status=c.get("status", "requested"),
                                    privileged=c.get("privileged", False),
                                    passive_accept=c.get("passive_accept", False))
            for n, r in enumerate(_entries(data, "route"), 1):
                where = f"[[route]] #{n}"
                await d.add_route(conn, r["prefix"], r["trunk"], priority=r.get("priority", 0),
                                  capacity=r.get("capacity", 0))
    except KeyError as e:
        raise SeedError(f"{path}: {where}: missing field {e.args[0]!r}") from None
    except (ValueError, LookupError) as e:
        raise SeedError(f"{path}: {where}: {e}") from None
    for key in ("window", "kiosk", "inmate", "contact", "account", "route"):
        counts[key] = len(_entries(data, key))
    if progress:
        progress(f"loaded {fac.id}: " + ", ".join(f"{v} {k}(s)" for k, v in counts.items()))
    return {"facility": fac.id, **counts}
