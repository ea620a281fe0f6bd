"""How the core prices calls: rating's one pricing definition, with facilities and tariffs cached.

A facility's tariff (all its versions) is loaded once and kept for `TARIFF_TTL_SECONDS`; a new
version imported meanwhile is seen at the next reload, and a version only takes effect at its
effective-from instant anyway, which importers set in the future for live changes.

One price per call: a call is priced by the version in force when it was authorized (`version_at`,
pinned on the call row as `tariff_version`), for every second of it, however long it lasts and
whatever version takes effect meanwhile. `cum` and `itemize` take that version number.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from rating import facility as facilities
from rating import pricing
from rating.clock import to_micros
from rating.errors import DestinationClosed, RatingRefusal
from rating.jurisdiction import JurisdictionClass, classify
from rating.tariff import PaymentType, Tariff
from switch.rules.session import Charge

__all__ = ["Pricing", "Itemized", "TARIFF_TTL_SECONDS"]

TARIFF_TTL_SECONDS = 30.0
CACHE_MAX = 10_000
PRICED_AHEAD = 7    # seconds past a missing one priced with it (short periods ask for each)
PRICED_AHEAD_MAX = 63


@dataclass(frozen=True)
class Itemized:
    billed_seconds: int
    tariff_version: str
    charges_json: str


class Pricing:
    Unpriced = RatingRefusal
    Closed = DestinationClosed          # a subclass of Unpriced: catch it first

    def __init__(self, load_tariff: Callable | None = None, *, monotonic=time.monotonic) -> None:
        self._load_tariff = load_tariff
        self._monotonic = monotonic
        self._facilities: dict[str, tuple[float, facilities.Facility]] = {}
        self._tariffs: dict[str, tuple[float, Tariff]] = {}
        self._pinned: dict[tuple[str, int], Tariff] = {}

    async def _tariff_loader(self):
        if self._load_tariff is None:
            from rating import store
            self._load_tariff = store.load_tariff
        return self._load_tariff

    async def facility(self, conn, facility_id: str) -> facilities.Facility:
        now = self._monotonic()
        hit = self._facilities.get(facility_id)
        if hit is None or now - hit[0] > TARIFF_TTL_SECONDS:
            fac = await facilities.load(conn, facility_id)
            loader = await self._tariff_loader()
            tariff = await loader(conn, facility_id)
            if len(self._facilities) > CACHE_MAX:
                self._facilities.clear(), self._tariffs.clear()
            self._facilities[facility_id] = (now, fac)
            self._tariffs[facility_id] = (now, tariff)
            return fac
        return hit[1]

    def cached_facility(self, facility_id: str) -> facilities.Facility | None:
        """The facility if it is cached and fresh (None: `facility` must load it), so a fast
        path that only prices needs no connection."""
        hit = self._facilities.get(facility_id)
        if hit is None or self._monotonic() - hit[0] > TARIFF_TTL_SECONDS:
            return None
        return hit[1]

    def tariff(self, facility_id: str) -> Tariff:
        return self._tariffs[facility_id][1]

    def version_at(self, facility_id: str, at: datetime) -> int | None:
        """The number of the version in force at `at` (None: the tariff has none yet)."""
        v = self.tariff(facility_id).version_at(at)
        return None if v is None else v.number

    def pinned(self, facility_id: str, version: int | None) -> Tariff:
        """The tariff as a call pinned to `version` sees it: that version alone, for all time.
        None (a call authorized before pinning existed): the whole tariff."""
        if version is None:
            return self.tariff(facility_id)
        key = (facility_id, version)
        hit = self._pinned.get(key)
        if hit is None:
            tariff = self.tariff(facility_id)
            matches = [v for v in tariff.versions if v.number == version]
            if not matches:
                raise LookupError(f"facility {facility_id!r} has no tariff version {version}")
            if len(self._pinned) > CACHE_MAX:
                self._pinned.clear()
            hit = self._pinned[key] = Tariff(tariff.facility_id, tariff.time_zone, (matches[0],))
        return hit

    def invalidate(self, facility_id: str | None = None) -> None:
        if facility_id is None:
            self._facilities.clear(), self._tariffs.clear()
        else:
            self._facilities.pop(facility_id, None), self._tariffs.pop(facility_id, None)

    @staticmethod
    def classify(facility: facilities.Facility, dialled: str) -> tuple[str, str | None]:
        j = classify(dialled, facility.state, facility.local_exchanges)
        return j.kind.value, j.e164

    @staticmethod
    def _jurisdiction(jclass: str, e164: str | None):
        from rating.jurisdiction import Jurisdiction
        return Jurisdiction(JurisdictionClass(jclass), e164)

    def affordable(self, facility, jclass: str, e164: str, ptype: str, start: datetime,
                   available: int, horizon: int) -> int:
        return pricing.affordable_seconds(self.tariff(facility.id), self._jurisdiction(jclass, e164),
                                          PaymentType(ptype), start, available, horizon)

    def destination_limit(self, facility, jclass: str, e164: str, ptype: str, start: datetime,
                          horizon: int) -> tuple[int | None, str]:
        """How long the tariff lets this call last, whatever the balance: the spending ceiling
        that stops the call and the next closed band, as (seconds, "ceiling" | "closure"), or
        (None, "") when neither ends it within ``horizon``. Raises Closed when it is closed now."""
        tariff, j = self.tariff(facility.id), self._jurisdiction(jclass, e164)
        pay = PaymentType(ptype)
        limits = {"closure": pricing.callable_seconds(tariff, j, pay, start, horizon),
                  "ceiling": pricing.ceiling_seconds(tariff, j, pay, start, horizon)}
        why = min(limits, key=limits.__getitem__)
        return (None, "") if limits[why] >= horizon else (limits[why], why)

    def rate_per_minute(self, facility, jclass: str, e164: str, ptype: str, at: datetime) -> int:
        rate = pricing.rate_at(self.tariff(facility.id), self._jurisdiction(jclass, e164),
                               PaymentType(ptype), at)
        return rate.first_minute_micros

    def cum(self, facility, jclass: str, e164: str, ptype: str, start: datetime,
            version: int | None = None) -> Callable[[int], Charge]:
        """The call's price totals: cum(t) is `pricing.price` of t talk seconds (call, tax).
        Each second is priced once per call, and a miss prices the seconds just past it in the
        same walk (`pricing.totals`): the next Continues ask for them. A call read second after
        second (short periods) gets ever longer walks, up to PRICED_AHEAD_MAX."""
        tariff = self.pinned(facility.id, version)
        j, pay = self._jurisdiction(jclass, e164), PaymentType(ptype)
        start_us = to_micros(start)
        memo: dict[int, Charge] = {}
        ahead = PRICED_AHEAD

        def cum(t: int) -> Charge:
            nonlocal ahead
            c = memo.get(t)
            if c is None:
                ahead = min(2 * ahead + 1, PRICED_AHEAD_MAX) if t - 1 in memo else PRICED_AHEAD
                try:
                    priced = pricing.totals(tariff, j, pay, start_us, t, t + ahead)
                except RatingRefusal:      # refused past t only: t alone raises as price does
                    priced = pricing.totals(tariff, j, pay, start_us, t, t)
                for d, (call, tax) in enumerate(priced, t):
                    memo[d] = Charge(call, tax)
                c = memo[t]
            return c
        return cum

    def itemize(self, call, start: datetime, talk: int) -> Itemized | None:
        if call["privileged"] or call["payment_type"] is None:
            return None
        p = pricing.price(self.pinned(call["facility_id"], call.get("tariff_version")),
                          self._jurisdiction(call["jurisdiction"], call["e164"]),
                          PaymentType(call["payment_type"]), start, talk)
        charges = {
            "line": p.line, "version": p.version, "billed_seconds": p.billed_seconds,
            "connect_micros": p.connect_micros, "adjustment_micros": p.adjustment_micros,
            "spans": [{"offset": s.offset, "seconds": s.seconds, "billed_seconds": s.billed_seconds,
                       "line": s.line, "from_second": s.from_second,
                       "price_micros": s.price_micros, "per_seconds": s.per_seconds,
                       "amount_micros": s.amount_micros} for s in p.spans],
            "surcharges": [{"kind": i.kind, "name": i.name, "amount_micros": i.amount_micros}
                           for i in p.surcharges],
            "call_micros": p.call_micros, "tax_micros": p.tax_micros,
            "total_micros": p.total_micros}
        return Itemized(p.billed_seconds, str(p.version), json.dumps(charges))
