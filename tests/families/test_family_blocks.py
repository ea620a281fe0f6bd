"""A holder's blocks on the real core: the switch's authorization refuses a call from a blocked
facility or inmate to the holder's number, and allows it again after the unblock; an unblock never
lifts a staff block. Driven over the core's real AMP link (tests/switch/rig.py)."""
from __future__ import annotations

import uuid

import pytest

from families import contacts, numbers
from families.errors import NotFound
from switch.wire import protocol as wire
from tests.switch.rig import close_rig, make_rig

MOM = "+19515550101"      # the demo directory's approved contact of inmate 10001 at riverside


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn)
    yield r
    await close_rig(r)


async def authorize(rig):
    return await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=MOM)


async def test_a_holders_block_refuses_the_call_and_the_unblock_allows_it(rig):
    now = rig.clock()
    async with rig.pool.acquire() as conn:
        hid = uuid.uuid4()
        await conn.execute("INSERT INTO family_holder (id, email, password_hash, created_at, "
                           "last_request_at, verified_at) VALUES ($1, 'mom@example.org', "
                           "'scrypt$x', $2, $2, $2)", hid, now)
        await numbers.claim(conn, hid, MOM, now=now)
        await numbers.prove(conn, hid, MOM, by="op", now=now)
    assert (await authorize(rig))["allow"]
    for scope in ({"facility_id": "riverside"}, {"inmate_id": "10001"}):
        async with rig.pool.acquire() as conn:
            await contacts.block(conn, hid, MOM, now=now, **scope)
        a = await authorize(rig)
        assert (a["allow"], a["reason"]) == (False, "blocked")
        async with rig.pool.acquire() as conn:
            await contacts.unblock(conn, hid, MOM, now=now, **scope)
        assert (await authorize(rig))["allow"]
    async with rig.pool.acquire() as conn:          # staff's block stays whatever the holder does
        await conn.execute("INSERT INTO block (pattern, scope, facility_id, requested_by) "
                           "VALUES ($1, 'facility', 'riverside', 'staff')", MOM)
        with pytest.raises(NotFound):
            await contacts.unblock(conn, hid, MOM, facility_id="riverside", now=now)
    assert (await authorize(rig))["reason"] == "blocked"


async def test_a_number_not_proven_by_the_holder_cannot_be_blocked_by_them(rig):
    now = rig.clock()
    async with rig.pool.acquire() as conn:
        hid = uuid.uuid4()
        await conn.execute("INSERT INTO family_holder (id, email, password_hash, created_at, "
                           "last_request_at) VALUES ($1, 'x@example.org', 'scrypt$x', $2, $2)",
                           hid, now)
        from families.errors import FamilyError
        with pytest.raises(FamilyError):
            await contacts.block(conn, hid, MOM, facility_id="riverside", now=now)
        assert await conn.fetchval("SELECT count(*) FROM block") == 0
