"""The operators' console in a real Chromium against a live node with the demo data.

One story, in order (the tests share the browser and the node, module-scoped): an operator logs
in, uploads a deck with three errors and sees all three, fixes it, sees the profile check and the
diff, activates it; a demo call is placed through the core (as a media worker drives it over AMP:
the core-only path of `ics demo --no-sip`); the operator finds its CDR, refunds part of the
account, and sees the report move. Then the hostile part: a POST without the CSRF token, a role
without billing rights, and markup in a CSV cell and an inmate's name.
"""
from __future__ import annotations

import asyncio
import os
import re
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import requests

from tests.browser.console_rig import (PASSWORDS, click_and_wait, css, shoot, submit,
                                       wait_for)

pytestmark = pytest.mark.timeout(180)

DEMO_DECK = (Path(__file__).resolve().parents[2] / "config" / "demo" / "tariff.csv").read_text()
MOTHER = "+19515550101"
# The demo deck with the intrastate price lowered from 0.06 to 0.05 per minute (intrastate has
# no evening band, so the 15-minute price moves at any hour: 0.90 -> 0.75).
FIXED_DECK = DEMO_DECK.replace("intrastate,any,all,00:00,0,0,0.06,",
                               "intrastate,any,all,00:00,0,0,0.05,").replace(
    "intrastate,any,all,00:00,0,60,0.06,", "intrastate,any,all,00:00,0,60,0.05,")
# Three errors on three lines: a price that is not money, an unknown payment, a bad time.
BROKEN_DECK = FIXED_DECK.replace("intrastate,any,all,00:00,0,0,0.05,",
                                 "intrastate,any,all,00:00,0,0,six cents,", 1).replace(
    "rate,international,international,any,", "rate,international,international,cheque,", 1
).replace("rate,mexico,+52,any,all,00:00,0,0,", "rate,mexico,+52,any,all,25:00,0,0,", 1)


