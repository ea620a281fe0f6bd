"""What a checked deck would change: its rows against the version in force, and the price of a
15-minute call per jurisdiction and payment type before and after, at the effective time.

Only reads: the deck is parsed and checked by rating's own import (dry run, in a transaction that
is rolled back), priced by rating's one pricing function (`fifteen_minute_prices`, the same the
FCC report uses). Errors and the profile check come from the API's `check_deck`; this adds the
comparison the API has no operation for.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from rating import deck as decks
from rating import facility as facilities
from rating import store
from rating.errors import RatingRefusal
from rating.profiles import fifteen_minute_prices, load_profiles
from rating.tariff import Tariff
from ledger.money import format_amount as money

__all__ = ["PriceRow", "Preview", "preview"]


@dataclass(frozen=True)
class PriceRow:
    jurisdiction: str
    payment_type: str
    before: str | None          # call charge of a 15-minute call; None: not offered
    after: str | None
    cap: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Preview:
    active_version: int | None
    added: list[str]
    removed: list[str]
    prices: list[PriceRow]


def _cell(p: Any) -> str | None:
    return None if isinstance(p, RatingRefusal) else money(p.call_micros)


async def preview(conn: asyncpg.Connection, text: str, *, facility_id: str | None,
                  effective_from: dt.datetime) -> Preview | None:
    """The comparison, or None if the deck does not import (the check shows why)."""
    async with conn.transaction():
        try:
            imported = await store.import_deck(conn, text, facility_id=facility_id,
                                               effective_from=effective_from,
                                               accept_violations=True, dry_run=True)
        except (decks.DeckError, RatingRefusal, ValueError):
            return None
        current = await store.load_tariff(conn, facility_id)
        candidate = imported.version
        # The tariff as it would be: the facility's own versions plus the candidate (an agency
        # deck joins the agency's versions), with the fallback plans both reach.
        own = tuple(await store.load_versions(conn, facility_id)) + (candidate,)
        after_tariff = Tariff(facility_id, current.time_zone, own,
                              await store._plans(conn, own))
        cap_of = None
        if facility_id is not None:
            f = await facilities.load(conn, facility_id)
            profile = load_profiles().get(f.profile)
            if profile is not None:
                try:
                    cap_of = profile.tier_for(f).cap
                except Exception:       # a facility the profile cannot place: no cap column
                    cap_of = None
    active = current.version_at(effective_from)
    new_rows = decks.write(candidate.lines, candidate.surcharges).splitlines()[1:]
    old_rows = (decks.write(active.lines, active.surcharges).splitlines()[1:]
                if active is not None else [])
    so, sn = set(old_rows), set(new_rows)
    before = fifteen_minute_prices(current, effective_from) if active is not None else {}
    after = fifteen_minute_prices(after_tariff, effective_from)
    rows = []
    for (klass, pay), p in after.items():
        b = before.get((klass, pay))
        rows.append(PriceRow(klass.value, pay.value, None if b is None else _cell(b), _cell(p),
                             money(15 * cap_of(pay)) if cap_of is not None else None))
    return Preview(active.number if active is not None else None,
                   [r for r in new_rows if r not in so], [r for r in old_rows if r not in sn],
                   rows)
