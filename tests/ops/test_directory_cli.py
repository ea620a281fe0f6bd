"""The provisioning CLI against a real database: each command does its job and refuses bad input
with a message naming what is wrong, exit code 2."""
import os
import subprocess
import sys

import pytest


def ics(dsn, *args, input=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, input=input)


async def test_a_facility_is_provisioned_from_the_command_line_and_a_family_funds_an_account(pg_dsn):
    steps = [
        ("facility", "add", "fac1", "--name", "North Jail", "--state", "NY",
         "--time-zone", "America/New_York", "--adp", "500", "--kind", "jail",
         "--profile", "fcc-2024", "--exchange", "212-555"),
        ("facility", "update", "fac1", "--max-call-minutes", "20", "--recording", "on"),
        ("schedule", "add", "fac1", "daily 07:00-23:00"),
        ("kiosk", "add", "k-1", "--facility", "fac1", "--unit", "B"),
        ("inmate", "add", "55501", "--name", "Al Roe", "--facility", "fac1", "--minutes-per-day",
         "60"),
        ("contact", "add", "55501", "212-555-0142", "--name", "Bea Roe"),
        ("contact", "approve", "55501", "+12125550142"),
        ("account", "add", "+1 212 555 0142", "--owner", "Bea Roe"),
        ("account", "fund", "+12125550142", "12.50", "--ref", "card-1"),
        ("account", "fund", "+12125550142", "12.50", "--ref", "card-1"),
        ("block", "add", "+1900", "--prefix"),
        ("route", "add", "+1", "sip:{number}@10.0.0.5:5060"),
    ]
    for step in steps:
        r = ics(pg_dsn, *step, input="9876\n")       # the PIN, on stdin (read by inmate add)
        assert r.returncode == 0, (step, r.stderr)
    r = ics(pg_dsn, "account", "show", "+12125550142")
    assert "available=12.50" in r.stdout
    assert "approved" in ics(pg_dsn, "contact", "list", "55501").stdout
    assert "already funded" in ics(pg_dsn, "account", "fund", "+12125550142", "12.50",
                                   "--ref", "card-1").stdout


@pytest.mark.parametrize("args,message", [
    (("inmate", "add", "55x", "--name", "A", "--facility", "fac1"), "3-15 digits"),
    (("contact", "add", "77777", "+12125550142"), "inmate '77777' does not exist"),
    (("account", "fund", "+12125550142", "ten", "--ref", "r"), "amount"),
    (("account", "fund", "+12125550142", "1.0000001", "--ref", "r"), "more than 6 decimals"),
    (("schedule", "add", "fac1", "mon 9-5"), "'9' is not HH:MM"),
    (("facility", "update", "nope", "--recording", "off"), "unknown facility"),
    (("route", "add", "+1", "http://trunk"), "sip: URI"),
])
async def test_bad_provisioning_input_exits_2_naming_the_problem(pg_dsn, args, message):
    r = ics(pg_dsn, *args, input="1234\n")
    assert r.returncode == 2 and message in r.stderr, r.stderr
