"""The node's metrics move when their event happens: money on the real core and PostgreSQL,
exported in the currency's unit (integer micro-units converted once, at export)."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from ops.config import load
from ops.metrics import CoreMetrics, MoneyTotals, PoolCollector
from switch.wire import protocol as wire
from switch.provisioning.directory import fund_phone_account

from observe_rig import core_over_amp

MOM = "+19515550101"            # approved; her prepaid account pays
COUSIN = "+19515550177"         # requested, not approved


def value(metrics: CoreMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
async def amp_core(reactor, pg_dsn, tmp_path):
    cfg = load(overrides={"database": {"url": pg_dsn}, "node": {"data_dir": str(tmp_path)}},
               environ={})
    rig = await core_over_amp(reactor, pg_dsn, cfg)
    yield rig
    await rig.close()


# -- money counters (pure) -------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12), max_size=30))
def test_a_money_counter_exports_the_exact_sum_converted_once(amounts):
    registry = CollectorRegistry()
    money = MoneyTotals("ics_test_money_total", "test", ("currency",))
    registry.register(money)
    for micros in amounts:
        money.add(micros, "USD")
    exported = registry.get_sample_value("ics_test_money_total", {"currency": "USD"})
    assert exported == (sum(amounts) / 1_000_000 if amounts else None)


def test_ten_cents_three_times_is_thirty_cents_not_a_float_sum():
    money = MoneyTotals("ics_test_money_total", "test", ("currency",))
    registry = CollectorRegistry()
    registry.register(money)
    for _ in range(3):
        money.add(100_000, "USD")
    assert registry.get_sample_value("ics_test_money_total", {"currency": "USD"}) == 0.3
    assert 0.1 + 0.1 + 0.1 != 0.3             # what accumulating floats would have exported


@pytest.mark.parametrize("bad", [0.1, True, -1, "100"])
def test_a_money_counter_refuses_anything_but_whole_non_negative_micro_units(bad):
    money = MoneyTotals("ics_test_money_total", "test", ("currency",))
    with pytest.raises((TypeError, ValueError)):
        money.add(bad, "USD")
    assert money.micros("USD") == 0


def test_labels_from_the_wire_cannot_grow_without_bound():
    m = CoreMetrics()
    m.observe("call_end", "completed\nics_fake 1", facility="riverside", revenue=0)
    m.observe("authorization", "made_up_reason")
    m.observe("kiosk_source_mismatch", "x" * 500)
    text = generate_latest(m.registry).decode()
    assert "made_up_reason" not in text and "ics_fake" not in text and "x" * 50 not in text
    assert value(m, "ics_calls_total", disposition="other") == 1
    assert value(m, "ics_authorizations_total", outcome="other") == 1


def test_worker_slots_are_separate_gauges_and_the_old_names_are_gone(tmp_path):
    from switch.processes.supervisor import WorkerTable, _TableCollector
    table = WorkerTable(slot_reservation_seconds=2.0)
    table.spawned("w1", host="127.0.0.1", sip_port=5070, pid=None, now=0.0)
    table.hello("w1", capacity=2, sip_port=5070, pid=1, now=0.0)
    table.spawned("w2", host="127.0.0.1", sip_port=5071, pid=None, now=0.0)
    table.hello("w2", capacity=2, sip_port=5071, pid=2, now=0.0)
    table.heartbeat("w1", ["call-a"], now=0.0)
    registry = CollectorRegistry()
    registry.register(_TableCollector(table, lambda: 0.0))
    got = {name: registry.get_sample_value(f"ics_worker_slots_{name}")
           for name in ("capacity", "busy", "reserved", "free")}
    assert got == {"capacity": 4, "busy": 1, "reserved": 0, "free": 3}
    assert "ics_worker_slots{" not in generate_latest(registry).decode()


# -- on the real core and PostgreSQL ---------------------------------------------------------

async def test_a_charged_call_moves_revenue_in_the_currency_unit_and_the_called_party_decisions(
        amp_core):
    m = amp_core.metrics
    a = await amp_core.keyed_authorize(MOM)
    assert a["allow"], a
    await amp_core.call(wire.Accept, call_id=a["call_id"])
    await amp_core.call(wire.Accept, call_id=a["call_id"])          # a resend: counted once
    assert value(m, "ics_called_party_decisions_total", decision="accept") == 1
    await amp_core.call(wire.End, call_id=a["call_id"], talk_seconds=30, disposition="completed")
    await amp_core.call(wire.End, call_id=a["call_id"], talk_seconds=30, disposition="completed")
    async with amp_core.pool.acquire() as c:
        charged = await c.fetchval("SELECT call_micros FROM cdr WHERE call_id = $1",
                                   uuid.UUID(a["call_id"]))
    assert charged > 0
    assert value(m, "ics_revenue_total", facility="riverside", currency="USD") == \
        charged / 1_000_000
    assert value(m, "ics_calls_total", disposition="completed") == 1
    assert value(m, "ics_billed_seconds_total", facility="riverside") == 60

    for disposition, decision in (("refused", "refuse"), ("blocked", "block")):
        b = await amp_core.keyed_authorize(MOM)
        if decision == "block":
            await amp_core.call(wire.Block, call_id=b["call_id"], scope="inmate")
        await amp_core.call(wire.End, call_id=b["call_id"], talk_seconds=0,
                            disposition=disposition)
        assert value(m, "ics_called_party_decisions_total", decision=decision) == 1
    assert value(m, "ics_called_party_decisions_total", decision="accept") == 1
    # Neither refused nor blocked call earned anything.
    assert value(m, "ics_revenue_total", facility="riverside", currency="USD") == \
        charged / 1_000_000
    refused = await amp_core.keyed_authorize(COUSIN)
    assert not refused["allow"]
    assert value(m, "ics_authorizations_total", outcome="not_approved") == 1
    assert value(m, "ics_authorizations_total", outcome="allow") == 3
    assert value(m, "ics_core_request_seconds_count", command="end") == 4


async def test_deposits_are_counted_from_the_ledger_once_each(amp_core):
    m = amp_core.metrics
    async with amp_core.pool.acquire() as c:
        await m.refresh(c)
        count0 = value(m, "ics_deposits_total", currency="USD")
        amount0 = value(m, "ics_deposit_amount_total", currency="USD")
        await fund_phone_account(c, MOM, 12_340_000, "PAY-observe-1")
        await fund_phone_account(c, MOM, 12_340_000, "PAY-observe-1")   # the same payment
        await fund_phone_account(c, MOM, 1, "PAY-observe-2")
        await m.refresh(c)
    assert value(m, "ics_deposits_total", currency="USD") == count0 + 2
    assert round((value(m, "ics_deposit_amount_total", currency="USD") - amount0) * 1e6) == \
        12_340_001


async def test_calling_hours_follow_the_facility_windows_in_its_time_zone(amp_core):
    m = amp_core.metrics
    async with amp_core.pool.acquire() as c:
        await c.execute("UPDATE calling_window SET spec = 'mon-fri 08:00-22:00' "
                        "WHERE facility_id = 'riverside' AND unit IS NULL")
        await m.refresh(c, datetime(2027, 1, 6, 18, 0, tzinfo=timezone.utc))   # 10:00 LA
        assert value(m, "ics_facility_calling_hours", facility="riverside") == 1
        await m.refresh(c, datetime(2027, 1, 6, 11, 0, tzinfo=timezone.utc))   # 03:00 LA
        assert value(m, "ics_facility_calling_hours", facility="riverside") == 0
    # Every facility's revenue series exists from 0, so a first charge is seen by increase().
    assert value(m, "ics_revenue_total", facility="riverside", currency="USD") == 0


async def test_the_pool_gauges_show_connections_in_use_and_waiters(pg_dsn):
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    registry = CollectorRegistry()
    registry.register(PoolCollector(pool))
    get = lambda name: registry.get_sample_value(name)      # noqa: E731
    try:
        assert (get("ics_db_pool_connections_in_use"), get("ics_db_pool_waiters")) == (0, 0)
        assert get("ics_db_pool_connections_max") == 1
        conn = await pool.acquire()
        assert get("ics_db_pool_connections_in_use") == 1
        waiter = asyncio.ensure_future(pool.acquire())
        for _ in range(100):                       # until the waiter has queued
            if get("ics_db_pool_waiters") == 1:
                break
            await asyncio.sleep(0)
        assert get("ics_db_pool_waiters") == 1
        await pool.release(conn)
        await pool.release(await waiter)
        assert (get("ics_db_pool_connections_in_use"), get("ics_db_pool_waiters")) == (0, 0)
    finally:
        await pool.close()
