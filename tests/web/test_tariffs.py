"""Tariffs over HTTP on rating's own code: a deck checked with every error at once; imported as
a version in force from a given time; listed, exported, diffed; quotes and the longest call a
balance buys, equal to rating's own answers."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rating import store
from rating.jurisdiction import JurisdictionClass
from rating.pricing import affordable_seconds, price
from rating.tariff import PaymentType
from tests.web.cdr_rows import ensure_facilities
from tests.web.conftest import make_operator
from ledger.money import format_amount

DECK = (Path(__file__).resolve().parents[2] / "config" / "demo" / "tariff.csv").read_text()
FROM = "2026-01-01T00:00:00Z"
AT = "2026-03-03T15:00:00Z"            # a Tuesday, daytime in New York


@pytest.fixture(scope="module")
async def billing(admin, db):
    await ensure_facilities(db)
    return admin.as_(await make_operator(db, "tariff-bill", "billing"))


async def test_a_bad_deck_gets_every_error_at_once_and_stores_nothing(billing, db):
    bad = DECK.replace("0.05,60,60", "five,60,60", 1).replace("mon-fri", "someday", 1)
    bad += "rate,x,local,any,all,25:00,0,0,0.05,60,60,0,0,,,,\n"
    r = billing.post("/tariffs/check", json={"facility": "south", "csv": bad})
    assert r.status_code == 200
    report = r.json()
    assert report["valid"] is False
    where = {(e["line"], e["column"]) for e in report["errors"]}
    assert {(2, "price"), (4, "days"), (18, "start")} <= where, report["errors"]
    assert all(e["reason"] for e in report["errors"])
    r = billing.post("/tariffs", json={"facility": "south", "csv": bad,
                                       "effective_from": FROM})
    assert r.status_code == 422 and len(r.json()["errors"]) >= 3
    assert all(e["field"] == "csv" and "line" in e["message"] for e in r.json()["errors"])
    assert await db.fetchval("SELECT count(*) FROM tariff_version WHERE facility_id = 'south'") \
        == 0


async def test_a_deck_is_imported_listed_exported_and_diffed(billing, db):
    r = billing.post("/tariffs/check", json={"facility": "north", "csv": DECK})
    assert r.status_code == 200 and r.json()["errors"] == [] and r.json()["lines"] > 0
    r = billing.post("/tariffs", json={"facility": "north", "csv": DECK,
                                       "effective_from": FROM, "accept_violations": True})
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 1
    assert r.json()["effective_from"].startswith("2026-01-01T00:00:00")
    v2 = DECK.replace("rate,international,international,any,all,00:00,0,0,0.06",
                      "rate,international,international,any,all,00:00,0,0,0.07")
    r = billing.post("/tariffs", json={"facility": "north", "csv": v2,
                                       "effective_from": "2026-06-01T00:00:00Z",
                                       "accept_violations": True})
    assert r.json()["number"] == 2
    versions = billing.get("/tariffs/versions", params={"facility": "north"}).json()["versions"]
    assert [v["number"] for v in versions] == [1, 2]
    exported = billing.get("/tariffs/export", params={"facility": "north", "version": 1})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text.splitlines()[0] == DECK.splitlines()[0]
    diff = billing.get("/tariffs/diff", params={"facility": "north", "from_version": 1,
                                                "to_version": 2}).json()
    assert len(diff["removed"]) == 1 and len(diff["added"]) == 1
    assert "0.06" in diff["removed"][0] and "0.07" in diff["added"][0]
    assert billing.get("/tariffs/export", params={"facility": "north", "version": 9}
                       ).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE action = 'tariff.import' "
                             "AND target = 'tariff:north'") == 2


async def test_quotes_and_max_seconds_are_ratings_own_answers(billing, db):
    if not await db.fetchval("SELECT true FROM tariff_version WHERE facility_id = 'north'"):
        await store.import_deck(db, DECK, facility_id="north",
                                effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                                accept_violations=True)
    tariff = await store.load_tariff(db, "north")
    at = dt.datetime.fromisoformat(AT)
    q = billing.get("/tariffs/quote", params={"facility": "north", "number": "+13125550100",
                                              "at": AT, "seconds": 754}).json()
    p = price(tariff, JurisdictionClass.INTERSTATE, PaymentType.PREPAID, at, 754)
    assert q["jurisdiction"] == "interstate" and q["total"] == format_amount(p.total_micros)
    assert q["billed_seconds"] == p.billed_seconds
    m = billing.get("/tariffs/max-seconds", params={"facility": "north",
                                                    "number": "+13125550100", "at": AT,
                                                    "balance": "0.50"}).json()
    want = affordable_seconds(tariff, JurisdictionClass.INTERSTATE, PaymentType.PREPAID, at,
                              500_000, 24 * 3600)
    assert m["seconds"] == want and 0 < want < 24 * 3600
    assert price(tariff, JurisdictionClass.INTERSTATE, PaymentType.PREPAID, at,
                 want + 1).total_micros > 500_000
    r = billing.get("/tariffs/max-seconds", params={"facility": "north", "number": "12",
                                                    "at": AT, "balance": "1.00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "number"
    r = billing.get("/tariffs/max-seconds", params={"facility": "north", "number": "+1312555",
                                                    "at": AT, "balance": "-1.00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "balance"
    r = billing.get("/tariffs/quote", params={"facility": "nowhere", "number": "+13125550100",
                                              "at": AT})
    assert r.status_code == 404


@pytest.mark.parametrize("text", ["|\u00d3\r\u0083", "a,\"b\nc", "\x00,\x01", "kind\r\rrate"])
async def test_hostile_deck_text_is_a_report_never_a_server_error(billing, text):
    r = billing.post("/tariffs/check", json={"facility": "south", "csv": text})
    assert r.status_code == 200, r.text
    assert r.json()["valid"] is False and r.json()["errors"]
    r = billing.post("/tariffs", json={"facility": "south", "csv": text,
                                       "effective_from": FROM})
    assert r.status_code == 422, r.text


async def test_a_deck_with_old_mac_line_ends_is_refused_at_its_line_and_column(billing, db):
    mac = DECK.replace("\n", "\r")
    r = billing.post("/tariffs/check", json={"facility": "south", "csv": mac})
    assert r.status_code == 200, r.text
    errors = r.json()["errors"]
    first = DECK.index("\n") + 1
    assert {"line": 1, "column": f"#{DECK.splitlines()[0].count(',') + 1}", "value": "\\r",
            "code": "bare_carriage_return"}.items() <= errors[0].items(), errors
    assert f"column {first}" in errors[0]["reason"]
    r = billing.post("/tariffs", json={"facility": "south", "csv": mac, "effective_from": FROM})
    assert r.status_code == 422 and "bare_carriage_return" in r.json()["errors"][0]["message"]
    assert await db.fetchval("SELECT count(*) FROM tariff_version WHERE facility_id = 'south'") \
        == 0
