"""The families' portal in a real Chromium, with JavaScript switched off, against a live node with
the demo data.

One story in English, in order (the tests share the browser and the node, module-scoped): a
holder registers, confirms the email with the code from the outbox (the link in the mail), logs
in, adds two numbers an operator proves, finds the facility and an inmate and asks to be a
contact, funds a number (principal and fee shown apart; a declined card changes nothing; the same
form sent twice pays once), sees the demo call and the money in the history (CSV and a monthly
statement), blocks a facility, asks for a refund and logs out. Then a second holder walks the
pages in Spanish, password reset included, checking the Spanish words on each page. Then the
hostile part: a POST without the CSRF token, another holder's number and payment, markup in an
inmate's name, a bad amount.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import asyncpg
import pytest
import requests

from tests.browser.console_rig import css, shoot, submit, wait_for
from tests.browser.test_console_browser import _place_demo_call

pytestmark = pytest.mark.timeout(180)

MOTHER = "+19515550101"          # the demo's funded number: the demo call goes to it
SECOND = "+19515550188"          # a new number, for a contact request that waits for staff
ABUELA = "+19515550166"          # the Spanish-speaking holder's number
PASSWORD = "portal-test-pass-1"


@pytest.fixture(scope="module")
def browser():
    """Chromium with JavaScript switched off: every page must work without it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    from tests.browser.conftest import CHROMEDRIVER, CHROMIUM
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-US", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def base(live_node):
    return live_node[0] + "/portal"


@pytest.fixture(scope="module")
def story():
    return {"email": f"jane.{uuid.uuid4().hex[:8]}@family.example",
            "email_es": f"rosa.{uuid.uuid4().hex[:8]}@family.example"}


async def _db(demo_dsn):
    return await asyncpg.connect(demo_dsn)


async def _mailed_code(demo_dsn, email: str, kind: str) -> str:
    conn = await _db(demo_dsn)
    try:
        body = await conn.fetchval("SELECT body FROM family_outbox WHERE recipient = $1 AND "
                                   "kind = $2 ORDER BY id DESC LIMIT 1", email, kind)
    finally:
        await conn.close()
    assert body, f"no {kind} mail for {email}"
    return re.search(r"^\s+([A-Za-z0-9_-]{20,})\s*$", body, re.M).group(1)


async def _prove(demo_dsn, email: str, number: str) -> None:
    """An operator proves the number is the holder's (as `ics family prove` does)."""
    from families import numbers
    conn = await _db(demo_dsn)
    try:
        holder = await conn.fetchval("SELECT id FROM family_holder WHERE email = $1", email)
        await numbers.prove(conn, holder, number, by="operator:ana",
                            now=dt.datetime.now(dt.timezone.utc))
    finally:
        await conn.close()


def _cookies(driver) -> dict[str, str]:
    return {c["name"]: c["value"] for c in driver.get_cookies()}


def _balance(driver, base: str, number: str) -> Decimal:
    driver.get(f"{base}/")
    wait_for(driver, "#numbers")
    return Decimal(css(driver, f'tr[data-number="{number}"] .balance')[0].text)


def _fill(driver, field: str, text: str) -> None:
    el = css(driver, field)[0]
    el.clear()
    el.send_keys(text)


