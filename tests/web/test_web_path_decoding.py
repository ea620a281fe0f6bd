"""Hostile request paths against a live node, sent byte for byte (http.client does not normalize
them): every API path with an id, each id replaced by an encoded slash or backslash, a dot
segment, NUL, CR LF, bytes that are not UTF-8, or a double-encoded form of those.

Twisted percent-decodes each path segment once; the API must not decode it again (which turned
"%252F" into "/" and let "%252B1212..." name the account "+1212..."). A segment that decodes to
a slash, a control character or a dot segment is refused as not found, naming the segment; a
double-encoded one is taken as the literal text it is. Nothing answers 2xx or 5xx, and nothing
changes."""
from __future__ import annotations

import http.client
import json
import re
from urllib.parse import urlsplit

import pytest

import ledger
from web.endpoints import REGISTRY

NUMBER = "+12125550188"

# Each decodes (once, by Twisted) to something no id may hold.
DECODES_TO_UNSAFE = {
    "encoded slash": "a%2Fb",
    "encoded slash, whole segment": "%2F",
    "encoded backslash": "a%5Cb",
    "dot-dot": "..",
    "encoded dot-dot": "%2E%2E",
    "dot": ".",
    "NUL": "10001%00",
    "CR LF": "10001%0D%0AX-Injected:%201",
    "traversal": "..%2F..%2F..%2Fetc%2Fpasswd",
}
# Each decodes once to harmless literal text ("%2F", "%00"): it must stay that text.
DOUBLE_ENCODED = {
    "double-encoded slash": "a%252Fb",
    "double-encoded traversal": "..%252F..%252Fetc",
    "double-encoded NUL": "10001%2500",
    "double-encoded backslash": "a%255Cb",
}
NOT_UTF8 = "%FF%FE"

# A plausible value for each path parameter that is not the one under attack.
PLAUSIBLE = {"account": NUMBER, "adjustment": "00000000-0000-0000-0000-000000000001",
             "call": "00000000-0000-0000-0000-000000000002", "facility": "riverside",
             "inmate": "10001", "number": "+12125550111", "operator": "root",
             "request": "00000000-0000-0000-0000-000000000003",
             "payment": "00000000-0000-0000-0000-000000000004"}
_PARAM = re.compile(r"\{([a-z_]+)\}")


def _paths_with_ids():
    """(method, path template, parameter) for every parameter of every operation."""
    out = []
    for op in REGISTRY.operations:
        for name in _PARAM.findall(op.path):
            out.append((op.method, op.path, name))
    return sorted(out)


def _fill(template: str, attacked: str, value: str) -> str:
    return _PARAM.sub(lambda m: value if m.group(1) == attacked
                      else PLAUSIBLE.get(m.group(1), "x"), template)


class Raw:
    """One keep-alive connection sending request paths exactly as given."""

    def __init__(self, base: str, token: str) -> None:
        parts = urlsplit(base)
        self.prefix, self.token = parts.path, token
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def send(self, method: str, path: str) -> tuple[int, str, dict]:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, self.prefix + path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        ctype = r.getheader("content-type") or ""
        return r.status, ctype, json.loads(data) if data and "json" in ctype else {}

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
async def raw(node_url, admin):
    r = Raw(node_url, admin.token)
    yield r
    r.close()


@pytest.fixture(scope="module")
async def funded(admin, db):
    r = admin.post("/accounts", json={"number": NUMBER, "owner": "Path Probe"})
    assert r.status_code == 201, r.text
    r = admin.post(f"/accounts/{NUMBER}/fund", json={"amount": "10.00", "ref": "path-probe-1"})
    assert r.status_code == 200, r.text


async def _counts(db) -> tuple[int, int, int]:
    return (await db.fetchval("SELECT count(*) FROM audit_event"),
            await db.fetchval("SELECT count(*) FROM ledger_transfer"),
            await db.fetchval("SELECT count(*) FROM operator_token"))


def test_every_path_with_an_id_is_probed():
    probed = {(m, p) for m, p, _ in _paths_with_ids()}
    assert len(probed) >= 20, probed          # the registry has its operations when imported
    assert all(set(_PARAM.findall(p)) <= set(PLAUSIBLE) for _, p in probed), probed


async def test_a_segment_that_decodes_to_a_slash_nul_or_dots_is_not_found(raw, funded, db):
    before = await _counts(db)
    for method, template, param in _paths_with_ids():
        for what, segment in DECODES_TO_UNSAFE.items():
            path = _fill(template, param, segment)
            status, ctype, problem = raw.send(method, path)
            assert status == 404, (what, method, path, status, problem)
            assert ctype.startswith("application/problem+json"), (what, path, ctype)
            assert "path segment" in problem["detail"], (what, path, problem)
    assert await _counts(db) == before


async def test_a_double_encoded_segment_stays_literal_text(raw, funded, db):
    before = await _counts(db)
    for method, template, param in _paths_with_ids():
        for what, segment in DOUBLE_ENCODED.items():
            path = _fill(template, param, segment)
            status, ctype, problem = raw.send(method, path)
            # Decoded twice it would be a slash or NUL and refused as such; once, it is text
            # that the operation's own validation or lookup refuses.
            assert 400 <= status < 500, (what, method, path, status, problem)
            assert ctype.startswith("application/problem+json"), (what, path, ctype)
            assert "path segment" not in problem.get("detail", ""), (what, path, problem)
    assert await _counts(db) == before


async def test_an_account_answers_to_its_name_encoded_once_and_never_twice(raw, funded, db):
    status, _, body = raw.send("GET", f"/accounts/%2B{NUMBER[1:]}")
    assert status == 200 and body["id"] == f"prepaid:{NUMBER}", body
    status, _, problem = raw.send("GET", f"/accounts/%252B{NUMBER[1:]}")
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "account", problem
    # A double-encoded id never moves money either.
    before = await _counts(db)
    status, _, problem = raw.send("POST", f"/accounts/%252B{NUMBER[1:]}/fund")
    assert status == 422, problem
    assert await _counts(db) == before
    report = await ledger.verify(db)
    assert report.ok, report.violations


async def test_a_segment_that_is_not_utf8_is_not_found(raw, funded):
    for method, template, param in _paths_with_ids():
        path = _fill(template, param, NOT_UTF8)
        status, ctype, problem = raw.send(method, path)
        assert status == 404, (method, path, status, problem)
        assert "UTF-8" in problem["detail"], (path, problem)


async def test_without_a_token_a_hostile_path_is_refused_before_it_is_read(node_url):
    raw = Raw(node_url, "not-a-token")
    try:
        for segment in (*DECODES_TO_UNSAFE.values(), *DOUBLE_ENCODED.values()):
            status, _, _ = raw.send("GET", f"/accounts/{segment}")
            assert status == 401, segment
    finally:
        raw.close()
