"""`ics facility` and `ics rates` end to end, against a real PostgreSQL."""
from __future__ import annotations

import asyncio
import csv
import json
from datetime import datetime

import pytest

from ops.cli import main
from rating import store
from rating.jurisdiction import classify
from rating.pricing import price
from rating.tariff import PaymentType
from rating_helpers import DEMO_DECK, RIVERSIDE


@pytest.fixture
def ics(tmp_path, pg_dsn, capsys):
    config = tmp_path / "ics.toml"
    config.write_text(f'[database]\nurl = "{pg_dsn}"\n[node]\ndata_dir = "{tmp_path}"\n')

    async def run(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, ["--config", str(config), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


ADD_RIVERSIDE = ("facility", "add", "riverside", "--name", "Riverside County Jail", "--state", "CA",
                 "--time-zone", "America/Los_Angeles", "--adp", "1200", "--kind", "jail",
                 "--profile", "fcc-2024", "--exchange", "951-555", "--exchange", "951-955")


async def test_a_facility_is_added_listed_and_shown_with_its_tier(ics, conn):
    code, out, _ = await ics(*ADD_RIVERSIDE)
    assert code == 0 and "tier 'large jail'" in out
    assert (await ics("facility", "list"))[1].startswith("riverside ")
    code, out, _ = await ics("facility", "show", "riverside")
    assert "large jail (per minute: prepaid 0.06, debit 0.06, collect 0.06)" in out
    code, _, err = await ics("facility", "add", "x", "--name", "X", "--state", "CA", "--time-zone",
                             "UTC", "--adp", "5", "--kind", "jail", "--profile", "fcc-1999")
    assert code == 2 and "unknown profile" in err
    assert await conn.fetchval("SELECT count(*) FROM facility") == 1


async def test_import_versions_and_export_round_trip_the_demo_deck(ics, tmp_path):
    await ics(*ADD_RIVERSIDE)
    code, out, _ = await ics("rates", "import", str(DEMO_DECK), "--facility", "riverside",
                             "--effective", "2024-01-01T00:00:00Z")
    assert code == 0 and "imported riverside version 1: 7 lines" in out
    code, out, _ = await ics("rates", "versions", "--facility", "riverside")
    assert "tariff.csv (in force)" in out
    code, out, _ = await ics("rates", "export", "--facility", "riverside")
    assert out == DEMO_DECK.read_text()


async def test_a_bad_deck_is_refused_naming_line_column_and_value(ics, tmp_path, conn):
    await ics(*ADD_RIVERSIDE)
    bad = tmp_path / "bad.csv"
    bad.write_text(DEMO_DECK.read_text().replace("0.05,60,60", "0.05,sixty,60", 1))
    code, _, err = await ics("rates", "import", str(bad), "--facility", "riverside")
    assert code == 2 and "line 2, column per_seconds, value 'sixty'" in err
    code, _, err = await ics("rates", "import", str(DEMO_DECK), "--facility", "atlantis")
    assert code == 2 and "column facility, value 'atlantis': unknown facility" in err
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 0


async def test_check_lists_violations_and_the_15_minute_prices(ics, tmp_path):
    await ics(*ADD_RIVERSIDE)
    await ics("rates", "import", str(DEMO_DECK), "--facility", "riverside", "--effective",
              "2024-01-01T00:00:00Z")
    code, out, _ = await ics("rates", "check", "--at", "2024-06-05T17:00:00Z")
    assert code == 0 and "0 violation(s)" in out
    assert [l.split()[:4] for l in out.splitlines() if l.strip().startswith("interstate")] == [
        ["interstate", "0.90", "/", "0.9315"]]
    dear = tmp_path / "dear.csv"
    dear.write_text(DEMO_DECK.read_text().replace(",0.05,60,60,0,", ",0.05,60,60,1,").replace(
        ",0.05,60,6,0,", ",0.05,60,6,1,"))               # a connect fee on the local lines
    code, _, err = await ics("rates", "import", str(dear), "--facility", "riverside")
    assert code == 2 and "rate-cap violation" in err and "connect_fee" in err
    await ics("rates", "import", str(dear), "--facility", "riverside", "--effective",
              "2024-07-01T00:00:00Z", "--accept-violations")
    code, out, _ = await ics("rates", "check", "--at", "2024-06-05T17:00:00Z")
    assert code == 1
    assert "VIOLATION v2 line 'local' connect_fee: 1 > cap 0 (fcc-2024)" in out


async def test_quote_prints_the_total_and_itemized_spans_as_json(ics, conn):
    await ics(*ADD_RIVERSIDE)
    await ics("rates", "import", str(DEMO_DECK), "--facility", "riverside", "--effective",
              "2024-01-01T00:00:00Z")
    code, out, _ = await ics("rates", "quote", "--facility", "riverside", "--to", "(212) 555-0123",
                             "--at", "2024-06-03T18:59:30", "--seconds", "125", "--json")
    q = json.loads(out)
    assert code == 0 and (q["jurisdiction"], q["total_micros"]) == ("interstate", 113_850)
    assert [(s["line"], s["amount_micros"]) for s in q["spans"]] == [
        ("interstate", 30_000), ("interstate-evening", 25_000), ("interstate-evening", 55_000)]
    code, _, err = await ics("rates", "quote", "--facility", "riverside", "--to", "1-900-555-0199",
                             "--at", "2024-06-03T12:00:00Z", "--seconds", "60")
    assert code == 2 and "unauthorized destination" in err


async def test_rerate_prices_a_file_of_calls_as_the_scalar_path_does(ics, conn, tmp_path):
    await ics(*ADD_RIVERSIDE)
    await ics("rates", "import", str(DEMO_DECK), "--facility", "riverside", "--effective",
              "2024-01-01T00:00:00Z")
    cdrs = tmp_path / "cdrs.csv"
    rows = [("riverside", "(212) 555-0123", "2024-06-03T18:55:00Z", "3000", "debit"),
            ("riverside", "951-555-0100", "2024-06-08T06:59:40Z", "61", "prepaid"),
            ("riverside", "+52 55 1234 5678", "2024-06-09T02:00:00Z", "0", "collect"),
            ("riverside", "1-900-555-0199", "2024-06-09T02:00:00Z", "60", "debit")]
    cdrs.write_text("facility,to,start,seconds,payment\n" + "".join(",".join(r) + "\n"
                                                                    for r in rows))
    out = tmp_path / "out.csv"
    code, _, err = await ics("rates", "rerate", str(cdrs), "--out", str(out))
    # stderr is not a terminal here: the summary line, no progress bar
    assert code == 0 and "100%" not in err and "3 priced, 1 refused" in err
    got = list(csv.DictReader(out.open()))
    tariff = await store.load_tariff(conn, "riverside")
    for r, g in zip(rows[:3], got):
        j = classify(r[1], RIVERSIDE.state, RIVERSIDE.local_exchanges)
        p = price(tariff, j, PaymentType(r[4]),
                  datetime.fromisoformat(r[2].replace("Z", "+00:00")), int(r[3]))
        assert (g["jurisdiction"], int(g["total_micros"]), int(g["billed_seconds"])) == (
            j.kind.value, p.total_micros, p.billed_seconds)
    assert (got[3]["jurisdiction"], got[3]["error"], got[3]["total_micros"]) == (
        "premium", "unauthorized_destination", "0")


async def test_import_names_non_utf8_bytes_and_says_when_a_deck_is_unchanged(ics, tmp_path, conn):
    await ics(*ADD_RIVERSIDE)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(DEMO_DECK.read_bytes().replace(b"rate,mexico,+52", b"rate,m\xe9xico,+52", 1))
    code, _, err = await ics("rates", "import", str(latin), "--facility", "riverside")
    assert code == 2 and "line 13, column line" in err and "not UTF-8: byte 0xe9" in err
    assert "Traceback" not in err
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 0
    await ics("rates", "import", str(DEMO_DECK), "--facility", "riverside", "--effective",
              "2024-01-01T00:00:00Z")
    code, out, _ = await ics("rates", "import", str(DEMO_DECK), "--facility", "riverside")
    assert code == 0 and out.startswith("unchanged: the deck is identical to riverside version 1")
    assert await conn.fetchval("SELECT count(*) FROM tariff_version") == 1


async def _demo(ics, tmp_path, extra_rows: str = ""):
    await ics(*ADD_RIVERSIDE)
    deck = tmp_path / "deck.csv"
    deck.write_text(DEMO_DECK.read_text() + extra_rows)
    code, _, err = await ics("rates", "import", str(deck), "--facility", "riverside",
                             "--effective", "2024-01-01T00:00:00Z", "--accept-violations")
    assert code == 0, err


async def test_quote_balance_prints_the_longest_call_and_what_it_costs(ics, tmp_path):
    await _demo(ics, tmp_path)
    # Interstate at 0.06 a minute (first minute whole, then 6 s) plus 3.5 %: 0.50 buys 8:00,
    # 0.4968; the next 6 s would cost 0.503.
    code, out, _ = await ics("rates", "quote", "--facility", "riverside", "--to",
                             "(212) 555-0123", "--at", "2024-06-03T12:00:00", "--balance", "0.50",
                             "--json")
    q = json.loads(out)
    assert code == 0 and (q["max_seconds"], q["limited_by"]) == (480, "balance")
    assert q["total_micros"] == 496_800
    code, out, _ = await ics("rates", "quote", "--facility", "riverside", "--to",
                             "(212) 555-0123", "--at", "2024-06-03T12:00:00", "--balance", "100")
    assert code == 0 and "lasts 14400 s (240:00)" in out and "limited by horizon" in out
    code, _, err = await ics("rates", "quote", "--facility", "riverside", "--to",
                             "(212) 555-0123", "--balance", "-3")
    assert code == 2 and "--balance '-3'" in err
    code, _, err = await ics("rates", "quote", "--facility", "riverside", "--to", "(212) 555-0123")
    assert code == 2 and "give --seconds N" in err


async def test_quote_from_prices_a_continuation_slice_without_the_connect_fee(ics, tmp_path,
                                                                          conn):
    await _demo(ics, tmp_path, "rate,connect,+1212,any,all,00:00,0,0,0.06,60,60,0.25,0,,,,\n")
    args = ("rates", "quote", "--facility", "riverside", "--to", "(212) 555-0123", "--at",
            "2024-06-03T12:00:00", "--json")
    whole = json.loads((await ics(*args, "--seconds", "120"))[1])
    first = json.loads((await ics(*args, "--seconds", "60"))[1])
    code, out, _ = await ics(*args, "--from", "60", "--seconds", "60")
    part = json.loads(out)
    assert code == 0 and first["connect_micros"] == 250_000
    assert part["total_micros"] == whole["total_micros"] - first["total_micros"]
    assert part["call_micros"] == 60_000                     # one minute, no connect fee


async def test_quote_prices_a_number_phonenumbers_calls_invalid_by_a_catch_all(ics, tmp_path):
    await _demo(ics, tmp_path, "rate,nanp-catch-all,+1,any,all,00:00,0,0,0.10,60,60,0,0,,,,\n")
    code, out, err = await ics("rates", "quote", "--facility", "riverside", "--to",
                               "+1 212 555 012", "--at", "2024-06-03T12:00:00", "--seconds", "60",
                               "--json")
    q = json.loads(out)
    assert code == 0, err
    assert (q["jurisdiction"], q["e164"], q["line"], q["call_micros"]) == (
        "invalid", "+1212555012", "nanp-catch-all", 100_000)
    code, _, err = await ics("rates", "quote", "--facility", "riverside", "--to", "12",
                             "--at", "2024-06-03T12:00:00", "--seconds", "60")
    assert code == 2 and "unauthorized destination" in err        # no digits to match
