"""Live calls on the console's facility page: terminate reaches the call's worker over AMP (the
worker's real link, as in test_live_calls), and a role without calls.write sees no button and is
refused. Over HTTP with a console session (no browser)."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import requests

from tests.web.cdr_rows import ensure_facilities
from tests.web.test_live_calls import WAIT_SECONDS_MAX, _open_call, worker  # noqa: F401
from web.console import passwords
from web.operators import add_operator

PASSWORD = "live calls password"


@pytest.fixture(scope="module")
def site(node_url):
    return node_url.removesuffix("/api/v1")


async def _session(site, db, operator: str, role: str, facilities=()) -> tuple[dict, str]:
    await add_operator(db, operator, role, list(facilities), actor="cli:test", via="cli")
    await passwords.set_password(db, operator, PASSWORD, actor="cli:test", via="cli",
                                 now=dt.datetime.now(dt.timezone.utc))
    r = await asyncio.to_thread(requests.post, f"{site}/console/login", timeout=30,
                                data={"operator": operator, "password": PASSWORD},
                                allow_redirects=False)
    assert r.status_code == 303, r.text
    cookies = {"ics_console": r.cookies["ics_console"]}
    home = requests.get(f"{site}/console/", cookies=cookies, timeout=30).text
    return cookies, home.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_staff_terminate_a_live_call_from_the_facility_page(site, db, worker):  # noqa: F811
    await ensure_facilities(db)
    link, calls, got, arrived = worker
    cid = await _open_call(db, "w-api-test", facility="north")
    calls.append(str(cid))
    cookies, csrf = await _session(site, db, "nora", "facility_staff", ["north"])
    page = await asyncio.to_thread(requests.get, f"{site}/console/facilities/north",
                                   cookies=cookies, timeout=30)
    assert page.status_code == 200 and str(cid) in page.text
    assert f"/console/calls/{cid}/terminate" in page.text
    r = await asyncio.to_thread(requests.post, f"{site}/console/calls/{cid}/terminate",
                                data={"csrf": csrf, "facility": "north"}, cookies=cookies,
                                timeout=30)
    assert r.status_code == 200 and "being ended" in r.text
    await asyncio.wait_for(arrived.wait(), WAIT_SECONDS_MAX)
    assert got == [(str(cid), "operator")]
    e = await db.fetchrow("SELECT actor, via FROM audit_event WHERE action = 'call.terminate'")
    assert tuple(e) == ("nora", "http")


async def test_an_auditor_sees_the_call_but_no_terminate_and_is_refused(site, db,
                                                                      worker):  # noqa: F811
    await ensure_facilities(db)
    link, calls, got, arrived = worker
    cid = await _open_call(db, "w-api-test", facility="north")
    calls.append(str(cid))
    cookies, csrf = await _session(site, db, "otto", "auditor")
    page = await asyncio.to_thread(requests.get, f"{site}/console/facilities/north",
                                   cookies=cookies, timeout=30)
    assert page.status_code == 200 and str(cid) in page.text
    assert "/terminate" not in page.text
    r = await asyncio.to_thread(requests.post, f"{site}/console/calls/{cid}/terminate",
                                data={"csrf": csrf, "facility": "north"}, cookies=cookies,
                                timeout=30)
    assert r.status_code == 403
    assert got == [] and not await db.fetchval(
        "SELECT true FROM audit_event WHERE action = 'call.terminate' AND actor = 'otto'")
