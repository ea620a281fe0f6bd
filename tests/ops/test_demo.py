import os
import subprocess
import sys
from pathlib import Path


def run_ics(*args, data_dir: Path, env_db: str | None = None):
    env = dict(os.environ, ICS_DATA_DIR=str(data_dir))
    env.pop("ICS_CONFIG", None)
    if env_db:
        env["ICS_DATABASE_URL"] = env_db
    else:
        env.pop("ICS_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, capture_output=True,
                          text=True, timeout=240)


def test_demo_runs_a_call_end_to_end_on_the_embedded_database_twice(tmp_path):
    try:
        for _ in range(2):
            r = run_ics("demo", data_dir=tmp_path)
            assert r.returncode == 0, r.stdout + r.stderr
            out = r.stdout
            assert "called party presses 1" in out and "disposition      completed" in out
            assert "billed_seconds   78" in out          # 75 s at 60 s then 6 s increments
            assert "ledger verify: ok" in out
        assert "stopped" in run_ics("db", "stop", data_dir=tmp_path).stdout
    finally:
        run_ics("db", "stop", data_dir=tmp_path)
