"""The family API over HTTP against a live node: register, confirm through the outbox, log in
(cookie + CSRF), claim a number an operator proves, fund it through the test provider (approve,
decline, timeout settled by a signed webhook, double submit), refund; hostile inputs change nothing."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import requests

from families.providers import sign_webhook

PW = "correct horse battery"
NUMBER = "+12125550123"


class Holder:
    def __init__(self, base: str) -> None:
        self.base, self.http, self.csrf = base, requests.Session(), None

    def request(self, method, path, csrf=True, **kw):
        headers = dict(kw.pop("headers", {}) or {})
        if csrf and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return self.http.request(method, self.base + path, headers=headers, timeout=30, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)


async def code_for(db, email: str, kind: str) -> str:
    body = await db.fetchval("SELECT body FROM family_outbox WHERE recipient = $1 AND kind = $2 "
                             "ORDER BY id DESC LIMIT 1", email, kind)
    return re.search(r"^    (\S+)$", body, re.M).group(1)


async def logged_in(node_url, db, email: str) -> Holder:
    h = Holder(node_url)
    assert h.post("/family/register", json={"email": email, "password": PW}).status_code == 202
    assert h.post("/family/verify", json={"token": await code_for(db, email, "verify")}
                  ).status_code == 200
    r = h.post("/family/login", json={"email": email, "password": PW})
    assert r.status_code == 200, r.text
    h.csrf = r.json()["csrf_token"]
    return h


async def balance(db, number=NUMBER) -> int:
    return int(await db.fetchval("SELECT credits_posted - debits_posted FROM ledger_account_balance "
                             "WHERE id = $1", f"prepaid:{number}") or 0)


@pytest.fixture(scope="module")
async def ana(node_url, db, admin):
    h = await logged_in(node_url, db, "ana@example.org")
    assert h.post("/family/numbers", json={"number": "(212) 555-0123"}).status_code == 201
    hid = h.get("/family/me").json()["holder"]
    r = admin.post("/family-numbers/prove", json={"holder": hid, "number": NUMBER})
    assert r.status_code == 200 and r.json()["state"] == "proven", r.text
    return h


async def test_login_sets_an_httponly_samesite_cookie_and_the_api_needs_it(node_url, db):
    h = await logged_in(node_url, db, "bo@example.org")
    cookie = [c for c in h.http.cookies if c.name == "ics_family"][0]
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert requests.get(node_url + "/family/me", timeout=10).status_code == 401
    assert h.get("/family/me").json()["email"] == "bo@example.org"
    assert h.post("/family/logout").status_code == 200
    assert h.get("/family/me").status_code == 401
    assert await db.fetchval("SELECT count(*) FROM family_audit WHERE action = "
                             "'holder.logout'") == 1


async def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(ana, db):
    r = ana.post("/family/numbers", json={"number": "+12125550999"}, csrf=False)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "X-CSRF-Token"
    r = ana.post("/family/numbers", json={"number": "+12125550999"},
                 headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert not await db.fetchval("SELECT true FROM family_number WHERE e164 = '+12125550999'")


async def test_a_wrong_password_is_401_and_names_no_account(node_url, db):
    h = Holder(node_url)
    r = h.post("/family/login", json={"email": "ana@example.org", "password": "not it at all"})
    assert r.status_code == 401
    r2 = h.post("/family/login", json={"email": "nobody@example.org", "password": "not it"})
    assert r2.status_code == 401 and r.json()["detail"] == r2.json()["detail"]


async def test_an_approved_deposit_funds_once_however_often_it_is_sent(ana, db):
    before = await balance(db)
    body = {"amount": "20.00", "card_token": "tok_approve", "idempotency_key": "form-1"}
    first = ana.post(f"/family/numbers/{NUMBER}/deposits", json=body)
    again = ana.post(f"/family/numbers/{NUMBER}/deposits", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "confirmed" and first.json()["fee"] == "0.00"
    assert again.json()["id"] == first.json()["id"]
    assert await balance(db) == before + 20_000_000


async def test_a_declined_card_changes_nothing(ana, db):
    before = await balance(db)
    r = ana.post(f"/family/numbers/{NUMBER}/deposits",
                 json={"amount": "15.00", "card_token": "tok_decline", "idempotency_key": "d-1"})
    assert r.json()["state"] == "declined"
    assert await balance(db) == before


async def webhook_key(db) -> bytes:
    await db.execute("INSERT INTO api_secret (name, key) VALUES ('payment_webhook', $1) "
                     "ON CONFLICT DO NOTHING", b"k" * 32)
    return bytes(await db.fetchval("SELECT key FROM api_secret WHERE name = 'payment_webhook'"))


async def test_a_timed_out_charge_is_confirmed_by_the_signed_webhook_once(ana, db, node_url):
    before = await balance(db)
    r = ana.post(f"/family/numbers/{NUMBER}/deposits",
                 json={"amount": "10.00", "card_token": "tok_timeout", "idempotency_key": "t-1"})
    p = r.json()
    assert p["state"] == "pending" and await balance(db) == before
    charge = await db.fetchrow("SELECT ref, amount FROM test_provider_charge WHERE idem_key = $1",
                               p["id"])
    key = await webhook_key(db)
    body = json.dumps({"idem_key": p["id"], "ref": charge["ref"], "state": "approved",
                       "amount": charge["amount"]}).encode()
    hook = node_url + "/family/provider/webhook"

    def send(b, sig):
        return requests.post(hook, data=b, timeout=10, headers={
            "Content-Type": "application/json", "X-ICS-Signature": sig})
    now = int(time.time())
    forged = send(body, sign_webhook(b"not the key", body, now))
    assert forged.status_code == 401 and forged.json()["errors"][0]["field"] == "X-ICS-Signature"
    stale = send(body, sign_webhook(key, body, now - 3600))
    assert stale.status_code == 401 and "window" in stale.json()["detail"]
    tampered = body.replace(b'"amount": 10000000', b'"amount": 99000000')
    assert send(tampered, sign_webhook(key, body, now)).status_code == 401
    assert await balance(db) == before
    ok = send(body, sign_webhook(key, body, now))
    assert ok.status_code == 200 and ok.json() == {"payment": p["id"], "state": "confirmed",
                                                   "replay": False}
    replay = send(body, sign_webhook(key, body, now))
    assert replay.json()["replay"] is True
    assert await balance(db) == before + 10_000_000


@pytest.mark.parametrize("body,field", [
    ({"amount": "-5", "card_token": "tok_approve", "idempotency_key": "h1"}, "amount"),
    ({"amount": "5.001", "card_token": "tok_approve", "idempotency_key": "h2"}, "amount"),
    ({"amount": 5, "card_token": "tok_approve", "idempotency_key": "h3"}, "amount"),
    ({"amount": "5", "card_token": "visa 4111", "idempotency_key": "h4"}, "card_token"),
    ({"amount": "5", "card_token": "tok_approve", "idempotency_key": ""}, "idempotency_key"),
    ({"amount": "5", "card_token": "tok_approve"}, "idempotency_key"),
    ({"amount": "5", "card_token": "tok_approve", "idempotency_key": "h5", "x": 1}, "x"),
    ({"amount": "250.00", "card_token": "tok_approve", "idempotency_key": "h6"}, "amount"),
])
async def test_hostile_deposits_name_the_field_and_change_nothing(ana, db, body, field):
    before = (await balance(db), await db.fetchval("SELECT count(*) FROM family_payment"))
    r = ana.post(f"/family/numbers/{NUMBER}/deposits", json=body)
    assert r.status_code in (409, 422), r.text
    assert r.json()["errors"][0]["field"] == field, r.text
    assert (await balance(db), await db.fetchval("SELECT count(*) FROM family_payment")) == before


HOSTILE = [
    ("/family/register", {"email": "x@example.org", "password": "short"}, "password", 422),
    ("/family/register", {"email": "not an email", "password": PW}, "email", 422),
    ("/family/register", {"email": "x@example.org", "password": PW, "language": "fr"},
     "language", 422),
    ("/family/register", {"email": "x@example.org", "password": PW, "admin": True}, "admin", 422),
    ("/family/register", {"email": ["x@example.org"], "password": PW}, "email", 422),
    ("/family/verify", {"token": "no such code"}, "token", 422),
    ("/family/verify", {"token": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "token", 422),
    ("/family/password", {"token": "x" * 101, "password": PW}, "token", 422),
    ("/family/numbers", {"number": "12"}, "number", 422),
    ("/family/numbers", {"number": "+1 212 555 0123; DROP TABLE"}, "number", 422),
    ("/family/contact-requests", {"inmate": "77x", "number": NUMBER}, "inmate", 422),
    ("/family/contact-requests", {"inmate": "99999", "number": "+12125550777"}, "number", 404),
    ("/family/blocks", {"number": NUMBER, "facility": "../etc"}, "facility", 422),
    ("/family/statements", {"number": NUMBER, "month": "2026-13"}, "month", 422),
]


@pytest.mark.parametrize("path,body,field,status", HOSTILE,
                         ids=[f"{p}-{f}-{i}" for i, (p, _, f, _) in enumerate(HOSTILE)])
async def test_hostile_bodies_name_the_field_and_change_nothing(ana, db, path, body, field,
                                                                status):
    tables = ("family_holder", "family_outbox", "family_number", "family_contact_request",
              "block", "family_audit")
    before = [await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables]
    r = ana.post(path, json=body)
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["errors"][0]["field"].split(".")[0] == field, r.text
    else:
        assert field in r.json()["detail"]
    assert [await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables] == before


async def test_a_number_not_proven_cannot_be_funded(ana, db):
    ana.post("/family/numbers", json={"number": "+12125550456"})
    r = ana.post("/family/numbers/+12125550456/deposits",
                 json={"amount": "5", "card_token": "tok_approve", "idempotency_key": "np"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "number"


async def test_refund_returns_the_unused_balance_to_the_payments(ana, db):
    r = ana.post(f"/family/numbers/{NUMBER}/deposits",
                 json={"amount": "7.00", "card_token": "tok_approve", "idempotency_key": "r-1"})
    assert r.json()["state"] == "confirmed"
    had = await balance(db)
    r = ana.post(f"/family/numbers/{NUMBER}/refund")
    assert r.status_code == 200, r.text
    from ledger.money import format_amount as money
    assert r.json()["refunded"] == money(had)
    assert await balance(db) == 0
    refunded = int(await db.fetchval("SELECT sum(refunded) FROM test_provider_charge"))
    assert refunded == had
    assert ana.post(f"/family/numbers/{NUMBER}/refund").status_code == 409


@pytest.fixture(scope="module")
async def north(db):
    await db.execute("INSERT INTO facility (id, name, state, time_zone, adp, kind, profile) "
                     "VALUES ('fnorth', 'North Family Jail', 'NY', 'America/New_York', 50, "
                     "'jail', 'fcc-2013'), ('fsouth', 'South Family Jail', 'TX', "
                     "'America/Chicago', 50, 'jail', 'fcc-2024') ON CONFLICT DO NOTHING")
    from switch.provisioning import directory
    await directory.add_inmate(db, "77001", "Maria Lopez Garcia", "fnorth", "1234")
    await directory.add_inmate(db, "77002", "Hidden Person", "fsouth", "1234")
    await db.execute("INSERT INTO family_facility_policy (facility_id, publishes_inmates) "
                     "VALUES ('fsouth', false)")
    return "fnorth"


async def test_find_ask_decide_fund_the_inmate_and_see_it_all(ana, north, db, admin):
    from tests.web.conftest import make_operator
    staff = admin.as_(await make_operator(db, "fam-staff-n", "facility_staff", ["fnorth"]))
    other = admin.as_(await make_operator(db, "fam-staff-s", "facility_staff", ["fsouth"]))
    found = ana.get("/family/facilities", params={"q": "north family"}).json()["facilities"]
    assert [f["id"] for f in found] == ["fnorth"]
    r = ana.get("/family/facilities/fnorth/inmates", params={"name": "lopez maria"})
    assert r.json()["inmates"] == [{"id": "77001", "name": "Maria Lopez Garcia",
                                    "facility": "fnorth"}]
    assert ana.get("/family/facilities/fsouth/inmates", params={"id": "77002"}
                   ).status_code == 409               # the facility publishes no roster
    deposit = {"amount": "30.00", "card_token": "tok_approve", "idempotency_key": "inm-1"}
    assert ana.post("/family/inmates/77001/deposits", json=deposit).status_code == 403
    r = ana.post("/family/contact-requests", json={"inmate": "77001", "number": NUMBER,
                                                   "relationship": "sister"})
    assert r.status_code == 201 and r.json()["state"] == "requested", r.text
    req = r.json()["id"]
    assert other.post(f"/family-requests/{req}/decision", json={"decision": "approve"}
                      ).status_code == 404
    mine = staff.get("/family-requests", params={"state": "requested"}).json()["requests"]
    assert [x["id"] for x in mine] == [req]
    r = staff.post(f"/family-requests/{req}/decision", json={"decision": "approve"})
    assert r.status_code == 200 and r.json()["state"] == "approved"
    assert ana.get("/family/contact-requests").json()["requests"][0]["state"] == "approved"
    assert await db.fetchval("SELECT count(*) FROM family_outbox WHERE kind = "
                             "'contact_decision' AND recipient = 'ana@example.org'") == 1
    # The number is now a contact at an fcc-2013 facility and at none stricter: a $3.00 fee.
    q = ana.get("/family/quote", params={"amount": "30.00", "inmate": "77001"}).json()
    assert (q["fee"], q["total"], q["profile"]) == ("3.00", "33.00", "fcc-2013")
    r = ana.post("/family/inmates/77001/deposits", json=deposit)
    assert r.status_code == 201 and r.json()["state"] == "confirmed" and r.json()["fee"] == "3.00"
    # Taken by a live agent on the phone: the profile's live-agent cap, $5.95.
    r = admin.post("/family-payments", json={
        "holder": ana.get("/family/me").json()["holder"], "number": NUMBER, "amount": "12.00",
        "card_token": "tok_approve", "idempotency_key": "agent-1"})
    assert r.status_code == 201 and (r.json()["fee"], r.json()["total"]) == ("5.95", "17.95")
    assert int(await db.fetchval("SELECT credits_posted FROM ledger_account_balance WHERE id = "
                                 "'inmate:77001'")) == 30_000_000
    staff.post("/family-policies/fnorth", json={"debit_monthly_max": "40.00"})
    r = ana.post("/family/inmates/77001/deposits",
                 json={**deposit, "idempotency_key": "inm-2", "amount": "10.01"})
    assert r.status_code == 409 and "a month" in r.json()["detail"]
    # A call the core wrote reaches the history, its CSV and the month's statement.
    call_id = uuid.uuid4()
    import datetime as dt
    at = dt.datetime.now(dt.timezone.utc)
    await db.execute(
        "INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "privileged, record, max_seconds, limited_by, authorized_at, last_seen_at, ended_at) "
        "VALUES ($1, 'ended', 'fnorth', 'k', '77001', $2, 'local', false, true, 900, 'funds', "
        "$3, $3, $3)", call_id, NUMBER, at)
    await db.execute(
        "INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "payment_type, privileged, authorized_at, accepted_at, ended_at, talk_seconds, "
        "billed_seconds, disposition, call_micros, tax_micros, total_micros, charges, "
        "transfer_ids) VALUES ($1, 'fnorth', 'k', '77001', $2, 'local', 'prepaid', false, $3, "
        "$3, $3, 125, 180, 'completed', 630000, 0, 630000, '{}', '{}')", call_id, NUMBER, at)
    h = ana.get("/family/history", params={"month": at.strftime("%Y-%m")}).json()
    assert [(c["number"], c["duration_seconds"], c["cost"], c["facility"]) for c in h["calls"]] \
        == [(NUMBER, 125, "0.63", "North Family Jail")]
    assert h["fees_total"] == "8.95" and "deposit" in {m["kind"] for m in h["money"]}
    csv_text = ana.get("/family/history/calls.csv").text
    assert csv_text.splitlines()[0] == "date,number,duration_seconds,cost,facility,disposition"
    assert f"{NUMBER},125,0.63,North Family Jail,completed" in csv_text
    assert "fee" in ana.get("/family/history/money.csv").text
    # Blocks through the API, and a bad one names the field.
    r = ana.post("/family/blocks", json={"number": NUMBER, "facility": "fnorth"})
    assert r.status_code == 201 and r.json()["blocks"][0]["scope"] == "facility"
    r = ana.post("/family/blocks", json={"number": NUMBER})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "facility"
    assert ana.post("/family/blocks/remove", json={"number": NUMBER, "facility": "fnorth"}
                    ).json()["blocks"] == []


async def test_a_third_party_payment_passes_its_own_fee_through_exactly(ana, north, db, admin):
    holder = ana.get("/family/me").json()["holder"]
    body = {"provider": "cash-retail", "ref": "CR-1001", "holder": holder, "inmate": "77001",
            "amount": "5.00", "third_party_fee": "1.50"}
    before = int(await db.fetchval("SELECT count(*) FROM family_payment"))
    for bad, field in (({"third_party_fee": "1,50"}, "third_party_fee"),
                       ({"number": NUMBER}, "number"), ({"provider": "Cash Retail!"}, "provider"),
                       ({"amount": "0"}, "amount")):
        r = admin.post("/family-payments/third-party", json={**body, **bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (bad, r.text)
    assert ana.post("/family-payments/third-party", json=body).status_code in (401, 403)
    assert int(await db.fetchval("SELECT count(*) FROM family_payment")) == before
    r = admin.post("/family-payments/third-party", json=body)
    assert r.status_code == 201, r.text
    p = r.json()
    assert (p["amount"], p["fee"], p["total"], p["state"]) == ("5.00", "1.50", "6.50",
                                                               "confirmed")
    assert p["fee_rule"] == "third party's fee, no markup" and p["profile"] == "fcc-2013"
    again = admin.post("/family-payments/third-party", json=body)
    assert again.status_code == 201 and again.json()["id"] == p["id"]
    r = admin.post("/family-payments/third-party", json={**body, "third_party_fee": "1.60"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "third_party_fee"
    assert int(await db.fetchval("SELECT count(*) FROM family_payment")) == before + 1
    assert int(await db.fetchval("SELECT credits_posted FROM ledger_account_balance WHERE id = "
                                 "'third_party_fees'")) == 1_500_000


async def test_a_reset_ends_every_session(node_url, db):
    h = await logged_in(node_url, db, "cy@example.org")
    assert h.post("/family/password-reset", json={"email": "cy@example.org"}).status_code == 202
    code = await code_for(db, "cy@example.org", "reset")
    r = Holder(node_url).post("/family/password", json={"token": code,
                                                        "password": "a whole new secret"})
    assert r.status_code == 200
    assert h.get("/family/me").status_code == 401
    again = Holder(node_url).post("/family/password", json={"token": code,
                                                            "password": "and another one!"})
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "token"


async def test_schemathesis_over_the_family_api_finds_no_5xx_and_nothing_off_the_document(
        node_url, db, tmp_path, north, admin):
    """Generated valid and invalid requests to every /family operation, as a logged-in holder
    (session cookie and CSRF header): never a 5xx, every response as the document declares.
    Logging out and changing the password would end the run's own session: they stay out."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    h = await logged_in(node_url, db, "schema@example.org")
    token = h.http.cookies.get("ics_family")
    st = Path(sys.executable).with_name("schemathesis")
    examples = os.environ.get("ICS_SCHEMATHESIS_EXAMPLES", "5")
    r = subprocess.run(
        # The document is an operator's to read; the family operations ignore the bearer token.
        [str(st), "run", node_url + "/openapi.json", "-H", f"Authorization: Bearer {admin.token}",
         "-H", f"Cookie: ics_family={token}",
         "-H", f"X-CSRF-Token: {h.csrf}", "--include-path-regex", "^/api/v1/family/",
         "--exclude-operation-id", "family_logout", "--exclude-operation-id",
         "family_change_password", "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance,negative_data_rejection", "--max-examples", examples,
         "--seed", "1", "--phases", "examples,coverage,fuzzing", "-w", "1", "--no-color",
         "--generation-database", "none", "--generation-with-security-parameters", "false"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
    assert h.get("/family/me").status_code == 200       # the run's session lived through it
