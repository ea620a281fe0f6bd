"""A live node with the demo data and operators with console passwords, shared by every browser
test module (session-scoped: one node start for the console's and the portal's tests, which only
assert changes relative to what they find), and one headless Chromium (Debian's `chromium`,
driven through `chromium-driver` by Selenium) per module.

Screenshots go to ``artifacts/browser/`` at the repository root (ignored by git); the list is
printed at the end of the session.
"""
from __future__ import annotations

import datetime as dt
import shutil

import asyncpg
import pytest

from tests.live_node import node_config, serve
from tests.web.conftest import reactor  # noqa: F401  (the running reactor, for AMP)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
from tests.browser.console_rig import PASSWORDS, SHOTS


@pytest.fixture(scope="session")
async def demo_dsn(databases):
    dsn = await databases.take()
    conn = await asyncpg.connect(dsn)
    try:
        from ops.config import load
        from ops.demo import load_demo_data
        from web.console.passwords import set_password
        from web.operators import add_operator
        cfg = load(overrides={"database": {"url": dsn}}, environ={})
        await load_demo_data(conn, cfg, out=lambda *a: None)
        now = dt.datetime.now(dt.timezone.utc)
        for op, role, fac in (("ana", "admin", []), ("bill", "billing", []),
                              ("audrey", "auditor", []), ("fran", "facility_staff",
                                                          ["riverside"])):
            await add_operator(conn, op, role, fac, actor="cli:test", via="cli")
            await set_password(conn, op, PASSWORDS[op], actor="cli:test", via="cli", now=now)
    finally:
        await conn.close()
    yield dsn
    await databases.give_back(dsn)


@pytest.fixture(scope="session")
def live_node(demo_dsn, tmp_path_factory):
    """(base URL, AMP port, data dir) of `ics serve --workers 0` on the demo database."""
    root = tmp_path_factory.mktemp("console-node")
    config = node_config(root, demo_dsn, '[api]\nadjustment_approval_micros = 50000000\n')
    with serve(config, root, workers=0) as live:
        yield live.url, live.amp_port, root


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-US", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def pytest_terminal_summary(terminalreporter):
    if SHOTS:
        terminalreporter.write_line(f"browser screenshots ({len(SHOTS)}):")
        for p in SHOTS:
            terminalreporter.write_line(f"  {p}")