def login(driver, base: str, operator: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/console/login")
    wait_for(driver, "#operator").send_keys(operator)
    css(driver, "#password")[0].send_keys(PASSWORDS[operator])
    submit(driver, "#login", "h1")
    assert f"{operator} · " in css(driver, ".who")[0].text


def paste_deck(driver, text: str) -> None:
    # The textarea takes the deck as typed (send_keys would be slow for a whole deck).
    area = css(driver, "#csv")[0]
    driver.execute_script("arguments[0].value = arguments[1];", area, text)


def _session_cookies(driver) -> dict[str, str]:
    return {c["name"]: c["value"] for c in driver.get_cookies()}


def report_totals(driver, base: str) -> tuple[int, Decimal]:
    driver.get(f"{base}/console/reports")
    wait_for(driver, "#total-calls")
    return (int(css(driver, "#total-calls")[0].text),
            Decimal(css(driver, "#total-revenue")[0].text))


@pytest.fixture(scope="module")
def base(live_node):
    return live_node[0]


@pytest.fixture(scope="module")
def story():
    return {}


async def test_a_wrong_password_is_refused_and_the_right_one_logs_in(browser, base):
    browser.get(f"{base}/console/tariffs")
    wait_for(browser, "#operator")                         # sent to the login page
    css(browser, "#operator")[0].send_keys("ana")
    css(browser, "#password")[0].send_keys("not the password at all")
    submit(browser, "#login", "#login-message")
    assert "wrong" in css(browser, "#login-message")[0].text
    assert not css(browser, ".who")
    login(browser, base, "ana")
    shoot(browser, "home")


async def test_a_deck_with_three_errors_shows_all_three_at_their_lines(browser, base):
    browser.get(f"{base}/console/tariffs?facility=riverside")
    wait_for(browser, "#csv")
    paste_deck(browser, BROKEN_DECK)
    submit(browser, "#check", "#deck-errors")
    rows = [r.text for r in css(browser, "#deck-errors .deck-error")]
    shoot(browser, "deck-three-errors")
    assert len(rows) == 3, rows
    lines = BROKEN_DECK.splitlines()
    expected = {str(i + 1) for i, ln in enumerate(lines)
                if "six cents" in ln or "cheque" in ln or "25:00" in ln}
    assert {r.split()[0] for r in rows} == expected
    assert any("six cents" in r for r in rows) and any("cheque" in r for r in rows)
    assert any("25:00" in r for r in rows)
    # ... and again under the deck's own lines, each where it is.
    inline = [e.text for e in css(browser, "ol.csv li.bad .inline-error")]
    assert len(inline) == 3 and inline[0].startswith("price:"), inline
    assert not css(browser, "#activate")                     # nothing to activate


async def test_the_fixed_deck_shows_profile_check_and_diff_then_activates(browser, base, story):
    browser.get(f"{base}/console/tariffs?facility=riverside")
    wait_for(browser, "#csv")
    before = len(css(browser, "#versions tbody tr"))
    paste_deck(browser, FIXED_DECK)
    submit(browser, "#check", "#deck-valid")
    assert "within" in css(browser, "#profile-check")[0].text.lower()
    diff = css(browser, "#deck-diff")[0].text
    assert "0.06" in diff and "0.05" in diff                  # rows removed and added
    changed = [r.text for r in css(browser, "#deck-prices tr.changed")]
    shoot(browser, "deck-diff")
    # The 15-minute intrastate call: 0.90 before, 0.75 after, for each payment type.
    assert len(changed) == 3 and all("intrastate" in r for r in changed), changed
    assert all("0.90" in r and "0.75" in r for r in changed), changed
    submit(browser, "#activate", "#versions")
    notice = css(browser, ".notice")[0].text
    shoot(browser, "deck-activated")
    assert re.search(r"Version \d+ imported", notice), notice
    assert len(css(browser, "#versions tbody tr")) == before + 1


async def _place_demo_call(amp_port: int, data_dir: Path, talk_seconds: int) -> str:
    """The demo call through the core, as a media worker drives it (AMP, no SIP)."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols import amp

    from switch.wire import amp_auth
    from switch.wire import protocol as wire
    from ops.demo import KEYED_PIN, KIOSK, NUMBER
    loop = asyncio.get_running_loop()
    secret = amp_auth.node_secret(data_dir / amp_auth.SECRET_FILE)
    key = amp_auth.derived_key(secret, "w-console-test")
    link = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", amp_port),
                                 amp.AMP()).asFuture(loop)
    try:
        async def call(command, **kw):
            return await link.callRemote(command, **kw).asFuture(loop)
        await amp_auth.say_hello(link.callRemote, key, worker_id="w-console-test", capacity=1,
                                 sip_port=5999, pid=os.getpid()).asFuture(loop)
        pin = await call(wire.CheckPin, kiosk=KIOSK, pin=KEYED_PIN)
        assert pin["ok"], pin
        a = await call(wire.Authorize, kiosk=KIOSK, inmate_id=pin["inmate_id"], number=NUMBER,
                       pin_session=pin["pin_session"])
        assert a["allow"], a
        g = await call(wire.Accept, call_id=a["call_id"])
        assert g["grant_until"] >= talk_seconds, g
        await call(wire.End, call_id=a["call_id"], talk_seconds=talk_seconds,
                   disposition="completed")
        return a["call_id"]
    finally:
        link.transport.loseConnection()


async def test_the_demo_call_appears_in_the_cdrs_and_moves_the_report(browser, base, live_node,
                                                                     reactor, story):
    calls, revenue = report_totals(browser, base)
    call_id = await _place_demo_call(live_node[1], live_node[2], talk_seconds=50)
    story["call_id"] = call_id
    browser.get(f"{base}/console/cdrs")
    wait_for(browser, "#number").send_keys(MOTHER)
    submit(browser, "#search", "#cdrs")
    link = css(browser, f'#cdrs a[href$="{call_id}"]')
    shoot(browser, "cdr-search")
    assert link, f"call {call_id} not listed"
    click_and_wait(browser, link[0], "#spans")
    facts = css(browser, "#cdr-facts")[0].text
    shoot(browser, "cdr-page")
    assert MOTHER in facts and "completed" in facts
    assert css(browser, "#spans tbody tr") and css(browser, "#transfers tbody tr")
    # The demo facility records; the scripted worker wrote no file, so no link is offered.
    assert css(browser, "#recording")[0].text
    after_calls, after_revenue = report_totals(browser, base)
    shoot(browser, "report-after-call")
    assert after_calls == calls + 1
    assert after_revenue > revenue                          # 50 s of a local call


async def test_an_operator_refunds_part_of_an_account(browser, base, demo_dsn, story):
    browser.get(f"{base}/console/accounts?account={MOTHER.replace('+', '%2B')}")
    wait_for(browser, "#posted")
    posted = Decimal(css(browser, "#posted")[0].text.split()[0])
    css(browser, "#refund_amount")[0].send_keys("1.25")
    submit(browser, "#refund", "#posted")
    shoot(browser, "refund")
    assert "Refunded 1.25" in css(browser, ".notice")[0].text
    assert Decimal(css(browser, "#posted")[0].text.split()[0]) == posted - Decimal("1.25")
    conn = await asyncpg.connect(demo_dsn)
    try:
        assert await conn.fetchval("SELECT amount FROM refund") == 1_250_000
        assert await conn.fetchval("SELECT count(*) FROM audit_event WHERE action LIKE "
                                   "'account.refund%' AND actor = 'ana'") >= 1
    finally:
        await conn.close()


async def test_a_large_adjustment_waits_for_a_second_operator(browser, base, demo_dsn):
    login(browser, base, "bill")
    browser.get(f"{base}/console/accounts?account=%2B19515550101")
    wait_for(browser, "#posted")
    posted = css(browser, "#posted")[0].text
    css(browser, "#adjust_amount")[0].send_keys("60.00")       # over the 50.00 threshold
    css(browser, "#reason")[0].send_keys("goodwill credit after an outage")
    submit(browser, "#adjust", "#pending")
    assert "pending" in css(browser, ".notice")[0].text
    assert css(browser, "#posted")[0].text == posted           # nothing moved yet
    # The requester is offered no decision on their own adjustment.
    assert not css(browser, '#pending button[value="approve"]')
    login(browser, base, "ana")
    browser.get(f"{base}/console/accounts?account=%2B19515550101")
    wait_for(browser, "#pending")
    submit(browser, '#pending button[value="approve"]', "#account")
    shoot(browser, "adjustment-approved")
    assert "applied" in css(browser, ".notice")[0].text
    conn = await asyncpg.connect(demo_dsn)
    try:
        row = await conn.fetchrow("SELECT state, requested_by, decided_by FROM adjustment "
                                  "WHERE reason LIKE 'goodwill%'")
    finally:
        await conn.close()
    assert tuple(row) == ("applied", "bill", "ana")


async def test_staff_approve_a_waiting_contact_in_place(browser, base, demo_dsn):
    login(browser, base, "fran")
    assert not css(browser, 'nav a[href$="/accounts"]')         # no money rights: no link
    browser.get(f"{base}/console/facilities/riverside")
    wait_for(browser, "#waiting")
    rows = [r for r in css(browser, "#waiting tbody tr") if "+19515550177" in r.text]
    assert rows, "the demo's requested contact is not listed"
    click_and_wait(browser, rows[0].find_element("css selector", 'button[value="approved"]'),
                   "#waiting")
    shoot(browser, "contact-approved")
    assert "approved" in css(browser, ".notice")[0].text
    assert not [r for r in css(browser, "#waiting tbody tr") if "+19515550177" in r.text]
    r = requests.get(f"{base}/console/accounts?account=%2B19515550101", timeout=10,
                     cookies=_session_cookies(browser), allow_redirects=False)
    assert r.status_code == 403


async def test_the_cdr_export_is_the_apis_csv(browser, base, story):
    login(browser, base, "ana")
    browser.get(f"{base}/console/cdrs?number=%2B19515550101")
    href = wait_for(browser, "#export").get_attribute("href")
    r = requests.get(href, cookies=_session_cookies(browser), timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert story["call_id"] in r.text and r.text.splitlines()[0].startswith("call_id")


# -- hostile ----------------------------------------------------------------------------------


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(browser, base,
                                                                          demo_dsn):
    conn = await asyncpg.connect(demo_dsn)
    try:
        audit_before = await conn.fetchval("SELECT count(*) FROM audit_event")
        adjustments = await conn.fetchval("SELECT count(*) FROM adjustment")
        cookies = _session_cookies(browser)
        assert "ics_console" in cookies                     # logged in as ana
        url = f"{base}/console/accounts/{MOTHER}/adjust"
        form = {"amount": "5.00", "reason": "forged", "ref": "forged-1"}
        for bad in ({}, {"csrf": ""}, {"csrf": "x" * 43}):
            r = requests.post(url, data={**form, **bad}, cookies=cookies, timeout=10,
                              allow_redirects=False)
            assert r.status_code == 403, r.status_code
            assert "nothing was changed" in r.text
        # The same form with the session's token goes through, so the refusal was the token's.
        browser.get(f"{base}/console/accounts?account=%2B19515550101")
        token = css(browser, '#adjust-form input[name="csrf"]')[0].get_attribute("value")
        assert await conn.fetchval("SELECT count(*) FROM adjustment") == adjustments
        assert await conn.fetchval("SELECT count(*) FROM audit_event") == audit_before
        r = requests.post(url, data={**form, "csrf": token}, cookies=cookies, timeout=10)
        assert r.status_code == 200
        assert await conn.fetchval("SELECT count(*) FROM adjustment") == adjustments + 1
    finally:
        await conn.close()


async def test_every_page_forbids_framing_and_script(browser, base):
    r = requests.get(f"{base}/console/login", timeout=10)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and r.headers["X-Frame-Options"] == "DENY"
    r = requests.get(f"{base}/console/accounts", cookies=_session_cookies(browser), timeout=10)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"


async def test_an_auditor_sees_no_refund_control_and_the_api_says_403(browser, base, live_node,
                                                                    demo_dsn):
    login(browser, base, "audrey")
    browser.get(f"{base}/console/accounts?account=%2B19515550101")
    wait_for(browser, "#posted")
    shoot(browser, "auditor-account")
    assert not css(browser, "#refund-form") and not css(browser, "#adjust-form")
    # The console's own POST is refused as the API refuses it, even with a good CSRF token.
    cookies = _session_cookies(browser)
    browser.get(f"{base}/console/tariffs")
    token = css(browser, 'form.logout input[name="csrf"]')[0].get_attribute("value")
    r = requests.post(f"{base}/console/accounts/{MOTHER}/refund", cookies=cookies, timeout=10,
                      data={"csrf": token, "funding_ref": "demo-deposit-1", "amount": "1.00"})
    assert r.status_code == 403
    from web.operators import issue_token
    conn = await asyncpg.connect(demo_dsn)
    try:
        tok = (await issue_token(conn, "audrey", actor="cli:test", via="cli")).token
        refunds = await conn.fetchval("SELECT count(*) FROM refund")
    finally:
        await conn.close()
    r = requests.post(f"{base}/api/v1/accounts/{MOTHER}/refunds", timeout=10,
                      headers={"Authorization": f"Bearer {tok}"},
                      json={"funding_ref": "demo-deposit-1", "amount": "1.00"})
    assert r.status_code == 403, r.text
    conn = await asyncpg.connect(demo_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM refund") == refunds
    finally:
        await conn.close()


XSS = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'


async def test_markup_in_a_csv_cell_and_an_inmate_name_is_shown_as_text(browser, base, demo_dsn):
    login(browser, base, "ana")
    conn = await asyncpg.connect(demo_dsn)
    try:
        await conn.execute("UPDATE inmate SET name = $1 WHERE id = '10002'", XSS)
    finally:
        await conn.close()
    browser.get(f"{base}/console/facilities/riverside")
    wait_for(browser, "#inmates")
    names = [e.text for e in css(browser, "#inmates .inmate-name")]
    shoot(browser, "xss-inmate")
    assert XSS in names
    assert browser.title != "pwned" and not css(browser, "main script, main img")
    browser.get(f"{base}/console/tariffs?facility=riverside")
    wait_for(browser, "#csv")
    paste_deck(browser, DEMO_DECK.replace("0.06,60,60", XSS.replace(",", ";") + ",60,60", 1))
    submit(browser, "#check", "#deck-errors")
    shoot(browser, "xss-deck")
    assert any("<script>" in e.text for e in css(browser, "#deck-errors td"))
    assert browser.title != "pwned" and not css(browser, "main script, main img")
