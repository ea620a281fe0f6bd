"""Operators, tokens and the audit trail, over HTTP and from the CLI, against a live node."""
from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from tests.web.conftest import make_operator


def ics(dsn, *args, input=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, input=input)


async def test_an_operator_made_on_the_cli_calls_the_api_with_the_token_shown_once(admin, api_dsn,
                                                                                     db):
    r = ics(api_dsn, "operator", "add", "bea", "--role", "billing", "--token")
    assert r.returncode == 0, r.stderr
    token = r.stdout.split("token ", 1)[1].split(": ", 1)[1].split()[0]
    assert token.startswith("ics_") and len(token) == 47
    # Only the hash is stored: the token's text is nowhere in the database.
    stored = await db.fetch("SELECT token_hash FROM operator_token WHERE operator_id = 'bea'")
    assert len(stored) == 1 and token.encode() not in stored[0]["token_hash"]
    assert not await db.fetchval("SELECT count(*) FROM audit_event WHERE after::text LIKE $1",
                                 f"%{token}%")
    bea = admin.as_(token)
    assert bea.get("/cdrs").status_code == 200
    assert bea.get("/operators").status_code == 403          # billing may not manage operators
    r = ics(api_dsn, "operator", "revoke", "bea")
    assert r.returncode == 0 and "1 token(s) revoked" in r.stdout
    assert bea.get("/cdrs").status_code == 401
    listing = ics(api_dsn, "operator", "list").stdout
    assert "bea" in listing and "billing" in listing and "tokens=0" in listing
    events = ics(api_dsn, "audit", "--target", "bea").stdout
    assert "operator.token.revoke" in events and "operator.add" in events and "cli:" in events


async def test_the_cli_refuses_bad_operators_naming_the_field(api_dsn):
    r = ics(api_dsn, "operator", "add", "cara", "--role", "facility_staff")
    assert r.returncode == 2 and "facilities" in r.stderr
    r = ics(api_dsn, "operator", "add", "cara", "--role", "facility_staff", "--facility", "nowhere")
    assert r.returncode == 2 and "no such facility: 'nowhere'" in r.stderr
    r = ics(api_dsn, "operator", "add", "Cara!", "--role", "admin")
    assert r.returncode == 2 and "id:" in r.stderr
    r = ics(api_dsn, "operator", "token", "ghost")
    assert r.returncode == 2 and "does not exist" in r.stderr


async def test_an_admin_adds_an_operator_and_issues_and_revokes_tokens_over_http(admin, db):
    r = admin.post("/operators", json={"id": "dan", "role": "auditor"})
    assert r.status_code == 201 and r.json()["role"] == "auditor"
    assert admin.post("/operators", json={"id": "dan", "role": "auditor"}).status_code == 422
    t1 = admin.post("/operators/dan/tokens", json={"label": "laptop"}).json()
    t2 = admin.post("/operators/dan/tokens", json={}).json()
    assert t1["token"] != t2["token"]
    dan1, dan2 = admin.as_(t1["token"]), admin.as_(t2["token"])
    assert dan1.get("/audit").status_code == 200
    assert dan1.post("/operators", json={"id": "eve", "role": "admin"}).status_code == 403
    r = admin.post("/operators/dan/revoke", json={"token_id": t1["token_id"]})
    assert r.json()["revoked"] == [t1["token_id"]]
    assert dan1.get("/audit").status_code == 401 and dan2.get("/audit").status_code == 200
    assert admin.post("/operators/ghost/tokens", json={}).status_code == 404
    events = admin.get("/audit", params={"target": "dan"}).json()["events"]
    assert [e["action"] for e in events] == ["operator.token.revoke", "operator.token.issue",
                                             "operator.token.issue", "operator.add"]
    assert {e["actor"] for e in events} == {"root"} and {e["via"] for e in events} == {"http"}
    assert events[-1]["after"] == {"role": "auditor", "facilities": []}


async def test_audit_pages_follow_the_cursor_without_gaps_or_repeats(admin):
    for i in range(7):
        admin.post("/operators", json={"id": f"pager{i}", "role": "auditor"})
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "action": "operator.add"} | ({"cursor": cursor} if cursor else {})
        page = admin.get("/audit", params=params).json()
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 7


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET actor = 'someone else'",
    "DELETE FROM audit_event",
    "TRUNCATE audit_event",
])
async def test_nothing_can_edit_the_audit_trail(admin, db, statement):
    admin.post("/operators", json={"id": "fay", "role": "auditor"})
    count = await db.fetchval("SELECT count(*) FROM audit_event")
    assert count > 0
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await db.execute(statement)
    assert await db.fetchval("SELECT count(*) FROM audit_event") == count


