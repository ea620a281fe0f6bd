"""Reports over HTTP: calls, minutes and revenue by facility, day and jurisdiction with ASR and
ACD; and the FCC compliance report (a 15-minute call per tier and jurisdiction, priced under the
tariff in force and set against the facility's regulatory profile)."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import model_validator

from ledger.money import format_amount
from web.endpoints import REGISTRY
from web.endpoints.cdrs import FacilityId
from web.endpoints.common import Model, Money, UtcDateTime
from web.problems import NotFoundProblem
from web.roles import Right

REPORT_DAYS_MAX = 366
GroupBy = Literal["facility", "day", "jurisdiction", "facility,day", "facility,jurisdiction",
                  "day,jurisdiction", "facility,day,jurisdiction"]


class UsageQuery(Model):
    since: UtcDateTime
    until: UtcDateTime
    group_by: GroupBy = "facility,day,jurisdiction"
    facility: FacilityId | None = None

    @model_validator(mode="after")
    def _range(self):
        if self.until <= self.since:
            raise ValueError("until must be after since")
        if self.until - self.since > dt.timedelta(days=REPORT_DAYS_MAX):
            raise ValueError(f"a report covers at most {REPORT_DAYS_MAX} days")
        return self


class UsageRow(Model):
    facility: str | None
    day: dt.date | None
    jurisdiction: str | None
    calls: int
    answered: int
    asr_percent: str          # answered / calls, two decimals
    acd_seconds: int          # talk seconds per answered call, rounded down
    talk_minutes: str         # talk seconds / 60, two decimals
    billed_minutes: int
    revenue: Money            # call charges
    taxes: Money


class UsageReport(Model):
    since: dt.datetime
    until: dt.datetime
    group_by: str
    rows: list[UsageRow]
    total: UsageRow


def _ratio(num: int, den: int, scale: int = 1) -> str:
    """num * scale / den as a decimal string with two places, exact integer arithmetic."""
    if den == 0:
        return "0.00"
    hundredths = num * scale * 100 // den
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def _row(r, keys) -> UsageRow:
    calls, answered, talk = int(r["calls"]), int(r["answered"]), int(r["talk"])
    return UsageRow(facility=r["facility"] if "facility" in keys else None,
                    day=r["day"] if "day" in keys else None,
                    jurisdiction=r["jurisdiction"] if "jurisdiction" in keys else None,
                    calls=calls, answered=answered, asr_percent=_ratio(answered, calls, 100),
                    acd_seconds=talk // answered if answered else 0,
                    talk_minutes=_ratio(talk, 60), billed_minutes=int(r["billed"]) // 60,
                    revenue=format_amount(int(r["revenue"])), taxes=format_amount(int(r["taxes"])))


@REGISTRY.operation("GET", "/reports/usage", right=Right.REPORTS_READ, tag="reports",
                    summary="Calls, minutes and revenue by facility, local day and "
                    "jurisdiction, with ASR and ACD", query=UsageQuery, response=UsageReport)
async def usage_report(call):
    q = call.query
    keys = q.group_by.split(",")
    scope = call.facilities(q.facility)
    # The day is the facility's own (its time zone), as its staff count days.
    cols = {"facility": "c.facility_id", "day": "(c.ended_at AT TIME ZONE f.time_zone)::date",
            "jurisdiction": "c.jurisdiction"}
    select = ", ".join(f"{cols[k]} AS {k}" for k in keys)
    measures = ("count(*) AS calls, count(*) FILTER (WHERE c.talk_seconds > 0) AS answered, "
                "coalesce(sum(c.talk_seconds), 0) AS talk, "
                "coalesce(sum(c.billed_seconds), 0) AS billed, "
                "coalesce(sum(c.call_micros), 0) AS revenue, "
                "coalesce(sum(c.tax_micros), 0) AS taxes")
    where = ("c.ended_at >= $1 AND c.ended_at < $2 AND "
             "($3::text[] IS NULL OR c.facility_id = ANY($3))")
    async with call.pool.acquire() as conn:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            rows = await conn.fetch(
                f"SELECT {select}, {measures} FROM cdr c JOIN facility f ON f.id = c.facility_id "
                f"WHERE {where} GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}",
                q.since, q.until, scope)
            total = await conn.fetchrow(
                f"SELECT {measures} FROM cdr c WHERE {where}", q.since, q.until, scope)
    return UsageReport(since=q.since, until=q.until, group_by=q.group_by,
                       rows=[_row(r, keys) for r in rows], total=_row(total, ()))


class FccQuery(Model):
    at: UtcDateTime | None = None
    facility: FacilityId | None = None


class FccCell(Model):
    jurisdiction: str
    payment_type: str
    price_15_min: Money | None       # call charge of a 15-minute call; None: not offered
    total_15_min: Money | None       # with taxes and fees
    cap_15_min: Money                # 15 x the tier's per-minute cap for this payment type
    compliant: bool | None           # None: not offered
    refusal: str | None


class FccFacility(Model):
    facility: str
    profile: str
    tier: str | None
    tariff_version: int | None
    violations: list[str]
    calls: list[FccCell]
    problem: str | None


class FccReport(Model):
    at: dt.datetime
    facilities: list[FccFacility]


@REGISTRY.operation("GET", "/reports/fcc", right=Right.REPORTS_READ, tag="reports",
                    summary="FCC compliance: a 15-minute call per tier and jurisdiction against "
                    "the profile's caps", query=FccQuery, response=FccReport)
async def fcc_report(call):
    from rating import facility as facilities
    from rating import store
    from rating.errors import RatingRefusal
    from rating.profiles import ProfileError, check, fifteen_minute_prices, load_profiles
    at = call.query.at or call.services.clock()
    scope = call.facilities(call.query.facility)
    profiles = load_profiles()
    out = []
    async with call.pool.acquire() as conn:
        targets = [f for f in await facilities.load_all(conn) if scope is None or f.id in scope]
        if call.query.facility is not None and not targets:
            raise NotFoundProblem(f"facility {call.query.facility!r} does not exist")
        for f in targets:
            profile = profiles.get(f.profile)
            if profile is None:
                out.append(FccFacility(facility=f.id, profile=f.profile, tier=None,
                                       tariff_version=None, violations=[], calls=[],
                                       problem=f"unknown profile {f.profile!r}"))
                continue
            try:
                tier = profile.tier_for(f)
            except ProfileError as e:
                out.append(FccFacility(facility=f.id, profile=f.profile, tier=None,
                                       tariff_version=None, violations=[], calls=[],
                                       problem=str(e)))
                continue
            tariff = await store.load_tariff(conn, f.id)
            version = tariff.version_at(at)
            if version is None:
                out.append(FccFacility(facility=f.id, profile=f.profile, tier=tier.name,
                                       tariff_version=None, violations=[], calls=[],
                                       problem="no tariff in force"))
                continue
            cells = []
            for (klass, pay), p in fifteen_minute_prices(tariff, at).items():
                cap = 15 * tier.cap(pay)
                if isinstance(p, RatingRefusal):
                    cells.append(FccCell(jurisdiction=klass.value, payment_type=pay.value,
                                         price_15_min=None, total_15_min=None,
                                         cap_15_min=format_amount(cap), compliant=None,
                                         refusal=type(p).__name__))
                else:
                    cells.append(FccCell(jurisdiction=klass.value, payment_type=pay.value,
                                         price_15_min=format_amount(p.call_micros),
                                         total_15_min=format_amount(p.total_micros),
                                         cap_15_min=format_amount(cap),
                                         compliant=p.call_micros <= cap,
                                         refusal=None))
            out.append(FccFacility(facility=f.id, profile=f.profile, tier=tier.name,
                                   tariff_version=version.number,
                                   violations=[str(v) for v in check(profile, f, tariff,
                                                                     version)],
                                   calls=cells, problem=None))
    return FccReport(at=at, facilities=out)
