"""Blocks as the core's authorization query sees them (real PostgreSQL, real AMP): an inmate's own
block refuses that inmate only; a block an operator adds with `ics block add` refuses the very next
authorization."""
import asyncio

import pytest

from ops.cli import main
from switch.wire import protocol as wire
from switch.provisioning.directory import add_block

from rig import close_rig, make_rig

MOM = "+19515550101"          # approved for both demo inmates, 10001 and 10002


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn)
    yield r
    await r.verify()
    await close_rig(r)


async def authorize(rig, number, inmate):
    return await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id=inmate, number=number)


@pytest.mark.parametrize("pattern,prefix", [(MOM, False), ("+1951555", True)])
async def test_an_inmate_scope_block_refuses_that_inmate_and_no_other(rig, pattern, prefix):
    async with rig.pool.acquire() as c:
        await add_block(c, pattern, scope="inmate", inmate_id="10001", prefix=prefix,
                        reason="no-contact order")
    blocked = await authorize(rig, MOM, "10001")
    assert (blocked["allow"], blocked.get("reason")) == (False, "blocked")
    other = await authorize(rig, MOM, "10002")
    assert other["allow"], other


async def test_an_inmate_scope_block_of_another_number_leaves_this_one_callable(rig):
    async with rig.pool.acquire() as c:
        await add_block(c, "+19515550102", scope="inmate", inmate_id="10001")
    assert (await authorize(rig, MOM, "10001"))["allow"]


@pytest.mark.parametrize("extra", [(), ("--scope", "facility", "--facility", "riverside"),
                                   ("--scope", "inmate", "--inmate", "10001")])
async def test_ics_block_add_refuses_the_next_authorization(rig, pg_dsn, monkeypatch, capsys,
                                                             extra):
    assert (await authorize(rig, MOM, "10001"))["allow"]          # callable before the block
    monkeypatch.setenv("ICS_DATABASE_URL", pg_dsn)
    code = await asyncio.to_thread(main, ["block", "add", "(951) 555-0101", *extra,
                                          "--reason", "harassment reported"])
    assert code == 0, capsys.readouterr().err
    a = await authorize(rig, MOM, "10001")
    assert (a["allow"], a.get("reason")) == (False, "blocked")
    async with rig.pool.acquire() as c:
        audited = await c.fetchval("SELECT count(*) FROM audit_event WHERE action = 'block.add'")
    assert audited == 1
