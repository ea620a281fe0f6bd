"""schemathesis against the document the node serves, authenticated as an admin: on every
operation, generated valid and invalid requests never get a 5xx, and every response (status,
media type, body) matches what the document declares.

Bounded in time: the examples and coverage phases reach every operation whatever the budget, and
the fuzzing phase draws EXAMPLES_PER_OPERATION cases per operation (25 took 168-339 s on a loaded
machine; ICS_SCHEMATHESIS_EXAMPLES raises it for a deeper run by hand). Each run is cut at
RUN_SECONDS_MAX with its output, inside the test's own timeout, so a slow machine fails this test
with a reason instead of hanging the suite; the JUnit report proves every operation was run."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.web.cdr_rows import insert_cdrs

EXAMPLES_PER_OPERATION = int(os.environ.get("ICS_SCHEMATHESIS_EXAMPLES", "10"))
RUN_SECONDS_MAX = 200
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection")


def schemathesis(api, tmp_path, *selection: str) -> subprocess.CompletedProcess:
    st = Path(sys.executable).with_name("schemathesis")
    try:
        return _run(st, api, tmp_path, *selection)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-6000:]
        raise AssertionError(f"schemathesis ran over {RUN_SECONDS_MAX}s (machine overloaded?):\n"
                             + (out.decode(errors="replace") if isinstance(out, bytes) else out)
                             ) from None


def _run(st, api, tmp_path, *selection: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(st), "run", api.base + "/openapi.json", "-H", f"Authorization: Bearer {api.token}",
         *selection, "--checks", CHECKS, "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1",
         "--phases", "examples,coverage,fuzzing", "-w", "1", "--no-color",
         "--generation-database", "none", "--generation-with-security-parameters", "false", "--report", "junit",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=RUN_SECONDS_MAX, cwd=tmp_path)


def _operations_run(report_dir: Path) -> set[str]:
    """The operations ("GET /api/v1/accounts") the JUnit report has test cases for."""
    names = set()
    for report in report_dir.glob("**/*.xml"):
        for case in ET.parse(report).getroot().iter("testcase"):
            names.add(case.get("name", ""))
    return names


@pytest.mark.timeout(2 * RUN_SECONDS_MAX + 60)
async def test_schemathesis_finds_no_5xx_and_no_response_off_the_document(admin, db, tmp_path):
    await insert_cdrs(db, 30)
    # The account the document's examples name, so generated requests reach the money code.
    admin.post("/accounts", json={"number": "+12125550111", "owner": "Schema"})
    admin.post("/accounts/+12125550111/fund", json={"amount": "40.00", "ref": "schema-1"})
    # Revoking may hit the token the run itself uses: that operation runs last, on its own.
    # The family API's own operations answer to a holder's session, not to this token:
    # tests/web/test_family_api.py runs schemathesis over them as a logged-in holder.
    first, second = tmp_path / "all", tmp_path / "revoke"
    first.mkdir(), second.mkdir()
    r = schemathesis(admin, first, "--exclude-operation-id", "revoke_tokens",
                     "--exclude-path-regex", "^/api/v1/family/")
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
    assert "Authentication failed" not in r.stdout, r.stdout[-6000:]
    r = schemathesis(admin, second, "--include-operation-id", "revoke_tokens")
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
    # Fewer fuzzed examples, the same reach: every operation of the document was run.
    document = admin.get("/openapi.json").json()
    prefix = next((s["url"] for s in document.get("servers", [])), "")
    expected = {f"{method.upper()} {prefix}{path}" for path, item in document["paths"].items()
                for method in item if method in ("get", "post", "put", "patch", "delete")
                and not (prefix + path).startswith("/api/v1/family/")}
    run = _operations_run(first) | _operations_run(second)
    missing = sorted(e for e in expected if not any(e in name for name in run))
    assert not missing, f"operations schemathesis did not run: {missing}; report names: " \
                        f"{sorted(run)[:10]}"
