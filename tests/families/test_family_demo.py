"""The demo's family: seeded twice without harm, logs in, owns the demo's funded number; and the
CLI shows the outbox and proves a number."""
from __future__ import annotations

import subprocess
import sys

from families import holders
from families.demo import DEMO_EMAIL, DEMO_NUMBER, DEMO_PASSWORD, seed_demo_family
from ops.seed import DEMO_DIR, load_directory


async def test_the_demo_family_is_idempotent_and_logs_in(conn, settings, clock):
    await load_directory(conn, DEMO_DIR / "directory.toml")
    a = await seed_demo_family(conn, now=clock())
    assert await seed_demo_family(conn, now=clock()) == a
    h = await holders.login(conn, DEMO_EMAIL, DEMO_PASSWORD, source="demo", now=clock(),
                            settings=settings)
    assert h.id == a
    assert await conn.fetchval("SELECT state FROM family_number WHERE e164 = $1",
                               DEMO_NUMBER) == "proven"


async def test_ics_outbox_shows_the_codes_and_ics_family_prove_proves(conn, settings, clock,
                                                                      pg_dsn, tmp_path):
    await holders.register(conn, "cli@example.org", "correct horse battery", now=clock(),
                           settings=settings)
    hid = await conn.fetchval("SELECT id FROM family_holder")
    from families import numbers
    await numbers.claim(conn, hid, "+12125550160", now=clock())
    env = {"ICS_DATABASE_URL": pg_dsn, "ICS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "ops.cli", "outbox", "--body"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cli@example.org" in out.stdout and "verify" in out.stdout
    assert "Confirm your email address" in out.stdout
    out = subprocess.run([sys.executable, "-m", "ops.cli", "family", "prove", "cli@example.org",
                          "212-555-0160"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert await conn.fetchval("SELECT state FROM family_number") == "proven"
    out = subprocess.run([sys.executable, "-m", "ops.cli", "family", "prove", "no@example.org",
                          "212-555-0160"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no account holder" in out.stderr
