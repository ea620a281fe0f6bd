"""Money over HTTP against a live node and the real ledger: accounts by number or id, funding
idempotent on the reference, statements in pages, adjustments with a second operator, refunds to
the funding reference; every movement a ledger transfer, every change audited, invariants kept."""
from __future__ import annotations

import asyncio

import pytest

import ledger
from tests.web.cdr_rows import ensure_facilities
from tests.web.conftest import make_operator

NUMBER = "+12125550177"


@pytest.fixture(scope="module")
async def billing(admin, db):
    return admin.as_(await make_operator(db, "bill", "billing"))


@pytest.fixture(scope="module")
async def billing2(admin, db):
    return admin.as_(await make_operator(db, "bell", "billing"))


@pytest.fixture(scope="module")
async def account(billing):
    r = billing.post("/accounts", json={"number": "(212) 555-0177", "owner": "Bea Roe"})
    assert r.status_code == 201, r.text
    return r.json()


async def _verified(db):
    report = await ledger.verify(db)
    assert report.ok, report.violations


async def test_an_account_is_addressed_by_number_or_id_alike(billing, account):
    assert account["id"] == f"prepaid:{NUMBER}" and account["available"] == "0.00"
    for ref in (NUMBER, "%2B12125550177", "prepaid:+12125550177", "212-555-0177"):
        r = billing.get(f"/accounts/{ref}")
        assert r.status_code == 200 and r.json()["id"] == account["id"], ref
    assert billing.get("/accounts/+12125550999").status_code == 404
    assert billing.get("/accounts/prepaid:nonsense").status_code == 404


async def test_funding_is_idempotent_on_the_reference(billing, account, db):
    r1 = billing.post(f"/accounts/{NUMBER}/fund", json={"amount": "25.00", "ref": "card-A1"})
    r2 = billing.post(f"/accounts/{NUMBER}/fund", json={"amount": "25", "ref": "card-A1"})
    assert (r1.json()["result"], r2.json()["result"]) == ("ok", "exists")
    assert r1.json()["transfer_id"] == r2.json()["transfer_id"]
    r3 = billing.post(f"/accounts/{NUMBER}/fund", json={"amount": "30.00", "ref": "card-A1"})
    assert r3.status_code == 409 and "CARD-A1" in r3.json()["detail"]
    assert billing.get(f"/accounts/{NUMBER}").json()["available"] == "25.00"
    assert await db.fetchval("SELECT count(*) FROM ledger_transfer WHERE ref = 'CARD-A1'") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE action = 'account.fund' "
                             "AND after->>'ref' = 'CARD-A1'") == 1
    await _verified(db)


