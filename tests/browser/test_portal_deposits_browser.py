"""The portal's inmate (trust) deposit and password pages in a real Chromium (JavaScript off),
against the shared live node with the demo data.

A holder whose number is an approved contact of inmate 10001 (set up as staff would) sends money
to the inmate's facility account from the home page; a deposit over the facility's monthly limit,
one to an inmate the holder is not an approved contact of, and one to an inmate who does not
exist change nothing. Then the holder changes the password: a wrong current password, two new
passwords that differ and a form without the CSRF token change nothing; the right one ends the
holder's other session and keeps this one. The same pages are checked in Spanish, a refusal
included (said from its code, not in the API's English).
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import asyncpg
import pytest
import requests

from tests.browser.console_rig import shoot
from tests.browser.test_console_browser import css, wait_for
from tests.browser.test_portal_browser import _cookies, _fill, _select, browser, submit  # noqa: F401

pytestmark = pytest.mark.timeout(180)

NUMBER = "+19515550177"
INMATE = "10001"                  # John Doe at riverside: the holder is an approved contact
STRANGER = "10002"                # at riverside, which takes deposits only from approved contacts
PASSWORD = "deposit-test-pass-1"
NEW_PASSWORD = "deposit-test-pass-2"
M = 1_000_000


@pytest.fixture(scope="module")
def base(live_node):
    return live_node[0] + "/portal"


@pytest.fixture(scope="module")
async def holder(live_node, demo_dsn):
    """A verified holder with a proven number that staff approved as inmate 10001's contact."""
    from families import contacts, numbers
    email = f"tess.{uuid.uuid4().hex[:8]}@family.example"
    api = live_node[0] + "/api/v1/family"
    r = requests.post(f"{api}/register", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 202, r.text
    conn = await asyncpg.connect(demo_dsn)
    try:
        body = await conn.fetchval("SELECT body FROM family_outbox WHERE recipient = $1 AND "
                                   "kind = 'verify' ORDER BY id DESC LIMIT 1", email)
        code = re.search(r"^\s+([A-Za-z0-9_-]{20,})\s*$", body, re.M).group(1)
        assert requests.post(f"{api}/verify", json={"token": code}, timeout=10).ok
        hid = await conn.fetchval("SELECT id FROM family_holder WHERE email = $1", email)
        now = dt.datetime.now(dt.timezone.utc)
        await numbers.claim(conn, hid, NUMBER, now=now)
        await numbers.prove(conn, hid, NUMBER, by="operator:ana", now=now)
        req = await contacts.request_contact(conn, hid, INMATE, NUMBER, name="Tess",
                                             relationship="sister", now=now)
        if req.state == "requested":    # a contact staff approved before is approved at once
            await contacts.decide(conn, req.id, approve=True, actor="operator:fran", now=now)
    finally:
        await conn.close()
    return {"email": email, "id": hid, "api": api}


async def _count(demo_dsn, sql: str, *args) -> int:
    conn = await asyncpg.connect(demo_dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def _inmate_posted(demo_dsn, inmate: str) -> int:
    return await _count(demo_dsn, "SELECT coalesce((SELECT credits_posted FROM "
                        "ledger_account_balance WHERE id = $1), 0)", f"inmate:{inmate}")


def _login(browser, base, email, password):
    browser.delete_all_cookies()
    browser.get(f"{base}/login?lang=en")
    wait_for(browser, "#login-form")
    _fill(browser, "#email", email)
    _fill(browser, "#password", password)
    submit(browser, "#login", "#who")


def _csrf(base, cookies, path="/") -> str:
    page = requests.get(f"{base}{path}", cookies=cookies, timeout=10).text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


# -- inmate deposits ----------------------------------------------------------------------------

async def test_an_approved_contact_sends_money_to_an_inmate_from_the_home_page(
        browser, base, demo_dsn, holder):
    _login(browser, base, holder["email"], PASSWORD)
    before = await _inmate_posted(demo_dsn, INMATE)
    row = css(browser, "#requests tbody tr")[0]
    assert "approved" in row.text
    submit(browser, "#requests a.deposit", "#quote-form")
    assert "John Doe" in css(browser, "#inmate-who")[0].text
    assert css(browser, 'label[for="amount"]')                  # the field is labelled
    _fill(browser, "#amount", "40.00")
    submit(browser, "#quote", "#pay-form")
    assert css(browser, "#principal")[0].text == "40.00"
    fee = css(browser, "#fee")[0].text
    assert Decimal(css(browser, "#total")[0].text) == 40 + Decimal(fee)
    shoot(browser, "portal-inmate-deposit-review")
    _select(browser, "#card_token", "tok_decline")
    submit(browser, "#pay", "#declined")                        # a declined card moves nothing
    assert await _inmate_posted(demo_dsn, INMATE) == before
    _select(browser, "#card_token", "tok_approve")
    submit(browser, "#pay", "#payment")
    assert "Paid" in css(browser, "#payment-state")[0].text
    assert css(browser, "#target")[0].text == INMATE
    assert "Inmate" in css(browser, "#payment")[0].text
    shoot(browser, "portal-inmate-deposit-paid")
    assert await _inmate_posted(demo_dsn, INMATE) == before + 40 * M


async def test_a_deposit_over_the_facilitys_monthly_limit_is_refused_and_changes_nothing(
        browser, base, demo_dsn, holder):
    conn = await asyncpg.connect(demo_dsn)
    try:
        prior = await conn.fetchrow("SELECT * FROM family_facility_policy WHERE facility_id = "
                                    "'riverside'")
        await conn.execute("INSERT INTO family_facility_policy (facility_id, debit_monthly_max) "
                           "VALUES ('riverside', $1) ON CONFLICT (facility_id) DO UPDATE SET "
                           "debit_monthly_max = EXCLUDED.debit_monthly_max", 50 * M)
        payments = await conn.fetchval("SELECT count(*) FROM family_payment")
        before = await _inmate_posted(demo_dsn, INMATE)
        browser.get(f"{base}/inmates/{INMATE}/deposit?amount=10.01")   # 40 sent, 10 left
        wait_for(browser, "#pay-form")
        _select(browser, "#card_token", "tok_approve")
        submit(browser, "#pay", "#problem")
        text = css(browser, "#problem")[0].text
        assert "Nothing was changed" in text and "10.00 is left this month" in text, text
        assert css(browser, "#amount")[0].get_attribute("aria-invalid") == "true"
        shoot(browser, "portal-inmate-deposit-over-limit")
        assert await conn.fetchval("SELECT count(*) FROM family_payment") == payments
        assert await _inmate_posted(demo_dsn, INMATE) == before
    finally:
        if prior is None:
            await conn.execute("DELETE FROM family_facility_policy WHERE facility_id = "
                               "'riverside'")
        else:
            await conn.execute("UPDATE family_facility_policy SET debit_monthly_max = $1 WHERE "
                               "facility_id = 'riverside'", prior["debit_monthly_max"])
        await conn.close()


async def test_only_approved_contacts_may_deposit_where_the_facility_requires_it(
        browser, base, demo_dsn, holder):
    payments = await _count(demo_dsn, "SELECT count(*) FROM family_payment")
    browser.get(f"{base}/inmates/{STRANGER}/deposit?amount=5.00")
    wait_for(browser, "#pay-form")                              # the quote is only a price
    _select(browser, "#card_token", "tok_approve")
    submit(browser, "#pay", "#problem")
    assert "approved contacts" in css(browser, "#problem")[0].text
    assert await _count(demo_dsn, "SELECT count(*) FROM family_payment") == payments
    assert await _inmate_posted(demo_dsn, STRANGER) == 0


async def test_hostile_inmate_deposit_forms_change_nothing(base, demo_dsn, holder, browser):
    cookies = _cookies(browser)
    token = _csrf(base, cookies)
    payments = await _count(demo_dsn, "SELECT count(*) FROM family_payment")
    form = {"csrf": token, "amount": "5.00", "card_token": "tok_approve"}
    # No such inmate, an id that is not one, markup in the path: 404, no form drawn.
    for inmate in ("99999", "abc", "%3Cscript%3E", "1" * 16):
        r = requests.get(f"{base}/inmates/{inmate}/deposit?amount=5.00", cookies=cookies,
                         timeout=10)
        assert r.status_code == 404, (inmate, r.status_code)
        assert "<script>" not in r.text
        r = requests.post(f"{base}/inmates/{inmate}/deposit", cookies=cookies, timeout=10,
                          data={**form, "idempotency_key": str(uuid.uuid4())},
                          allow_redirects=False)
        assert r.status_code == 404, (inmate, r.status_code)
    # Without the CSRF token; with a bad amount; with a card token that is not one.
    url = f"{base}/inmates/{INMATE}/deposit"
    r = requests.post(url, cookies=cookies, data={**form, "csrf": "",
                                                  "idempotency_key": str(uuid.uuid4())},
                      timeout=10, allow_redirects=False)
    assert r.status_code == 403
    for bad in ({"amount": "5,00"}, {"amount": "-1"}, {"card_token": "visa 4111"},
                {"idempotency_key": ""}):
        r = requests.post(url, cookies=cookies, timeout=10, allow_redirects=False,
                          data={**form, "idempotency_key": str(uuid.uuid4()), **bad})
        assert r.status_code == 422, (bad, r.status_code)
        assert "Nothing was changed" in r.text
    # Not logged in: sent to the login page.
    r = requests.get(url, timeout=10, allow_redirects=False)
    assert r.status_code in (302, 303) and "/portal/login" in r.headers["Location"]
    assert await _count(demo_dsn, "SELECT count(*) FROM family_payment") == payments


# -- the password -------------------------------------------------------------------------------

async def _password_hash(demo_dsn, holder) -> bytes:
    conn = await asyncpg.connect(demo_dsn)
    try:
        return await conn.fetchval("SELECT password_hash FROM family_holder WHERE id = $1",
                                   holder["id"])
    finally:
        await conn.close()


async def test_a_wrong_current_password_or_differing_new_ones_change_nothing(
        browser, base, demo_dsn, holder):
    before = await _password_hash(demo_dsn, holder)
    css(browser, 'nav a[href$="/portal/password"]')[0].click()
    wait_for(browser, "#password-form")
    for field in ("current_password", "new_password", "new_password_again"):
        assert css(browser, f'label[for="{field}"]'), field
        assert css(browser, f"#{field}")[0].get_attribute("type") == "password"
    _fill(browser, "#current_password", "not my password")
    _fill(browser, "#new_password", NEW_PASSWORD)
    _fill(browser, "#new_password_again", NEW_PASSWORD)
    submit(browser, "#change-password", "#problem")
    assert css(browser, "#current_password")[0].get_attribute("aria-invalid") == "true"
    assert "Current password" in css(browser, "#problem .bad-field")[0].text
    assert css(browser, "#current_password")[0].get_attribute("value") == ""   # not echoed
    shoot(browser, "portal-password-wrong")
    _fill(browser, "#current_password", PASSWORD)
    _fill(browser, "#new_password", NEW_PASSWORD)
    _fill(browser, "#new_password_again", NEW_PASSWORD + "x")
    submit(browser, "#change-password", "#problem")
    assert css(browser, "#new_password_again")[0].get_attribute("aria-invalid") == "true"
    _fill(browser, "#current_password", PASSWORD)
    _fill(browser, "#new_password", "short")
    _fill(browser, "#new_password_again", "short")
    submit(browser, "#change-password", "#problem")
    assert css(browser, "#new_password")[0].get_attribute("aria-invalid") == "true"
    # Without the CSRF token.
    r = requests.post(f"{base}/password", cookies=_cookies(browser), allow_redirects=False,
                      data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                            "new_password_again": NEW_PASSWORD}, timeout=10)
    assert r.status_code == 403
    assert await _password_hash(demo_dsn, holder) == before


async def test_changing_the_password_ends_the_other_sessions_and_keeps_this_one(
        browser, base, demo_dsn, holder):
    other = requests.post(f"{holder['api']}/login", timeout=10,
                          json={"email": holder["email"], "password": PASSWORD})
    assert other.status_code == 200
    elsewhere = dict(other.cookies)
    assert requests.get(f"{base}/", cookies=elsewhere, timeout=10,
                        allow_redirects=False).status_code == 200
    browser.get(f"{base}/password")
    wait_for(browser, "#password-form")
    _fill(browser, "#current_password", PASSWORD)
    _fill(browser, "#new_password", NEW_PASSWORD)
    _fill(browser, "#new_password_again", NEW_PASSWORD)
    submit(browser, "#change-password", "#who")
    assert "password is changed" in css(browser, ".notice")[0].text
    shoot(browser, "portal-password-changed")
    browser.get(f"{base}/history")                              # this session goes on
    wait_for(browser, "#calls-csv")
    r = requests.get(f"{base}/", cookies=elsewhere, timeout=10, allow_redirects=False)
    assert r.status_code in (302, 303) and "/portal/login" in r.headers["Location"]
    assert requests.post(f"{holder['api']}/login", timeout=10, json={
        "email": holder["email"], "password": PASSWORD}).status_code == 401
    assert requests.post(f"{holder['api']}/login", timeout=10, json={
        "email": holder["email"], "password": NEW_PASSWORD}).status_code == 200


async def test_the_deposit_and_password_pages_in_spanish(browser, base, holder):
    browser.get(f"{base}/password?lang=es")
    wait_for(browser, "#password-form")
    assert browser.find_element("css selector", "html").get_attribute("lang") == "es"
    assert css(browser, "h1")[0].text == "Cambiar la contraseña"
    assert css(browser, 'label[for="current_password"]')[0].text.startswith("Contraseña actual")
    # A refusal is said in Spanish from its code, not in the API's English.
    _fill(browser, "#current_password", "no es la mía")
    _fill(browser, "#new_password", "otra-contraseña-larga-1")
    _fill(browser, "#new_password_again", "otra-contraseña-larga-1")
    submit(browser, "#change-password", "#problem")
    text = css(browser, "#problem")[0].text
    assert "No se cambió nada" in text and "no es su contraseña" in text, text
    assert "is not your password" not in browser.page_source
    shoot(browser, "portal-es-password-wrong")
    browser.get(f"{base}/inmates/{INMATE}/deposit?amount=5.00")
    wait_for(browser, "#pay-form")
    assert css(browser, "h1")[0].text == "Enviar dinero a un interno"
    assert "Se envía al interno" in css(browser, "#quote-facts")[0].text
    shoot(browser, "portal-es-inmate-deposit")
    browser.get(f"{base}/?lang=en")
