"""Reports over HTTP: usage by facility, local day and jurisdiction (ASR, ACD, minutes,
revenue) checked against the CDRs written; the FCC report against rating's own prices and caps."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rating import facility as facilities
from rating import store
from rating.jurisdiction import JurisdictionClass
from rating.pricing import price
from rating.profiles import load_profiles
from rating.tariff import PaymentType
from tests.web.cdr_rows import T0, insert_cdrs
from ledger.money import format_amount

DECK = Path(__file__).resolve().parents[1] / "e2e" / "deck.csv"
RANGE = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-31T00:00:00Z"}


@pytest.fixture(scope="module")
async def rows(db, admin):
    return await insert_cdrs(db, 80, seed=11)


async def test_usage_by_facility_and_jurisdiction_adds_up_to_the_cdrs(admin, rows):
    r = admin.get("/reports/usage", params=RANGE | {"group_by": "facility,jurisdiction"})
    assert r.status_code == 200, r.text
    want = defaultdict(lambda: [0, 0, 0, 0, 0])
    for x in rows:
        w = want[(x["facility"], x["jurisdiction"])]
        w[0] += 1
        w[1] += x["talk_seconds"] > 0
        w[2] += x["talk_seconds"]
        w[3] += x["call_micros"]
        w[4] += x["billed_seconds"]
    got = {(g["facility"], g["jurisdiction"]): g for g in r.json()["rows"]}
    assert set(got) == set(want)
    for key, (calls, answered, talk, revenue, billed) in want.items():
        g = got[key]
        assert (g["calls"], g["answered"], g["revenue"]) == (calls, answered,
                                                             format_amount(revenue))
        assert g["acd_seconds"] == (talk // answered if answered else 0)
        assert g["billed_minutes"] == billed // 60
        hundredths = answered * 10000 // calls
        assert g["asr_percent"] == f"{hundredths // 100}.{hundredths % 100:02d}"
    total = r.json()["total"]
    assert total["calls"] == len(rows) and total["facility"] is None


async def test_usage_days_are_the_facilitys_local_days(admin, rows):
    r = admin.get("/reports/usage", params=RANGE | {"group_by": "facility,day"})
    zones = {"north": ZoneInfo("America/New_York"), "south": ZoneInfo("America/Chicago")}
    want = defaultdict(int)
    for x in rows:
        want[(x["facility"], x["ended_at"].astimezone(zones[x["facility"]]).date().isoformat())] \
            += 1
    assert {(g["facility"], g["day"]): g["calls"] for g in r.json()["rows"]} == dict(want)
    # T0 is midnight UTC: the evening before in New York.
    assert ("north", (T0 - dt.timedelta(hours=5)).date().isoformat()) in want


@pytest.mark.parametrize("params,field", [
    ({}, "since"),
    (RANGE | {"group_by": "colour"}, "group_by"),
    ({"since": "2026-03-01T00:00:00Z", "until": "2027-06-01T00:00:00Z"}, "(whole)"),
])
async def test_bad_report_queries_name_the_parameter(admin, params, field):
    r = admin.get("/reports/usage", params=params)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == field


async def test_the_fcc_report_prices_a_15_minute_call_under_the_tariff_in_force(admin, db, rows):
    await store.import_deck(db, DECK.read_text(), facility_id="north",
                            effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                            accept_violations=True)
    at = "2026-03-02T15:00:00Z"
    r = admin.get("/reports/fcc", params={"facility": "north", "at": at})
    assert r.status_code == 200, r.text
    [f] = r.json()["facilities"]
    assert f["facility"] == "north" and f["tariff_version"] == 1 and f["problem"] is None
    fac = await facilities.load(db, "north")
    tariff = await store.load_tariff(db, "north")
    tier = load_profiles()[fac.profile].tier_for(fac)
    assert f["tier"] == tier.name
    cell = next(c for c in f["calls"] if (c["jurisdiction"], c["payment_type"]) ==
                ("local", "prepaid"))
    p = price(tariff, JurisdictionClass.LOCAL, PaymentType.PREPAID,
              dt.datetime.fromisoformat(at), 900)
    assert cell["price_15_min"] == format_amount(p.call_micros)
    assert cell["total_15_min"] == format_amount(p.total_micros)
    assert cell["cap_15_min"] == format_amount(15 * tier.cap(PaymentType.PREPAID))
    assert cell["compliant"] == (p.call_micros <= 15 * tier.cap(PaymentType.PREPAID))
    # The south facility has no tariff: reported as such, not skipped.
    [s] = admin.get("/reports/fcc", params={"facility": "south", "at": at}).json()["facilities"]
    assert s["problem"] == "no tariff in force"
