"""schemathesis against the document the node serves, authenticated as an admin: on every
operation, generated valid and invalid requests never get a 5xx, and every response (status,
media type, body) matches what the document declares."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.web.cdr_rows import insert_cdrs

EXAMPLES_PER_OPERATION = int(os.environ.get("ICS_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection")


def schemathesis(api, tmp_path, *selection: str) -> subprocess.CompletedProcess:
    st = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [str(st), "run", api.base + "/openapi.json", "-H", f"Authorization: Bearer {api.token}",
         *selection, "--checks", CHECKS, "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", "1",
         "--phases", "examples,coverage,fuzzing", "-w", "1", "--no-color",
         "--generation-database", "none", "--generation-with-security-parameters", "false", "--report", "junit",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)


async def test_schemathesis_finds_no_5xx_and_no_response_off_the_document(admin, db, tmp_path):
    await insert_cdrs(db, 30)
    # The account the document's examples name, so generated requests reach the money code.
    admin.post("/accounts", json={"number": "+12125550111", "owner": "Schema"})
    admin.post("/accounts/+12125550111/fund", json={"amount": "40.00", "ref": "schema-1"})
    # Revoking may hit the token the run itself uses: that operation runs last, on its own.
    # The family API's own operations answer to a holder's session, not to this token:
    # tests/web/test_family_api.py runs schemathesis over them as a logged-in holder.
    r = schemathesis(admin, tmp_path, "--exclude-operation-id", "revoke_tokens",
                     "--exclude-path-regex", "^/api/v1/family/")
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
    assert "Authentication failed" not in r.stdout, r.stdout[-6000:]
    r = schemathesis(admin, tmp_path, "--include-operation-id", "revoke_tokens")
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
