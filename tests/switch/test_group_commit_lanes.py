"""Group commit's lanes on the real PostgreSQL: a lane's batches land new money on the lane's own
shards of revenue and tax, calls of one funding account always share a lane, and a batch of one
lane never waits for rows a batch of the other lane holds."""
import asyncio
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest

import ledger
from ops.seed import DEMO_DIR, load_directory
from switch.control.group_commit import GroupCommit
from switch.rules import session
from switch.rules.session import CallState, Charge

TERMS = session.Terms(period_seconds=1, warning_seconds=1, hold_slack_seconds=30)


def cum(t: int) -> Charge:
    return Charge(1_000 * t, 80 * t)


def money(c: dict) -> session.Money:
    return session.Money(c["id"], CallState(c["state"]), c["period"], c["grant_until"],
                         c["posted_until"], c["max_seconds"], c["funding_account"],
                         c["hold_call"], c["hold_tax"], c["shortfall_micros"])


async def _calls(conn, accounts: list[str]) -> list[dict]:
    """One authorized call on each funded account (as authorize leaves it)."""
    await load_directory(conn, DEMO_DIR / "directory.toml")
    await ledger.create_accounts(conn, [ledger.Account(a, "prepaid_phone") for a in set(accounts)])
    await ledger.submit(conn, [ledger.Transfer(uuid.uuid4(), ledger.TransferKind.SINGLE,
                                               "funding_clearing", a, 10_000_000,
                                               code=ledger.TransferCode.DEPOSIT)
                               for a in set(accounts)])
    now = datetime.now(timezone.utc)
    calls = [{"id": uuid.uuid4(), "state": "authorized", "period": 0, "grant_until": 0,
              "posted_until": 0, "max_seconds": 3600, "funding_account": a, "hold_call": None,
              "hold_tax": None, "shortfall_micros": 0} for a in accounts]
    await conn.executemany(
        "INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "payment_type, funding_account, privileged, record, max_seconds, limited_by, "
        "authorized_at, last_seen_at) VALUES ($1, 'authorized', 'riverside', 'kiosk-a1', '10001', "
        "'+19515550100', 'local', 'prepaid', $2, false, false, 3600, 'funds', $3, $3)",
        [(c["id"], c["funding_account"], now) for c in calls])
    return calls


async def _step(group: GroupCommit, c: dict) -> bool | None:
    """The call's next step (Accept, or Continue at its grant's end) through group commit."""
    now = datetime.now(timezone.utc)
    if c["state"] == "authorized":
        st = session.accept(money(c), cum, TERMS, session.Books(), available=None, answers={},
                            tries=0)
        applied = await group.advance(c, st, now, accepted=now)
    else:
        st = session.advance(money(c), c["period"], c["grant_until"], cum, TERMS, session.Books(),
                             available=None, answers={}, tries=0)
        applied = await group.advance(c, st, now)
    if applied:
        r = st.row
        c.update(state=r.state.value, period=r.period, grant_until=r.grant_until,
                 posted_until=r.posted_until, hold_call=r.hold_call, hold_tax=r.hold_tax)
    return applied


def _accounts_by_lane(group: GroupCommit, n: int) -> list[list[str]]:
    """`n` prepaid account names for each lane."""
    lanes: list[list[str]] = [[] for _ in group._lanes]
    for k in range(1000):
        name = f"prepaid:lane-test-{k}"
        lane = group._lanes.index(group._lane({"funding_account": name, "id": None}))
        if len(lanes[lane]) < n:
            lanes[lane].append(name)
    assert min(len(x) for x in lanes) == n, "accounts are spread over the lanes"
    return lanes


async def test_each_lane_lands_new_money_on_its_own_shard(conn, pg_dsn):
    # One backend only: without lanes every hold would land on that backend's one shard.
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:
        group = GroupCommit(pool, window_seconds=0.001, inflight_max=2)
        by_lane = _accounts_by_lane(group, 2)
        calls = await _calls(conn, [a for lane in by_lane for a in lane for _ in range(2)])
        for _ in range(2):                       # the Accepts, then the first Continues
            assert await asyncio.gather(*(_step(group, c) for c in calls)) == [True] * len(calls)
        # Lane k of two lands on shards k, k + 2, k + 4, ...
        got = {(r["funding"], r["code"], r["credit_shard"] % 2) for r in await conn.fetch(
            "SELECT t.debit_account_id AS funding, t.code, t.credit_shard FROM ledger_transfer t "
            "JOIN ledger_hold_open o USING (id)")}
        assert got == {(a, code, lane) for lane, accounts in enumerate(by_lane)
                       for a in accounts for code in ("call_charge", "tax")}
        assert len(shards := {r[0] for r in await conn.fetch(
            "SELECT DISTINCT credit_shard FROM ledger_transfer WHERE kind = 2")}) > 2, \
            shards                               # a lane rotates over its shards
        assert (await ledger.verify(conn)).ok
    finally:
        await pool.close()


async def test_a_lane_never_waits_for_the_rows_of_the_other_lane(conn, pg_dsn):
    pool = await asyncpg.create_pool(pg_dsn, min_size=2, max_size=2)
    try:
        group = GroupCommit(pool, window_seconds=0.001, inflight_max=2)
        by_lane = _accounts_by_lane(group, 1)
        zero, one = await _calls(conn, [by_lane[0][0], by_lane[1][0]])
        assert await asyncio.gather(_step(group, zero), _step(group, one)) == [True, True]
        # Another transaction holds lane 0's shard of revenue and tax (as a batch of lane 0
        # that has not committed yet would).
        async with conn.transaction():
            await conn.execute("SELECT set_config('ledger.shard', '0', true)")
            assert await conn.fetchval("SELECT ledger_lock('{}', ARRAY['revenue', 'tax_payable'])") == 2
            waiting = asyncio.ensure_future(_step(group, zero))
            assert await asyncio.wait_for(_step(group, one), 10) is True
            await asyncio.sleep(0.2)
            assert not waiting.done()            # lane 0 waits for its own rows only
        assert await asyncio.wait_for(waiting, 10) is True
        assert (await ledger.verify(conn)).ok
    finally:
        await pool.close()