def _select(driver, field: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select
    Select(css(driver, field)[0]).select_by_value(value)


# -- the story in English ---------------------------------------------------------------------

async def test_a_holder_registers_confirms_the_email_from_the_outbox_and_logs_in(
        browser, base, demo_dsn, story):
    browser.get(f"{base}/")
    wait_for(browser, "#login-form")                       # sent to the login page
    assert browser.find_element("css selector", "html").get_attribute("lang") == "en"
    css(browser, 'a[href$="/portal/register"]')[0].click()
    wait_for(browser, "#register-form")
    # Labels are tied to their inputs (a screen reader names each field).
    for field in ("email", "password", "password_again"):
        assert css(browser, f'label[for="{field}"]'), field
    _fill(browser, "#email", story["email"])
    _fill(browser, "#password", PASSWORD)
    _fill(browser, "#password_again", PASSWORD)
    submit(browser, "#register", "#verify-form")
    assert "Check your mail" in css(browser, ".notice")[0].text
    shoot(browser, "portal-registered")
    code = await _mailed_code(demo_dsn, story["email"], "verify")
    browser.get(f"{base}/verify?token={code}")              # the link from the mail
    assert css(browser, "#token")[0].get_attribute("value") == code
    submit(browser, "#verify", "#login-form")
    assert "confirmed" in css(browser, ".notice")[0].text
    _fill(browser, "#email", story["email"])
    _fill(browser, "#password", "a wrong password")
    submit(browser, "#login", "#problem")
    assert "Nothing was changed" in css(browser, "#problem")[0].text
    _fill(browser, "#email", story["email"])
    _fill(browser, "#password", PASSWORD)
    submit(browser, "#login", "#who")
    assert story["email"] in css(browser, "#who")[0].text
    shoot(browser, "portal-home-empty")


async def test_the_holder_adds_numbers_that_an_operator_proves(browser, base, demo_dsn, story):
    for number in (MOTHER, SECOND):
        _fill(browser, "#number", number)
        submit(browser, "#add-number", "#numbers")
    assert "proven" in css(browser, ".notice")[0].text
    assert "not proven yet" in css(browser, f'tr[data-number="{MOTHER}"]')[0].text
    assert not css(browser, "a.fund")                       # nothing to fund before proof
    await _prove(demo_dsn, story["email"], MOTHER)
    await _prove(demo_dsn, story["email"], SECOND)
    story["before"] = _balance(browser, base, MOTHER)
    assert len(css(browser, "a.fund")) == 2
    shoot(browser, "portal-numbers-proven")


async def test_the_holder_finds_the_facility_and_an_inmate_and_asks_to_be_a_contact(
        browser, base, story):
    css(browser, 'nav a[href$="/portal/find"]')[0].click()
    wait_for(browser, "#find-form")
    _fill(browser, "#q", "Riverside")
    submit(browser, "#find", "#facilities")
    css(browser, '#facilities a[href$="/find/riverside"]')[0].click()
    wait_for(browser, "#inmate-form")
    _fill(browser, "#name", "John")
    submit(browser, "#find-inmate", "#inmate-10001")
    _select(browser, "#number-10001", SECOND)
    _fill(browser, "#name-10001", "Jane")
    _fill(browser, "#relationship-10001", "cousin")
    shoot(browser, "portal-inmate-found")
    submit(browser, "#inmate-10001 button.request", "#requests")
    assert "sent to the facility" in css(browser, ".notice")[0].text
    row = css(browser, "#requests tbody tr")[0].text
    assert "John Doe" in row and SECOND in row and "waiting for the facility" in row


async def test_a_bad_amount_names_the_field_and_a_declined_card_changes_nothing(
        browser, base, demo_dsn, story):
    browser.get(f"{base}/numbers/%2B19515550101/fund")
    wait_for(browser, "#quote-form")
    _fill(browser, "#amount", "12,50")
    submit(browser, "#quote", "#problem")
    assert css(browser, "#amount")[0].get_attribute("aria-invalid") == "true"
    assert "Amount" in css(browser, "#problem .bad-field")[0].text
    _fill(browser, "#amount", "25.00")
    submit(browser, "#quote", "#pay-form")
    assert css(browser, "#principal")[0].text == "25.00"
    assert css(browser, "#fee")[0].text == "0.00"           # fcc-2024: no deposit fee
    assert css(browser, "#total")[0].text == "25.00"
    shoot(browser, "portal-fund-review")
    _select(browser, "#card_token", "tok_decline")
    submit(browser, "#pay", "#declined")
    assert "declined" in css(browser, "#declined")[0].text
    shoot(browser, "portal-fund-declined")
    assert _balance(browser, base, MOTHER) == story["before"]


async def test_funding_shows_principal_and_fee_and_a_resent_form_pays_once(
        browser, base, demo_dsn, story):
    browser.get(f"{base}/numbers/%2B19515550101/fund?amount=25.00")
    wait_for(browser, "#pay-form")
    form = {el.get_attribute("name"): el.get_attribute("value")
            for el in css(browser, "#pay-form input[type=hidden]")}
    _select(browser, "#card_token", "tok_approve")
    submit(browser, "#pay", "#payment")
    assert "Paid" in css(browser, "#payment-state")[0].text
    assert css(browser, "#payment #principal")[0].text == "25.00"
    story["payment"] = browser.current_url.rsplit("/", 1)[1]
    shoot(browser, "portal-fund-paid")
    # The same form again (a double click, a resent form): the same payment, no second charge.
    r = requests.post(f"{base}/numbers/%2B19515550101/fund", cookies=_cookies(browser),
                      data={**form, "card_token": "tok_approve"}, timeout=10,
                      allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"].endswith(story["payment"])
    conn = await _db(demo_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM family_payment WHERE target = $1 AND "
                                   "state = 'confirmed'", MOTHER) == 1
    finally:
        await conn.close()
    assert _balance(browser, base, MOTHER) == story["before"] + 25


async def test_the_history_shows_the_demo_call_and_the_money_with_csv_and_a_statement(
        browser, base, live_node, reactor, story):
    call_id = await _place_demo_call(live_node[1], live_node[2], talk_seconds=50)
    assert call_id
    css(browser, 'nav a[href$="/portal/history"]')[0].click()
    wait_for(browser, "#calls")
    calls = css(browser, "#calls tbody tr")
    assert calls and MOTHER in calls[0].text and "50 s" in calls[0].text
    assert "Riverside County Jail" in calls[0].text
    assert "deposit" in css(browser, "#money tbody tr.deposit")[0].text
    shoot(browser, "portal-history")
    href = css(browser, "#calls-csv")[0].get_attribute("href")
    r = requests.get(href, cookies=_cookies(browser), timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.text.startswith("date,number,duration_seconds,cost,facility") and MOTHER in r.text
    month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
    _select(browser, "#number", MOTHER)
    _fill(browser, "#statement-month", month)
    submit(browser, "#order-statement", "#calls")
    notice = css(browser, ".notice")[0].text
    assert f"Statement for {month}" in notice and "fee 0.00" in notice
    browser.get(f"{base}/history?month={month}")
    assert MOTHER in css(browser, "#calls tbody tr")[0].text


async def test_the_holder_blocks_a_facility_and_unblocks_it(browser, base, story):
    css(browser, 'nav a[href$="/portal/blocks"]')[0].click()
    wait_for(browser, "#no-blocks")
    _select(browser, "#number", SECOND)
    _fill(browser, "#facility", "riverside")
    submit(browser, "#block", "#blocks")
    assert "riverside" in css(browser, "#blocks tbody tr")[0].text
    shoot(browser, "portal-blocked")
    submit(browser, "#blocks .unblock button", "#no-blocks")
    assert "removed" in css(browser, ".notice")[0].text
    # Blocked again for the rest of the story (a call from riverside to SECOND is refused).
    _select(browser, "#number", SECOND)
    _fill(browser, "#facility", "riverside")
    submit(browser, "#block", "#blocks")


async def test_the_holder_asks_for_a_refund_and_logs_out(browser, base, story):
    browser.get(f"{base}/")
    wait_for(browser, "#numbers")
    submit(browser, f'tr[data-number="{MOTHER}"] a.refund', "#refund-form")
    assert MOTHER in css(browser, "#refund-what")[0].text
    submit(browser, "#confirm-refund", "#numbers")
    notice = css(browser, ".notice")[0].text
    assert "refunded from " + MOTHER in notice, notice
    shoot(browser, "portal-refunded")
    browser.get(f"{base}/history")
    assert css(browser, "#money tbody tr.refund")
    submit(browser, "#logout", "#login-form")
    assert "logged out" in css(browser, ".notice")[0].text
    browser.get(f"{base}/")
    wait_for(browser, "#login-form")                       # the session is over


# -- the pages in Spanish ---------------------------------------------------------------------

def _es(browser, heading: str) -> None:
    assert browser.find_element("css selector", "html").get_attribute("lang") == "es"
    assert css(browser, "h1")[0].text.startswith(heading), css(browser, "h1")[0].text


async def test_a_spanish_speaking_holder_walks_the_pages_in_spanish(browser, base, demo_dsn,
                                                                    story):
    email = story["email_es"]
    browser.delete_all_cookies()
    browser.get(f"{base}/register?lang=es")                # the language control
    wait_for(browser, "#register-form")
    _es(browser, "Abrir una cuenta")
    assert css(browser, 'label[for="email"]')[0].text.startswith("Correo electrónico")
    _fill(browser, "#email", email)
    _fill(browser, "#password", PASSWORD)
    _fill(browser, "#password_again", PASSWORD + "x")
    submit(browser, "#register", "#problem")
    assert "No se cambió nada" in css(browser, "#problem")[0].text
    assert "Repita la contraseña" in css(browser, "#problem .bad-field")[0].text
    _fill(browser, "#password", PASSWORD)
    _fill(browser, "#password_again", PASSWORD)
    submit(browser, "#register", "#verify-form")            # the choice is kept (cookie)
    _es(browser, "Confirme su correo")
    browser.get(f"{base}/verify?token={await _mailed_code(demo_dsn, email, 'verify')}")
    submit(browser, "#verify", "#login-form")
    _es(browser, "Iniciar sesión")
    assert "confirmado" in css(browser, ".notice")[0].text
    # A forgotten password: the reset pages, with the code from the outbox.
    css(browser, 'a[href$="/portal/reset"]')[0].click()
    wait_for(browser, "#reset-form")
    _es(browser, "Restablecer la contraseña")
    _fill(browser, "#email", email)
    submit(browser, "#reset", "#new-password-form")
    _es(browser, "Elija una contraseña nueva")
    _fill(browser, "#token", await _mailed_code(demo_dsn, email, "reset"))
    _fill(browser, "#password", PASSWORD + "-new")
    _fill(browser, "#password_again", PASSWORD + "-new")
    submit(browser, "#new-password", "#login-form")
    assert "Su contraseña cambió" in css(browser, ".notice")[0].text
    _fill(browser, "#email", email)
    _fill(browser, "#password", PASSWORD + "-new")
    submit(browser, "#login", "#who")
    _es(browser, "Mis números")
    _fill(browser, "#number", ABUELA)
    submit(browser, "#add-number", "#numbers")
    assert "sin comprobar" in css(browser, "#numbers")[0].text
    await _prove(demo_dsn, email, ABUELA)
    browser.get(f"{base}/")
    assert "comprobado" in css(browser, "#numbers")[0].text
    shoot(browser, "portal-es-home")
    browser.get(f"{base}/find?q=River")
    _es(browser, "Buscar un centro")
    css(browser, '#facilities a[href$="/find/riverside"]')[0].click()
    wait_for(browser, "#inmate-form")
    _fill(browser, "#id", "10001")
    submit(browser, "#find-inmate", "#inmate-10001")
    _es(browser, "Buscar un interno")
    submit(browser, "#inmate-10001 button.request", "#requests")
    assert "Su solicitud se envió" in css(browser, ".notice")[0].text
    assert "esperando al centro" in css(browser, "#requests")[0].text
    css(browser, "a.fund")[0].click()
    wait_for(browser, "#quote-form")
    _es(browser, "Agregar dinero")
    _fill(browser, "#amount", "10.00")
    submit(browser, "#quote", "#pay-form")
    assert "Se agrega a la cuenta" in css(browser, "#quote-facts")[0].text
    assert "Comisión" in css(browser, "#quote-facts")[0].text
    _select(browser, "#card_token", "tok_decline")
    submit(browser, "#pay", "#declined")
    assert "La tarjeta fue rechazada" in css(browser, "#declined")[0].text
    _select(browser, "#card_token", "tok_approve")
    submit(browser, "#pay", "#payment")
    assert "Pagado" in css(browser, "#payment-state")[0].text
    shoot(browser, "portal-es-paid")
    browser.get(f"{base}/history")
    _es(browser, "Historial")
    assert "depósito" in css(browser, "#money")[0].text
    browser.get(f"{base}/blocks")
    _es(browser, "Bloqueos")
    _fill(browser, "#inmate", "10001")
    submit(browser, "#block", "#blocks")
    assert "El bloqueo está activo" in css(browser, ".notice")[0].text
    browser.get(f"{base}/")
    submit(browser, f'tr[data-number="{ABUELA}"] a.refund', "#refund-form")
    _es(browser, "Reembolsar el saldo")
    submit(browser, "#confirm-refund", "#numbers")
    assert "Se reembolsaron 10.00" in css(browser, ".notice")[0].text
    story["es_cookies"] = _cookies(browser)
    shoot(browser, "portal-es-refunded")


# -- hostile ----------------------------------------------------------------------------------

async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(base, demo_dsn,
                                                                          story):
    cookies = story["es_cookies"]
    conn = await _db(demo_dsn)
    try:
        payments = await conn.fetchval("SELECT count(*) FROM family_payment")
        audit = await conn.fetchval("SELECT count(*) FROM audit_event")
        url = f"{base}/numbers/%2B19515550166/fund"
        form = {"amount": "5.00", "card_token": "tok_approve",
                "idempotency_key": str(uuid.uuid4())}
        for bad in ({}, {"csrf": ""}, {"csrf": "x" * 43}):
            r = requests.post(url, data={**form, **bad}, cookies=cookies, timeout=10,
                              allow_redirects=False)
            assert r.status_code == 403, r.status_code
            assert "nothing was changed" in r.text or "no se cambió nada" in r.text.lower()
        assert await conn.fetchval("SELECT count(*) FROM family_payment") == payments
        assert await conn.fetchval("SELECT count(*) FROM audit_event") == audit
        # The same form with the session's token goes through: the refusal was the token's.
        page = requests.get(url + "?amount=5.00", cookies=cookies, timeout=10).text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = requests.post(url, data={**form, "csrf": token}, cookies=cookies, timeout=10,
                          allow_redirects=False)
        assert r.status_code == 303
        assert await conn.fetchval("SELECT count(*) FROM family_payment") == payments + 1
    finally:
        await conn.close()


async def test_another_holders_number_and_payment_are_not_reachable(base, demo_dsn, story):
    cookies = story["es_cookies"]                           # the Spanish holder
    page = requests.get(f"{base}/", cookies=cookies, timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    conn = await _db(demo_dsn)
    try:
        payments = await conn.fetchval("SELECT count(*) FROM family_payment")
        refunds = await conn.fetchval("SELECT count(*) FROM refund")
        for url in (f"{base}/numbers/%2B19515550101/fund?amount=5.00",
                    f"{base}/numbers/%2B19515550101/refund",
                    f"{base}/payments/{story['payment']}"):
            r = requests.get(url, cookies=cookies, timeout=10)
            assert r.status_code == 404, (url, r.status_code)
            assert "25.00" not in r.text
        r = requests.post(f"{base}/numbers/%2B19515550101/fund", cookies=cookies, timeout=10,
                          data={"csrf": token, "amount": "5.00", "card_token": "tok_approve",
                                "idempotency_key": str(uuid.uuid4())}, allow_redirects=False)
        assert r.status_code == 404
        r = requests.post(f"{base}/numbers/%2B19515550101/refund", cookies=cookies,
                          data={"csrf": token}, timeout=10, allow_redirects=False)
        assert r.status_code == 404
        r = requests.get(f"{base}/payments/not-a-uuid", cookies=cookies, timeout=10)
        assert r.status_code in (404, 422)
        assert await conn.fetchval("SELECT count(*) FROM family_payment") == payments
        assert await conn.fetchval("SELECT count(*) FROM refund") == refunds
    finally:
        await conn.close()


async def test_markup_in_an_inmates_name_is_shown_as_text(browser, base, demo_dsn, story):
    conn = await _db(demo_dsn)
    try:
        await conn.execute("UPDATE inmate SET name = $1 WHERE id = '10002'",
                           '<b id="injected">Maria</b><script>alert(1)</script>')
        r = requests.get(f"{base}/find/riverside?id=10002", cookies=story["es_cookies"],
                         timeout=10)
        assert r.status_code == 200
        assert "<script>alert" not in r.text and '<b id="injected">' not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        assert "<script" not in r.text                      # no script on any portal page
        csp = r.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp
    finally:
        await conn.execute("UPDATE inmate SET name = 'Maria Garcia' WHERE id = '10002'")
        await conn.close()


async def test_a_form_with_a_bad_amount_names_the_field_and_changes_nothing(base, demo_dsn,
                                                                           story):
    cookies = story["es_cookies"]
    url = f"{base}/numbers/%2B19515550166/fund"
    page = requests.get(url + "?amount=5.00", cookies=cookies, timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    conn = await _db(demo_dsn)
    try:
        payments = await conn.fetchval("SELECT count(*) FROM family_payment")
        for amount in ("5,00", "-5", "5.001", "", "1e3", "99999999"):
            r = requests.post(url, cookies=cookies, timeout=10, allow_redirects=False, data={
                "csrf": token, "amount": amount, "card_token": "tok_approve",
                "idempotency_key": str(uuid.uuid4())})
            assert r.status_code in (409, 422), (amount, r.status_code)
            assert 'id="amount"' in r.text and 'aria-invalid="true"' in r.text, amount
            assert "Importe" in r.text                      # the field, named in Spanish
        assert await conn.fetchval("SELECT count(*) FROM family_payment") == payments
    finally:
        await conn.close()
