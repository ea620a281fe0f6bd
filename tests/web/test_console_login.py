"""Console login and the page layer's refusals, over HTTP against a live node (no browser):
throttling, session rotation and logout, CSRF on every POST, form limits, redirects that never
leave the console, and passwords set by `ics operator passwd` from standard input."""
from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys

import pytest
import requests

from web import sessions
from web.console import passwords
from web.operators import add_operator

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def site(node_url):
    return node_url.removesuffix("/api/v1")


@pytest.fixture(scope="module")
async def operators(db):
    now = dt.datetime.now(dt.timezone.utc)
    for op, role in (("lena", "billing"), ("tess", "billing"), ("rita", "auditor"),
                     ("cli-op", "auditor")):
        await add_operator(db, op, role, [], actor="cli:test", via="cli")
        if op != "cli-op":
            await passwords.set_password(db, op, PASSWORD, actor="cli:test", via="cli", now=now)


def _login(site, operator, password, *, cookies=None, source_hint="", next_=None):
    data = {"operator": operator, "password": password}
    if next_ is not None:
        data["next"] = next_
    return requests.post(f"{site}/console/login", data=data, cookies=cookies or {},
                         allow_redirects=False, timeout=30)


def _cookie(r) -> str:
    return r.cookies["ics_console"]


def _csrf(site, token) -> str:
    html = requests.get(f"{site}/console/", cookies={"ics_console": token}, timeout=30).text
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_a_right_password_opens_a_session_with_a_strict_httponly_cookie(site, operators):
    r = await asyncio.to_thread(_login, site, "lena", PASSWORD)
    assert r.status_code == 303 and r.headers["Location"] == "/console/"
    set_cookie = r.headers["Set-Cookie"]
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attr in set_cookie
    assert "Secure" not in set_cookie            # plain HTTP on 127.0.0.1
    home = requests.get(f"{site}/console/", cookies={"ics_console": _cookie(r)}, timeout=30)
    assert home.status_code == 200 and "lena" in home.text
    assert home.headers["Cache-Control"] == "no-store"


async def test_pages_without_a_session_send_to_the_login_page(site):
    r = requests.get(f"{site}/console/accounts?account=x", allow_redirects=False, timeout=30)
    assert r.status_code == 303
    assert r.headers["Location"].startswith("/console/login?next=/console/accounts")
    r = requests.get(f"{site}/console/accounts", cookies={"ics_console": "forged"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 303


async def test_five_failures_throttle_the_operator_even_with_the_right_password(site, operators,
                                                                              db):
    for _ in range(passwords.FAILURES_PER_OPERATOR_MAX):
        r = await asyncio.to_thread(_login, site, "tess", "wrong password!!")
        assert r.status_code == 401 and "wrong" in r.text
    r = await asyncio.to_thread(_login, site, "tess", PASSWORD)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "ics_console" not in r.cookies
    assert await db.fetchval("SELECT count(*) FROM web_session WHERE subject = 'tess'") == 0
    # Another operator from the same address is not locked out by tess's failures.
    r = await asyncio.to_thread(_login, site, "rita", PASSWORD)
    assert r.status_code == 303


async def test_an_unknown_operator_is_refused_like_a_wrong_password(site):
    r = await asyncio.to_thread(_login, site, "nobody", PASSWORD)
    assert r.status_code == 401 and "wrong" in r.text


async def test_login_rotates_a_planted_session_and_logout_ends_it(site, operators, db):
    planted = await sessions.open_session(db, sessions.Kind.OPERATOR, "rita",
                                          policy=sessions.SessionPolicy(),
                                          now=dt.datetime.now(dt.timezone.utc))
    r = await asyncio.to_thread(_login, site, "lena", PASSWORD,
                                cookies={"ics_console": planted.token})
    assert r.status_code == 303
    fresh = _cookie(r)
    assert fresh != planted.token
    assert await db.fetchval("SELECT revoked_at IS NOT NULL FROM web_session WHERE id = $1",
                             planted.session.id)
    # Logout needs the CSRF token too; without it the session lives on.
    r = requests.post(f"{site}/console/logout", cookies={"ics_console": fresh}, timeout=30,
                      allow_redirects=False)
    assert r.status_code == 403
    token = await asyncio.to_thread(_csrf, site, fresh)
    r = requests.post(f"{site}/console/logout", data={"csrf": token}, timeout=30,
                      cookies={"ics_console": fresh}, allow_redirects=False)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["Set-Cookie"]
    r = requests.get(f"{site}/console/", cookies={"ics_console": fresh}, allow_redirects=False,
                     timeout=30)
    assert r.status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console/",
                                    "/console/..\\evil", "javascript:alert(1)"])
async def test_after_login_the_redirect_never_leaves_the_console(site, operators, target):
    r = await asyncio.to_thread(_login, site, "rita", PASSWORD, next_=target)
    assert r.status_code == 303 and r.headers["Location"] == "/console/"


async def test_oversized_and_malformed_forms_change_nothing(site, operators, db):
    r = await asyncio.to_thread(_login, site, "lena", PASSWORD)
    cookie = {"ics_console": _cookie(r)}
    csrf = await asyncio.to_thread(_csrf, site, cookie["ics_console"])
    before = await db.fetchval("SELECT count(*) FROM audit_event")
    url = f"{site}/console/accounts/+19515550101/adjust"
    cases = [
        ({f"f{i}": "x" for i in range(100)}, 413),                    # too many fields
        ({"amount": "1", "reason": "r" * 5000, "ref": "a"}, 413),     # a field too long
        ({"amount": "1", "reason": "nul\x00here", "ref": "a"}, 400),  # a control character
    ]
    for form, status in cases:
        r = requests.post(url, data={**form, "csrf": csrf}, cookies=cookie, timeout=30)
        assert r.status_code == status, (status, r.text[:200])
        assert "nothing was changed" in r.text.lower()
    r = requests.post(url, data={"csrf": csrf, "reason": "z" * 2_000_000}, cookies=cookie,
                      timeout=30)
    assert r.status_code == 413
    assert await db.fetchval("SELECT count(*) FROM audit_event") == before


async def test_the_pages_speak_spanish_when_asked(site):
    r = requests.get(f"{site}/console/login", headers={"Accept-Language": "es-MX,es;q=0.9"},
                     timeout=30)
    assert "Iniciar sesión" in r.text and '<html lang="es">' in r.text
    r = requests.get(f"{site}/console/login?lang=en", headers={"Accept-Language": "es"},
                     timeout=30)
    assert "Log in" in r.text and "ics_lang=en" in r.headers.get("Set-Cookie", "")


async def test_ics_operator_passwd_reads_the_password_from_stdin(site, operators, node_data_dir):
    cmd = [sys.executable, "-m", "ops.cli", "--config", str(node_data_dir / "ics.toml"),
           "operator", "passwd", "cli-op"]
    short = await asyncio.to_thread(subprocess.run, cmd, input="short\n", capture_output=True,
                                    text=True, timeout=120)
    assert short.returncode == 2 and "at least" in short.stderr
    r = await asyncio.to_thread(_login, site, "cli-op", "short")
    assert r.status_code == 401
    ok = await asyncio.to_thread(subprocess.run, cmd, input="a long enough secret\n",
                                 capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    r = await asyncio.to_thread(_login, site, "cli-op", "a long enough secret")
    assert r.status_code == 303
