"""Run only by test_ops_test_environment.py, in a child pytest whose environment names a database
and a config file that are not the test's: nothing here may see them."""
import os
import subprocess
import sys

from ops.config import load


def test_the_developers_database_is_invisible_in_process_and_to_subprocesses(tmp_path):
    assert not [n for n in os.environ if n.startswith("ICS_") and n != "ICS_TEST_DATABASE_URL"]
    config = tmp_path / "ics.toml"
    config.write_text('[database]\nurl = "postgresql://test-host/test-db"\n')
    assert load(config).database.url == "postgresql://test-host/test-db"
    r = subprocess.run([sys.executable, "-m", "ops.cli", "--config", str(config), "db", "url"],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert r.stdout.strip() == "postgresql://test-host/test-db", r.stdout + r.stderr