async def test_a_facility_staff_token_is_scoped_to_its_facilities(admin, db):
    await db.execute("INSERT INTO facility (id, name, state, time_zone, adp, kind, profile) "
                     "VALUES ('north', 'North', 'NY', 'America/New_York', 100, 'jail', 'fcc-2024'),"
                     " ('south', 'South', 'TX', 'America/Chicago', 100, 'jail', 'fcc-2024') "
                     "ON CONFLICT DO NOTHING")
    staff = admin.as_(await make_operator(db, "gus", "facility_staff", ["north"]))
    assert staff.get("/cdrs", params={"facility": "north"}).status_code == 200
    r = staff.get("/cdrs", params={"facility": "south"})
    assert r.status_code == 403 and "'south'" in r.json()["detail"]


async def test_cli_changes_are_audited_with_the_change_and_reads_are_not(api_dsn, db):
    from tests.web.cdr_rows import ensure_facilities
    await ensure_facilities(db)
    before = await db.fetchval("SELECT count(*) FROM audit_event")
    assert ics(api_dsn, "inmate", "add", "91001", "--name", "Ola", "--facility", "north",
               input="1357\n").returncode == 0
    assert ics(api_dsn, "inmate", "list").returncode == 0
    r = ics(api_dsn, "inmate", "add", "9x", "--name", "Bad", "--facility", "north",
            input="1357\n")
    assert r.returncode == 2
    rows = await db.fetch("SELECT * FROM audit_event WHERE seq > (SELECT max(seq) - 5 FROM "
                          "audit_event) ORDER BY seq")
    assert await db.fetchval("SELECT count(*) FROM audit_event") == before + 1
    e = rows[-1]
    assert (e["action"], e["target"], e["via"]) == ("inmate.add", "inmate:91001", "cli")
    assert e["actor"].startswith("cli:") and '"pin": true' in e["after"] and "1357" not in \
        e["after"]


async def test_cli_refunds_and_adjustments_need_a_second_person(api_dsn, db, admin):
    admin.post("/accounts", json={"number": "+13125550122", "owner": "Gil"})
    admin.post("/accounts/+13125550122/fund", json={"amount": "9.00", "ref": "cli-pay-1"})
    r = ics(api_dsn, "money", "refund", "+13125550122", "--funding-ref", "cli-pay-1",
            "--amount", "4.00")
    assert r.returncode == 0 and "refunded: 4.00" in r.stdout, r.stderr
    r = ics(api_dsn, "money", "refund", "+13125550122", "--funding-ref", "cli-pay-1",
            "--amount", "5.00")
    assert r.returncode == 2 and "already refunded" in r.stderr
    r = ics(api_dsn, "money", "adjust", "+13125550122", "500.00", "--reason", "test",
            "--ref", "cli-adj-1")
    assert r.returncode == 0 and "pending" in r.stdout
    adj = r.stdout.split()[1].rstrip(":")
    r = ics(api_dsn, "money", "approve", adj)
    assert r.returncode == 2 and "second operator" in r.stderr
    r = admin.post(f"/adjustments/{adj}/decision", json={"decision": "reject"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert admin.get("/accounts/+13125550122").json()["available"] == "5.00"


async def test_cli_facility_changes_are_audited_with_before_and_after(api_dsn, db):
    r = ics(api_dsn, "facility", "add", "cli-fac", "--name", "Cli Jail", "--state", "NY",
            "--time-zone", "America/New_York", "--adp", "50", "--kind", "jail",
            "--profile", "fcc-2024")
    assert r.returncode == 0, r.stderr
    r = ics(api_dsn, "facility", "update", "cli-fac", "--max-call-minutes", "20")
    assert r.returncode == 0, r.stderr
    rows = await db.fetch("SELECT action, before, after FROM audit_event WHERE target = "
                          "'facility:cli-fac' ORDER BY seq")
    assert [r["action"] for r in rows] == ["facility.add", "facility.update"]
    assert '"max_call_seconds": 900' in rows[1]["before"]
    assert '"max_call_seconds": 1200' in rows[1]["after"]
