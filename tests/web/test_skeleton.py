"""The API's frame against a live node: the generated document, problem details naming the
field, limits, and refusals that change nothing."""
from __future__ import annotations

import json


async def test_the_openapi_document_is_served_and_generated_from_the_models(admin):
    r = admin.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    op = doc["paths"]["/api/v1/operators"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]["role"]["enum"]) == {"admin", "billing", "facility_staff",
                                                         "auditor"}
    limit = next(p for p in doc["paths"]["/api/v1/cdrs"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000


async def test_without_a_token_every_request_is_401(admin):
    for path in ("/openapi.json", "/operators", "/cdrs", "/no/such/thing"):
        r = admin.as_(None).get(path)
        assert r.status_code == 401, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = admin.as_("ics_" + "A" * 43).get("/operators")
    assert r.status_code == 401 and r.json()["detail"] == "the token is unknown or revoked"
    r = admin.get("/operators", headers={"Authorization": "Basic cm9vdDpyb290"})
    assert r.status_code == 401


async def test_unknown_paths_and_methods_are_problems(admin):
    r = admin.get("/nothing-here")
    assert r.status_code == 404 and r.json()["status"] == 404
    r = admin.request("DELETE", "/operators")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


async def test_a_bad_body_is_refused_naming_the_field_and_changes_nothing(admin, db):
    before = await db.fetchval("SELECT count(*) FROM audit_event")
    r = admin.post("/operators", json={"id": "Bad Id!", "role": "admin"})
    assert r.status_code == 422
    p = r.json()
    assert p["type"].endswith("/invalid-request") and p["title"] == "Invalid request"
    assert [(e["location"], e["field"]) for e in p["errors"]] == [("body", "id")]
    assert "'id'" in p["detail"]
    r = admin.post("/operators", json={"id": 5, "role": "admin"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id"
    r = admin.post("/operators", json={"id": "ok", "role": "janitor", "extra": 1})
    assert {e["field"] for e in r.json()["errors"]} == {"role", "extra"}
    r = admin.post("/operators", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = admin.post("/operators", data=json.dumps({"id": "x", "role": "admin"}),
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = admin.post("/operators", data=b'{"id": "x\\ud992", "role": "admin"}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON text" in r.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM operator WHERE id IN ('ok', 'x')") == 0
    assert await db.fetchval("SELECT count(*) FROM audit_event") == before


async def test_a_body_over_the_limit_is_413_and_not_kept(admin, db):
    r = admin.post("/operators", data=b"{" + b" " * 1_100_000 + b"}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "1048576" in r.json()["detail"]

    def chunks():                       # no Content-Length: counted as it arrives
        for _ in range(140):
            yield b" " * 8192
    r = admin.post("/operators", data=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


async def test_query_parameters_are_validated_by_name(admin):
    r = admin.get("/cdrs", params={"limit": "1001"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"
    r = admin.get("/cdrs", params={"colour": "red"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "colour"
    r = admin.get("/cdrs?limit=5&limit=6")
    assert r.status_code == 422 and "more than once" in r.json()["detail"]
    r = admin.get("/cdrs", params={"since": "2026-01-01T00:00:00"})
    assert r.status_code == 422 and "time zone" in r.json()["errors"][0]["message"]
