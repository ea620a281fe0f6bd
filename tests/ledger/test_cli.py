"""`ics ledger`: submit JSON Lines (twice, from stdin, malformed), balance, statement, verify."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ledger import Transfer, TransferKind as K
from ledger.jsonl import MalformedLine, parse

ICS = str(Path(sys.executable).parent / "ics")
H = str(uuid.uuid4())
LINES = [
    {"op": "account", "id": "fund", "kind": "funding_clearing"},
    {"op": "account", "id": "fam", "kind": "prepaid_phone", "currency": "USD", "no_overdraft": True},
    {"op": "account", "id": "clr", "kind": "call_clearing"},
    {"op": "account", "id": "rev", "kind": "revenue"},
    {"op": "transfer", "id": str(uuid.uuid4()), "kind": "single", "debit": "fund", "credit": "fam",
     "amount": 5_000_000, "code": "deposit"},
    {"op": "transfer", "id": H, "kind": "hold", "debit": "fam", "credit": "clr", "amount": 300_000,
     "expires_in": 90},
    {"op": "transfer", "id": str(uuid.uuid4()), "kind": "post", "hold": H, "amount": 250_000,
     "linked": True},
    {"op": "transfer", "id": str(uuid.uuid4()), "kind": "single", "debit": "clr", "credit": "rev",
     "amount": 250_000, "code": "call_revenue"},
    {"op": "transfer", "id": str(uuid.uuid4()), "kind": "single", "debit": "fam", "credit": "rev",
     "amount": 99_000_000},
]


def ics(dsn: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ICS_DATABASE_URL=dsn)
    return subprocess.run([ICS, *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60)


def write(tmp_path, lines) -> str:
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    return str(path)


async def test_submit_prints_one_result_per_line_and_a_second_run_changes_nothing(pg_dsn, tmp_path):
    path = write(tmp_path, LINES)
    first = ics(pg_dsn, "ledger", "submit", path)
    got = [json.loads(x) for x in first.stdout.splitlines()]
    assert [g["id"] for g in got] == [x["id"] for x in LINES]
    assert [g["result"] for g in got] == ["ok"] * 8 + ["insufficient_funds"]
    assert first.returncode == 1                         # a line was rejected
    balance = ics(pg_dsn, "ledger", "balance", "fam", "--json")
    second = ics(pg_dsn, "ledger", "submit", path)
    assert [json.loads(x)["result"] for x in second.stdout.splitlines()] \
        == ["exists"] * 8 + ["insufficient_funds"]
    assert ics(pg_dsn, "ledger", "balance", "fam", "--json").stdout == balance.stdout
    fam = json.loads(balance.stdout)
    assert (fam["posted"], fam["pending"], fam["available"]) == (4_750_000, 0, 4_750_000)
    assert ics(pg_dsn, "ledger", "verify").returncode == 0


async def test_submit_reads_standard_input(pg_dsn):
    out = ics(pg_dsn, "ledger", "submit", "-", stdin="\n".join(json.dumps(x) for x in LINES[:4]))
    assert out.returncode == 0
    assert [json.loads(x)["result"] for x in out.stdout.splitlines()] == ["ok"] * 4


@pytest.mark.parametrize("bad,field", [
    ('{"op": "transfer", "id": "nope", "kind": "single"}', "id"),
    ('{"op": "transfer", "id": "%s", "kind": "refund"}' % uuid.uuid4(), "kind"),
    ('{"op": "transfer", "id": "%s", "kind": "single", "amount": 1.5}' % uuid.uuid4(), "amount"),
    ('{"op": "transfer", "id": "%s", "kind": "single", "amont": 1}' % uuid.uuid4(), "amont"),
    ('{"op": "account", "id": "x y", "kind": "revenue"}', "id"),
    ('{"op": "account", "id": "x", "kind": "revenue", "currency": 840}', "currency"),
    ('{"op": "payment"}', "op"),
])
async def test_a_malformed_line_is_named_by_number_and_field_and_applies_nothing(pg_dsn, tmp_path, bad, field):
    path = write(tmp_path, [LINES[0], LINES[1], bad, LINES[2]])
    out = ics(pg_dsn, "ledger", "submit", path)
    assert out.returncode == 2
    assert f"line 3: field {field}:" in out.stderr and "nothing applied" in out.stderr
    assert out.stdout == ""
    assert "no ledger account 'fund'" in ics(pg_dsn, "ledger", "balance", "fund").stderr


async def test_a_line_that_is_not_json_is_named(pg_dsn, tmp_path):
    out = ics(pg_dsn, "ledger", "submit", write(tmp_path, [LINES[0], "{oops"]))
    assert out.returncode == 2 and "line 2: not valid JSON" in out.stderr


async def test_verify_exits_1_and_names_the_invariant_when_the_ledger_is_broken(pg_dsn, tmp_path):
    ics(pg_dsn, "ledger", "submit", write(tmp_path, LINES))
    ok = ics(pg_dsn, "ledger", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    import asyncio, asyncpg

    async def tamper():
        c = await asyncpg.connect(pg_dsn)
        await c.execute("UPDATE ledger_balance SET credits_posted = credits_posted + 1 "
                        "WHERE account_id = 'fund'")
        await c.close()
    await tamper()
    bad = ics(pg_dsn, "ledger", "verify", "--json")
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report["ok"] is False
    assert not report["invariants"]["1"]["ok"] and not report["invariants"]["3"]["ok"]
    assert report["invariants"]["2"]["ok"]
    assert "FAIL 1." in ics(pg_dsn, "ledger", "verify").stdout


async def test_statement_and_accounts_show_the_running_balance(pg_dsn, tmp_path):
    ics(pg_dsn, "ledger", "submit", write(tmp_path, LINES))
    st = json.loads(ics(pg_dsn, "ledger", "statement", "fam", "--json").stdout)
    assert [(ln["kind"], ln["balance"], ln["available"]) for ln in st["lines"]] == [
        ("single", 5_000_000, 5_000_000), ("hold", 5_000_000, 4_700_000),
        ("post", 4_750_000, 4_750_000)]
    text = ics(pg_dsn, "ledger", "statement", "fam").stdout
    assert "4.75" in text and "deposit" in text
    accounts = [json.loads(x)["id"] for x in ics(pg_dsn, "ledger", "accounts", "--json").stdout.splitlines()]
    assert accounts == ["clr", "fam", "fund", "rev"]


def test_batches_never_split_a_linked_chain():
    t = lambda linked: json.dumps({"op": "transfer", "id": str(uuid.uuid4()), "kind": "single",
                                   "debit": "a", "credit": "b", "amount": 1, "linked": linked})
    lines = [t(False), t(True), t(True), t(False), t(False),
             json.dumps({"op": "account", "id": "c", "kind": "revenue"}), t(False)]
    batches = parse(lines, batch_size=3)
    assert [[ln.number for ln in b] for b in batches] == [[1], [2, 3, 4], [5], [6], [7]]
    with pytest.raises(MalformedLine, match="line 4: field linked"):
        parse(lines, batch_size=2)


def test_json_fields_become_the_transfer():
    h = uuid.uuid4()
    [[line]] = parse([json.dumps({"op": "transfer", "id": str(h), "kind": "void", "hold": str(h)})])
    assert line.item == Transfer(h, K.VOID, hold=h)


def test_the_ledger_demo_runs_on_its_own_embedded_database_and_again(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATA_DIR"] = str(tmp_path / "var")
    for run in (1, 2):
        out = subprocess.run([ICS, "ledger", "demo"], env=env, capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "verify: every invariant holds" in out.stdout
        assert f"{13 * run} transfers" in out.stdout
    assert "posted 18.6392 USD" in out.stdout   # two deposits of 10.00, two calls of 3 x 0.2268
