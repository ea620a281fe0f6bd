"""config/ics.service: systemd accepts it, and its stop timeout outlasts `ics serve`'s own bound."""
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.commands.serve import stop_bound
from ops.config import load

UNIT = Path(__file__).resolve().parents[2] / "config" / "ics.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_waits_longer_than_ics_serve_takes_to_stop():
    service = unit()["Service"]
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > stop_bound(load(environ={}))


def test_the_service_runs_ics_serve_as_its_own_user_and_does_not_restart_what_a_person_must_fix():
    from ops.cli import ExitCode
    service = unit()["Service"]
    assert service["ExecStart"].endswith("/ics serve")
    assert service["User"] == "ics" and service["NoNewPrivileges"] == "yes"
    assert service["Restart"] == "on-failure"
    assert {int(c) for c in service["RestartPreventExitStatus"].split()} == {
        ExitCode.USAGE, ExitCode.CONFIG, ExitCode.DATABASE_NOT_MIGRATED}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # verify checks that ExecStart exists: point it at this checkout's `ics`.
    ics = Path(sys.executable).with_name("ics")
    assert ics.exists(), ics
    text = UNIT.read_text().replace("/opt/ics/.venv/bin/ics", str(ics))
    copy = tmp_path / "ics.service"
    copy.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True,
                       text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value ("..., ignoring"): any line about the
    # unit is a problem.
    problems = [line for line in (r.stdout + r.stderr).splitlines() if str(copy) in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
