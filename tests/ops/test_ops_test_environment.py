"""Tests never touch a developer's database: with ICS_DATABASE_URL, ICS_CONFIG and ICS_DATA_DIR
exported, tests/conftest.py removes them before any test, so neither an in-process config load
nor an `ics` subprocess sees them (env_probe.py runs in a child pytest with them set)."""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_exported_ics_variables_never_reach_a_test_or_its_subprocesses(tmp_path):
    env = dict(os.environ, ICS_DATABASE_URL="postgresql://developer@prod-db/ledger",
               ICS_CONFIG=str(tmp_path / "developer.toml"), ICS_DATA_DIR=str(tmp_path / "dev"))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "no:randomly", str(HERE / "env_probe.py")],
                       cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
