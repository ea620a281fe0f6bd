"""A kiosk's source networks over HTTP: the API reads and writes the list the switch admits
kiosks by (kiosk.sources, cidr[]), with the CLI's own rules, and refuses hostile lists whole."""
from __future__ import annotations

import ipaddress

import pytest

from switch.rules.kiosk_source import SOURCES_PER_KIOSK_MAX
from tests.web.cdr_rows import ensure_facilities
from tests.web.conftest import make_operator


@pytest.fixture(scope="module")
async def staff(admin, db):
    await ensure_facilities(db)
    return admin.as_(await make_operator(db, "src-staff", "facility_staff", ["north"]))


async def _stored(db, kiosk: str) -> list[str]:
    return [str(n) for n in await db.fetchval("SELECT sources FROM kiosk WHERE id = $1", kiosk)]


async def test_a_kiosks_networks_are_written_read_and_replaced_as_a_list(staff, db, admin):
    r = staff.post("/kiosks", json={"id": "k-src1", "facility": "north", "trusted": True,
                                    "sources": ["10.1.2.0/24", "10.9.9.9", "2001:db8:5::/48",
                                                "10.1.2.0/24"]})
    assert r.status_code == 200, r.text
    want = ["10.1.2.0/24", "10.9.9.9/32", "2001:db8:5::/48"]       # duplicates once, in order
    assert r.json()["sources"] == want
    assert await _stored(db, "k-src1") == want
    listed = {k["id"]: k for k in staff.get("/kiosks").json()["kiosks"]}
    assert listed["k-src1"]["sources"] == want and listed["k-src1"]["trusted"] is True
    # The switch's derived single address is the first network's.
    assert str(await db.fetchval("SELECT source FROM kiosk WHERE id = 'k-src1'")) \
        == "10.1.2.0/24"

    r = staff.post("/kiosks", json={"id": "k-src1", "facility": "north",
                                    "sources": ["192.0.2.8/29"]})
    assert r.json()["sources"] == ["192.0.2.8/29"] and await _stored(db, "k-src1") == [
        "192.0.2.8/29"]
    r = staff.post("/kiosks", json={"id": "k-src1", "facility": "north", "sources": []})
    assert r.json()["sources"] == [] and await _stored(db, "k-src1") == []
    (last, previous) = admin.get("/audit", params={"target": "kiosk:k-src1", "limit": 2}
                                 ).json()["events"]
    assert previous["after"]["sources"] == ["192.0.2.8/29"]
    assert last["before"]["sources"] == ["192.0.2.8/29"] and last["after"]["sources"] == []


TOO_MANY = [str(ipaddress.ip_address("10.0.0.0") + i) for i in range(SOURCES_PER_KIOSK_MAX + 1)]


@pytest.mark.parametrize("sources,field,words", [
    (["10.1.2.3/24"], "sources.0", "host bits set"),
    (["10.0.0.0/8", "300.1.1.1"], "sources.1", "not an address or CIDR network"),
    (["10.0.0.0/33"], "sources.0", "not an address or CIDR network"),
    (["fe80::1%eth0"], "sources.0", "zone"),
    (["::ffff:10.0.0.1"], "sources.0", "IPv4-mapped"),
    (["2001:db8::1/48"], "sources.0", "host bits set"),
    (["10.0.0.0/8,10.1.0.0/16"], "sources.0", "one network per entry"),
    ([""], "sources.0", "at least 1 character"),
    (["10.0.0.1" + " " * 60 + "x"], "sources.0", "at most 64 characters"),
    ([7], "sources.0", "valid string"),
    ("10.0.0.0/8", "sources", "valid array"),
    (TOO_MANY, "sources", f"at most {SOURCES_PER_KIOSK_MAX} items"),
])
async def test_a_hostile_source_list_is_refused_whole_naming_the_entry(staff, db, sources,
                                                                     field, words):
    await db.execute("INSERT INTO kiosk (id, facility_id, sources) VALUES "
                     "('k-src2', 'north', '{10.5.0.0/16}') ON CONFLICT (id) DO UPDATE "
                     "SET sources = '{10.5.0.0/16}'")
    audits = await db.fetchval("SELECT count(*) FROM audit_event")
    r = staff.post("/kiosks", json={"id": "k-src2", "facility": "north", "sources": sources})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    assert words in r.json()["errors"][0]["message"], r.json()
    assert await _stored(db, "k-src2") == ["10.5.0.0/16"]
    assert await db.fetchval("SELECT count(*) FROM audit_event") == audits


async def test_the_single_source_field_is_gone_not_ignored(staff, db):
    r = staff.post("/kiosks", json={"id": "k-src3", "facility": "north", "source": "10.0.0.1"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "source"
    assert await db.fetchval("SELECT true FROM kiosk WHERE id = 'k-src3'") is None


async def test_the_openapi_document_declares_the_list(staff):
    doc = staff.get("/openapi.json").json()
    kiosk_in = doc["components"]["schemas"]["KioskIn"]["properties"]
    assert "source" not in kiosk_in
    assert kiosk_in["sources"]["type"] == "array"
    assert kiosk_in["sources"]["maxItems"] == SOURCES_PER_KIOSK_MAX
    assert kiosk_in["sources"]["items"]["type"] == "string"
    kiosk_out = doc["components"]["schemas"]["KioskOut"]["properties"]
    assert kiosk_out["sources"]["items"]["type"] == "string" and "source" not in kiosk_out