@pytest.mark.parametrize("body,field", [
    ({"amount": 25.0, "ref": "x"}, "amount"),          # a JSON number: refused, never a float
    ({"amount": "0.0000001", "ref": "x"}, "amount"),
    ({"amount": "-5.00", "ref": "x"}, "amount"),
    ({"amount": "0", "ref": "x"}, "amount"),
    ({"amount": "1e3", "ref": "x"}, "amount"),
    ({"amount": "5.00", "ref": ""}, "ref"),
    ({"amount": "5.00", "ref": "a b"}, "ref"),
    ({"amount": "5.00"}, "ref"),
])
async def test_bad_funding_is_refused_naming_the_field_and_moves_nothing(billing, account, db,
                                                                       body, field):
    before = await db.fetchval("SELECT count(*) FROM ledger_transfer")
    r = billing.post(f"/accounts/{NUMBER}/fund", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    assert await db.fetchval("SELECT count(*) FROM ledger_transfer") == before


async def test_concurrent_retries_of_one_funding_move_money_once(billing, db):
    billing.post("/accounts", json={"number": "+13125550166", "owner": "Cy"})
    body = {"amount": "10.00", "ref": "card-race"}
    rs = await asyncio.gather(*[asyncio.to_thread(billing.post, "/accounts/+13125550166/fund",
                                                  json=body) for _ in range(8)])
    assert {r.status_code for r in rs} <= {200, 409}
    assert any(r.status_code == 200 and r.json()["result"] == "ok" for r in rs)
    assert billing.get("/accounts/+13125550166").json()["available"] == "10.00"
    await _verified(db)


async def test_statement_pages_cover_a_date_range_with_running_balances(billing, db):
    billing.post("/accounts", json={"number": "+13125550155", "owner": "Di"})
    for i in range(1, 8):
        r = billing.post("/accounts/+13125550155/fund", json={"amount": f"{i}.25",
                                                              "ref": f"st-{i}"})
        assert r.status_code == 200
    lines, cursor = [], None
    while True:
        q = {"limit": 3} | ({"cursor": cursor} if cursor is not None else {})
        page = billing.get("/accounts/prepaid:+13125550155/statement", params=q).json()
        lines += page["lines"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [ln["ref"] for ln in lines] == [f"ST-{i}" for i in range(1, 8)]   # normalized
    running, total = [], 0
    for i in range(1, 8):
        total += i * 1_000_000 + 250_000
        running.append(f"{total // 1_000_000}.{total % 1_000_000 // 10_000:02d}")
    assert [ln["balance"] for ln in lines] == running
    assert [ln["posted_change"] for ln in lines][:2] == ["1.25", "2.25"]
    # A range starting mid-history opens with the balance of what came before it.
    mid = billing.get("/accounts/+13125550155/statement",
                      params={"since": lines[3]["at"], "limit": 2}).json()
    assert [ln["balance"] for ln in mid["lines"]] == running[3:5]
    rest = billing.get("/accounts/+13125550155/statement",
                       params={"since": lines[3]["at"], "cursor": mid["next_cursor"]}).json()
    assert [ln["balance"] for ln in rest["lines"]] == running[5:]
    # Cursors carry the running balance, so they are signed: an altered one is refused.
    c = mid["next_cursor"]
    forged = c[:5] + ("A" if c[5] != "A" else "B") + c[6:]
    r = billing.get("/accounts/+13125550155/statement", params={"cursor": forged})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
    # A date range: everything so far is before the future.
    r = billing.get("/accounts/+13125550155/statement",
                    params={"since": "2099-01-01T00:00:00Z"}).json()
    assert r["lines"] == [] and r["next_cursor"] is None
    r = billing.get("/accounts/+13125550155/statement",
                    params={"since": "2099-01-01T00:00:00Z", "until": "2098-01-01T00:00:00Z"})
    assert r.status_code == 422


async def test_a_small_adjustment_applies_at_once_and_a_large_one_waits_for_another_operator(
        billing, billing2, db):
    billing.post("/accounts", json={"number": "+13125550144", "owner": "Ed"})
    small = billing.post("/accounts/+13125550144/adjustments",
                         json={"amount": "5.00", "reason": "dropped call", "ref": "adj-1"}).json()
    assert small["state"] == "applied" and small["transfer_id"]
    assert billing.get("/accounts/+13125550144").json()["available"] == "5.00"
    # Over the node's threshold (50.00): pending, no money moves yet.
    big = billing.post("/accounts/+13125550144/adjustments",
                       json={"amount": "75.00", "reason": "goodwill", "ref": "adj-2"}).json()
    assert big["state"] == "pending" and big["transfer_id"] is None
    assert billing.get("/accounts/+13125550144").json()["available"] == "5.00"
    pending = billing.get("/adjustments", params={"state": "pending"}).json()["adjustments"]
    assert big["id"] in [a["id"] for a in pending]
    r = billing.post(f"/adjustments/{big['id']}/decision", json={"decision": "approve"})
    assert r.status_code == 409 and "second operator" in r.json()["detail"]
    r = billing2.post(f"/adjustments/{big['id']}/decision", json={"decision": "approve"})
    assert r.status_code == 200 and r.json()["state"] == "applied"
    assert r.json()["decided_by"] == "bell"
    assert billing.get("/accounts/+13125550144").json()["available"] == "80.00"
    r = billing2.post(f"/adjustments/{big['id']}/decision", json={"decision": "approve"})
    assert r.status_code == 409            # decided once
    again = billing.post("/accounts/+13125550144/adjustments",
                         json={"amount": "5.00", "reason": "dropped call", "ref": "adj-1"})
    assert again.json()["id"] == small["id"]
    assert billing.get("/accounts/+13125550144").json()["available"] == "80.00"
    # A debit larger than the balance is refused by the ledger and leaves nothing behind.
    r = billing.post("/accounts/+13125550144/adjustments",
                     json={"amount": "-30.00", "reason": "chargeback", "ref": "adj-3"})
    assert r.status_code == 200 and r.json()["state"] == "applied"
    r = billing.post("/accounts/+13125550144/adjustments",
                     json={"amount": "-51.00", "reason": "x", "ref": "adj-4"})
    assert r.status_code == 200 and r.json()["state"] == "pending"
    r = billing2.post(f"/adjustments/{r.json()['id']}/decision", json={"decision": "approve"})
    assert r.status_code == 409 and "insufficient_funds" in r.json()["detail"]
    assert billing.get("/accounts/+13125550144").json()["available"] == "50.00"
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE action LIKE 'adjustment.%' "
                             "OR action = 'account.adjust'") >= 5
    await _verified(db)


async def test_a_refund_returns_unused_balance_to_its_deposit_once(billing, db):
    billing.post("/accounts", json={"number": "+13125550133", "owner": "Flo"})
    billing.post("/accounts/+13125550133/fund", json={"amount": "20.00", "ref": "pay-R1"})
    billing.post("/accounts/+13125550133/fund", json={"amount": "3.00", "ref": "pay-R2"})
    r = billing.post("/accounts/+13125550133/refunds", json={"funding_ref": "pay-R2",
                                                            "amount": "4.00"})
    assert r.status_code == 409 and "at most 3.00 can be refunded" in r.json()["detail"]
    assert "micro" not in r.json()["detail"]
    r = billing.post("/accounts/+13125550133/refunds", json={"funding_ref": "pay-R1"})
    assert r.status_code == 200 and r.json()["amount"] == "20.00" and r.json()["result"] == "ok"
    again = billing.post("/accounts/+13125550133/refunds", json={"funding_ref": "pay-R1"})
    assert again.json()["result"] == "exists" and again.json()["transfer_id"] == r.json()[
        "transfer_id"]
    assert billing.get("/accounts/+13125550133").json()["available"] == "3.00"
    r = billing.post("/accounts/+13125550133/refunds", json={"funding_ref": "card-A1"})
    assert r.status_code == 409 and "no deposit" in r.json()["detail"]
    t = await db.fetchrow("SELECT * FROM ledger_transfer WHERE id = $1::uuid",
                          again.json()["transfer_id"])
    assert (t["debit_account_id"], t["credit_account_id"], t["code"], t["ref"]) == (
        "prepaid:+13125550133", "refunds_payable", "refund", "PAY-R1")
    line = await db.fetchrow("SELECT * FROM refund_line WHERE transfer_id = $1::uuid",
                             again.json()["transfer_id"])      # the one view of refunds
    assert (line["source"], line["amount"], line["account"], line["delivery"]) == (
        "operator", 20_000_000, "prepaid:+13125550133", None)
    await _verified(db)


async def test_auditors_read_money_but_cannot_move_it(admin, db, account):
    auditor = admin.as_(await make_operator(db, "aud", "auditor"))
    assert auditor.get(f"/accounts/{NUMBER}").status_code == 200
    r = auditor.post(f"/accounts/{NUMBER}/fund", json={"amount": "1.00", "ref": "aud-1"})
    assert r.status_code == 403
    await ensure_facilities(db)
    staff = admin.as_(await make_operator(db, "stf", "facility_staff", ["north"]))
    assert staff.get(f"/accounts/{NUMBER}").status_code == 403
