"""The directory over HTTP against a live node: provisioning with the CLI's own rules (the same
messages), audit rows with before and after, facility scope for facility_staff, PIN unlock as
the core sees it."""
from __future__ import annotations

import asyncpg
import pytest

from switch.control.core import Core
from switch.control.tariffs import Pricing
from tests.web.cdr_rows import ensure_facilities
from tests.web.conftest import make_operator


@pytest.fixture(scope="module")
async def staff(admin, db):
    await ensure_facilities(db)
    return admin.as_(await make_operator(db, "dir-staff", "facility_staff", ["north"]))


async def test_a_facility_is_provisioned_over_http(admin, staff, db):
    assert staff.post("/kiosks", json={"id": "k-n1", "facility": "north", "unit": "B",
                                       "sources": ["10.0.0.7"]}).status_code == 200
    r = staff.post("/inmates", json={"id": "70001", "name": "Al Roe", "facility": "north",
                                     "pin": "9876", "minutes_per_day": 60})
    assert r.status_code == 201, r.text
    assert r.json()["minutes_per_day"] == 60 and r.json()["status"] == "active"
    r = staff.post("/inmates/70001/contacts", json={"number": "(212) 555-0142", "name": "Bea"})
    assert r.status_code == 201 and r.json()["number"] == "+12125550142"
    assert r.json()["status"] == "requested"
    r = staff.post("/inmates/70001/contacts/212-555-0142/status", json={"status": "approved"})
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert staff.post("/facilities/north/schedule",
                      json={"spec": "mon-fri 08:00-22:00"}).status_code == 201
    assert staff.post("/blocks", json={"pattern": "+1900", "prefix": True, "scope": "facility",
                                       "facility": "north"}).status_code == 201
    assert admin.post("/routes", json={"prefix": "+1", "trunk": "sip:{e164}@10.0.0.5:5060"}
                      ).status_code == 200
    assert [k["id"] for k in staff.get("/kiosks").json()["kiosks"]] == ["k-n1"]
    assert staff.get("/kiosks").json()["kiosks"][0]["sources"] == ["10.0.0.7/32"]
    assert staff.get("/inmates/70001/contacts").json()["contacts"][0]["status"] == "approved"
    assert staff.get("/facilities").json()["facilities"][0]["id"] == "north"
    # The switch sees what the API wrote: the contact is approved in its own table.
    assert await db.fetchval("SELECT status FROM contact WHERE inmate_id = '70001'") == "approved"
    events = admin.get("/audit", params={"target": "inmate:70001"}).json()["events"]
    assert [e["action"] for e in events] == ["contact.approved", "contact.add", "inmate.add"]
    assert events[0]["before"]["status"] == "requested"
    assert events[0]["after"]["status"] == "approved"
    assert all("pin_hash" not in (e["after"] or {}) for e in events)


@pytest.mark.parametrize("path,body,field,message", [
    ("/inmates", {"id": "55x", "name": "A", "facility": "north", "pin": "1234"}, "id", ""),
    ("/inmates", {"id": "55501", "name": "A", "facility": "north", "pin": "12"}, "pin", ""),
    ("/inmates", {"id": "55502", "name": " ", "facility": "north", "pin": "1234"}, "(whole)",
     "inmate name must not be empty"),
    ("/facilities/north/schedule", {"spec": "mon 9-5"}, "spec", "'9' is not HH:MM"),
    ("/routes", {"prefix": "+1", "trunk": "http://trunk"}, "trunk", "sip: URI"),
    ("/kiosks", {"id": "k 1", "facility": "north"}, "id", ""),
    ("/kiosks", {"id": "k2", "facility": "north", "sources": ["not-an-ip"]}, "sources.0",
     "not an address or CIDR network"),
    ("/inmates/70001/contacts", {"number": "12"}, "number", "not a"),
    ("/blocks", {"pattern": "+1900", "scope": "inmate"}, "inmate", ""),
])
async def test_bad_directory_input_is_refused_naming_the_field_and_changes_nothing(
        admin, staff, db, path, body, field, message):
    before = await db.fetchval("SELECT count(*) FROM audit_event")
    r = admin.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    assert message in r.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM audit_event") == before


async def test_facility_staff_reach_only_their_facilities(admin, staff, db):
    r = staff.post("/inmates", json={"id": "80001", "name": "Cy", "facility": "south",
                                     "pin": "1234"})
    assert r.status_code == 403
    assert admin.post("/inmates", json={"id": "80001", "name": "Cy", "facility": "south",
                                        "pin": "1234"}).status_code == 201
    assert staff.get("/inmates/80001").status_code == 403
    assert staff.post("/inmates/80001", json={"status": "suspended"}).status_code == 403
    assert staff.post("/inmates/80001/unlock").status_code == 403
    assert staff.get("/kiosks", params={"facility": "south"}).status_code == 403
    assert staff.post("/blocks", json={"pattern": "+12125550100"}).status_code == 403
    assert staff.post("/routes", json={"prefix": "+44", "trunk": "sip:{e164}@x"}
                      ).status_code == 403
    assert "80001" not in [i["id"] for i in staff.get("/inmates").json()["inmates"]]
    assert await db.fetchval("SELECT status FROM inmate WHERE id = '80001'") == "active"


