"""CDRs over HTTP and the CLI: every filter, keyset pages that never skip or repeat a row, and
the streamed CSV export agreeing with the pages."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.web.cdr_rows import T0, insert_cdrs
from tests.web.conftest import make_operator
from ledger.money import format_amount

N = 60


@pytest.fixture(scope="module")
async def rows(db, admin):
    return await insert_cdrs(db, N)


def _order(rs):
    return sorted(rs, key=lambda r: (r["ended_at"], r["call_id"]), reverse=True)


def walk(api, params, limit):
    ids, cursor, pages = [], None, 0
    while True:
        q = dict(params, limit=limit) | ({"cursor": cursor} if cursor else {})
        r = api.get("/cdrs", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["cdrs"]) <= limit
        ids += [uuid.UUID(c["call_id"]) for c in body["cdrs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


async def test_pages_walk_every_cdr_once_newest_first_ties_by_call_id(admin, rows):
    ids, pages = walk(admin, {}, 7)
    assert ids == [r["call_id"] for r in _order(rows)]
    assert pages == -(-N // 7)
    assert sum(1 for r in rows if r["ended_at"] == T0) >= 10     # the ties really are there


FILTERS = [
    ({"facility": "north"}, lambda r: r["facility"] == "north"),
    ({"inmate": "1002"}, lambda r: r["inmate"] == "1002"),
    ({"number": "(212) 555-0142"}, lambda r: r["number"] == "+12125550142"),
    ({"disposition": "no_answer"}, lambda r: r["disposition"] == "no_answer"),
    ({"jurisdiction": "international"}, lambda r: r["jurisdiction"] == "international"),
    ({"since": "2026-03-05T00:00:00Z", "until": "2026-03-10T00:00:00+00:00"},
     lambda r: T0 + dt.timedelta(days=4) <= r["ended_at"] < T0 + dt.timedelta(days=9)),
    ({"facility": "south", "jurisdiction": "local", "since": "2026-03-02T00:00:00Z"},
     lambda r: r["facility"] == "south" and r["jurisdiction"] == "local"
     and r["ended_at"] >= T0 + dt.timedelta(days=1)),
]


@pytest.mark.parametrize("params,keep", FILTERS, ids=lambda p: ",".join(p) if isinstance(p, dict)
                         else "")
async def test_each_filter_returns_exactly_the_matching_cdrs(admin, rows, params, keep):
    ids, _ = walk(admin, params, 5)
    want = [r["call_id"] for r in _order(rows) if keep(r)]
    assert want and ids == want


async def test_a_cdr_shows_amounts_as_currency_strings(admin, rows):
    r = _order(rows)[0]
    c = admin.get("/cdrs", params={"limit": 1}).json()["cdrs"][0]
    assert c["call_id"] == str(r["call_id"])
    assert c["call_amount"] == format_amount(r["call_micros"])
    assert c["total_amount"] == format_amount(r["call_micros"] + r["tax_micros"])
    assert format_amount(210_003) == "0.210003" and format_amount(10_000) == "0.01"
    assert format_amount(0) == "0.00"


@pytest.mark.parametrize("params,field", [
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "AAAAAAAAAAA"}, "cursor"),
    ({"number": "12"}, "number"),
    ({"since": "2026-03-05T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "(whole)"),
    ({"disposition": "exploded"}, "disposition"),
    ({"inmate": "12; DROP TABLE cdr"}, "inmate"),
    ({"limit": "0"}, "limit"),
    ({"until": "0.5"}, "until"),
    ({"since": "1700000000"}, "since"),
])
async def test_bad_filters_are_refused_naming_the_parameter(admin, rows, params, field):
    r = admin.get("/cdrs", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    assert admin.get("/cdrs.csv", params={k: v for k, v in params.items()
                                          if k not in ("cursor", "limit")}).status_code in (
        422 if set(params) - {"cursor", "limit"} else 200,)


def _csv(text):
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_csv_export_is_every_matching_cdr_in_page_order(admin, rows):
    r = admin.get("/cdrs.csv", stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    exported = _csv(r.text)
    assert [uuid.UUID(e["call_id"]) for e in exported] == [x["call_id"] for x in _order(rows)]
    page = admin.get("/cdrs", params={"limit": N}).json()["cdrs"]
    for e, c in zip(exported, page):
        assert e["total_amount"] == c["total_amount"] and e["tax_amount"] == c["tax_amount"]
        assert dt.datetime.fromisoformat(e["ended_at"]) == dt.datetime.fromisoformat(c["ended_at"])
    north = _csv(admin.get("/cdrs.csv", params={"facility": "north"}).text)
    assert {e["facility"] for e in north} == {"north"}
    assert len(north) == sum(1 for x in rows if x["facility"] == "north")


async def test_facility_staff_see_only_their_facilities_cdrs(admin, db, rows):
    staff = admin.as_(await make_operator(db, "hal", "facility_staff", ["south"]))
    ids, _ = walk(staff, {}, 50)
    assert ids == [r["call_id"] for r in _order(rows) if r["facility"] == "south"]
    assert {e["facility"] for e in _csv(staff.get("/cdrs.csv").text)} == {"south"}
    assert staff.get("/cdrs.csv", params={"facility": "north"}).status_code == 403


def ics(dsn, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def test_the_cli_lists_and_exports_on_the_same_code(admin, api_dsn, rows):
    r = ics(api_dsn, "cdr", "list", "--facility", "north", "--limit", "4", "--json")
    assert r.returncode == 0, r.stderr
    cli = [json.loads(line) for line in r.stdout.splitlines()]
    api = admin.get("/cdrs", params={"facility": "north", "limit": 4}).json()
    assert cli == api["cdrs"]
    cursor = r.stderr.split("--cursor ", 1)[1].strip()
    assert cursor == api["next_cursor"]
    r = ics(api_dsn, "cdr", "export", "--jurisdiction", "local")
    assert r.returncode == 0
    assert r.stdout == admin.get("/cdrs.csv", params={"jurisdiction": "local"}).text
    r = ics(api_dsn, "cdr", "list", "--number", "12")
    assert r.returncode == 2 and "--number" in r.stderr
    r = ics(api_dsn, "cdr", "list", "--cursor", "zzz")
    assert r.returncode == 2 and "--cursor" in r.stderr
