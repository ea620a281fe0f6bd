"""A live node with the demo data and operators with console passwords, shared by every browser
test module (session-scoped: one node start for the console's and the portal's tests, which only
assert changes relative to what they find), and one headless Chromium (Debian's `chromium`,
driven through `chromium-driver` by Selenium) per module.

Screenshots go to ``artifacts/browser/`` at the repository root (ignored by git); the list is
printed at the end of the session.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import asyncpg
import pytest

from tests.web.conftest import NODE_START_SECONDS_MAX, _wait_for_port, _with_database
from tests.web.conftest import reactor  # noqa: F401  (the running reactor, for AMP)

TEMPLATE_DB = "ics_t_template"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
from tests.browser.console_rig import PASSWORDS, SHOTS


@pytest.fixture(scope="session")
async def demo_dsn(pg_template):
    name = f"ics_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_template)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    dsn = _with_database(pg_template, name)
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
    admin = await asyncpg.connect(pg_template)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def live_node(demo_dsn, tmp_path_factory):
    """(base URL, AMP port, data dir) of `ics serve --workers 0` on the demo database."""
    root = tmp_path_factory.mktemp("console-node")
    config = root / "ics.toml"
    config.write_text(f'[database]\nurl = "{demo_dsn}"\n[node]\ndata_dir = "{root}"\n'
                      '[core]\nhttp_port = 0\n[switch]\ncore_amp_port = 0\n'
                      '[api]\nadjustment_approval_micros = 50000000\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "--config", str(config), "serve",
                             "--workers", "0"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        port, amp_port, _ = _wait_for_port(proc, time.monotonic() + NODE_START_SECONDS_MAX)
        threading.Thread(target=lambda: [None for _ in iter(
            lambda: proc.stderr.read(65536), b"")], daemon=True).start()
        yield f"http://127.0.0.1:{port}", amp_port, root
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