async def test_an_operator_unlocks_a_locked_pin_and_the_core_accepts_it_again(admin, db,
                                                                            api_dsn):
    admin.post("/kiosks", json={"id": "k-s1", "facility": "south"})
    admin.post("/inmates", json={"id": "80002", "name": "Di", "facility": "south",
                                 "pin": "4321"})
    pool = await asyncpg.create_pool(api_dsn, min_size=1, max_size=2)
    try:
        core = Core(pool, Pricing())
        for _ in range(3):
            assert not (await core.check_pin("k-s1", "800020000")).ok
        assert (await core.check_pin("k-s1", "800024321")).locked
        r = admin.post("/inmates/80002/unlock")
        assert r.status_code == 200 and r.json()["failures_cleared"] >= 3
        assert (await core.check_pin("k-s1", "800024321")).ok
    finally:
        await pool.close()
    events = admin.get("/audit", params={"action": "inmate.unlock"}).json()["events"]
    assert events[0]["target"] == "inmate:80002" and events[0]["actor"] == "root"


async def test_an_inmate_update_changes_status_and_pin_without_auditing_the_pin(admin, db):
    admin.post("/inmates", json={"id": "80003", "name": "Ed", "facility": "south",
                                 "pin": "1111"})
    r = admin.post("/inmates/80003", json={"status": "suspended", "pin": "2222"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    e = admin.get("/audit", params={"action": "inmate.update"}).json()["events"][0]
    assert e["before"]["status"] == "active" and e["after"]["status"] == "suspended"
    assert e["after"]["pin_changed"] is True and "2222" not in str(e)
    assert admin.post("/inmates/99999", json={"status": "active"}).status_code == 404


async def test_a_recorded_name_is_uploaded_and_bad_audio_is_refused(admin, db):
    import base64
    import io

    import numpy as np

    from ivr import audio
    await ensure_facilities(db)
    admin.post("/inmates", json={"id": "80004", "name": "Flo", "facility": "south",
                                 "pin": "1111"})

    def wav(samples, rate=16_000):
        buf = io.BytesIO()
        buf.write(audio.encode_wav(audio.Clip(rate, samples)))
        return base64.b64encode(buf.getvalue()).decode()
    t = np.arange(16_000 * 2) / 16_000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    r = admin.post("/inmates/80004/name", json={"wav_base64": wav(tone)})
    assert r.status_code == 200, r.text
    assert r.json()["has_recorded_name"] is True
    stored = await db.fetchval("SELECT name_wav FROM inmate WHERE id = '80004'")
    assert audio.read_wav(stored).rate == 8000
    for body, message in (({"wav_base64": "not base64!"}, "not base64"),
                          ({"wav_base64": base64.b64encode(b"RIFFjunk").decode()}, "upload"),
                          ({"wav_base64": wav(np.zeros(8000, np.int16), 8000)}, "no speech")):
        r = admin.post("/inmates/80004/name", json=body)
        assert r.status_code == 422 and message in r.json()["detail"], r.text
        assert r.json()["errors"][0]["field"] == "wav_base64"
    assert await db.fetchval("SELECT name_wav FROM inmate WHERE id = '80004'") == stored


async def test_facilities_are_added_and_updated_with_rating_s_rules(admin, staff, db):
    body = {"id": "east", "name": "East Jail", "state": "NJ", "time_zone": "America/New_York",
            "adp": 300, "kind": "jail", "profile": "fcc-2024", "local_exchanges": ["973-555"]}
    assert staff.post("/facilities", json=body).status_code == 403
    r = admin.post("/facilities", json=body)
    assert r.status_code == 201, r.text
    assert admin.post("/facilities", json=body).status_code == 422          # the id is taken
    for change, field in (({"time_zone": "Mars/Base"}, "time_zone"),
                          ({"profile": "fcc-1999"}, "profile"),
                          ({"state": "nj"}, "state"),
                          ({"local_exchanges": ["123-456"]}, "local_exchanges")):
        r = admin.post("/facilities", json=body | {"id": "west"} | change)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    assert not await db.fetchval("SELECT true FROM facility WHERE id = 'west'")
    r = staff.post("/facilities/north", json={"max_call_seconds": 1200, "recording": False})
    assert r.status_code == 200 and r.json()["max_call_seconds"] == 1200
    assert staff.post("/facilities/east", json={"recording": False}).status_code == 403
    assert admin.post("/facilities/east", json={}).status_code == 422
    assert admin.post("/facilities/east", json={"trunk": "http://x"}).status_code == 422
    e = admin.get("/audit", params={"action": "facility.update"}).json()["events"][0]
    assert e["before"]["max_call_seconds"] == 900 and e["after"]["max_call_seconds"] == 1200
