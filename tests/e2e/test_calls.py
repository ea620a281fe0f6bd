"""Calls end to end through the whole node, SIPp at both ends (see conftest.py for the layout):
billing per period, refusals and blocks by the called party, numbers not on the list, an
underfunded call, a worker killed mid-call, and more calls than the node has slots for.
Every test ends with the ledger's verify."""
from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
import pytest

from pathlib import Path

from tests.e2e.conftest import (ATTORNEY, BROTHER, MOM, NOT_ON_LIST, PERIOD, PIN, SPANISH_PIN,
                                WAIT, expected_charge)

pytestmark = pytest.mark.timeout(120)

FUNDED = 20_000_000
BROTHER_FUNDS = 8_500


async def eventually(predicate, what: str, timeout: float = WAIT):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what}: still not so after {timeout}s ({value!r})")
        await asyncio.sleep(0.1)


async def test_accepted_call_is_billed_per_period_and_settled(rig):
    called = await rig.called_party("1", hangs_up_after=7)
    kiosk = await rig.kiosk(MOM)
    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosk.finished() == 0, kiosk.output()
    (cdr,) = await rig.wait_cdrs(1)
    assert cdr["disposition"] == "completed", rig.log()
    assert cdr["sip_code"] == 200 and cdr["trunk"].endswith(f":{rig.trunk_port}")
    # SIPp talks 7 s by its own clock; how much later the BYE lands depends on the machine's
    # load, so no upper window: the charge is checked against the talk the CDR records.
    assert cdr["talk_seconds"] >= 7
    billed, call, tax = expected_charge(cdr["talk_seconds"])
    assert (cdr["billed_seconds"], cdr["call_micros"], cdr["tax_micros"]) == (billed, call, tax)
    balance = await rig.balance(MOM)
    assert balance.pending == 0 and balance.available == FUNDED - call - tax
    (row,) = await rig.call_rows()
    assert row["period"] >= cdr["talk_seconds"] // PERIOD      # a Continue per 2-s period
    assert len(cdr["transfer_ids"]) >= 4 * (row["period"] - 1)  # held and posted each period
    assert "cp_menu_accept" in rig.heard("called")[0]           # the key barged into the menu
    assert cdr["recording"] and Path(cdr["recording"]).is_file()  # recorded where they all go
    assert (await rig.verify()).ok


async def test_a_privileged_call_through_the_real_core_is_free_and_never_recorded(rig):
    called = await rig.called_party("1", hangs_up_after=4)
    kiosk = await rig.kiosk(ATTORNEY)
    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosk.finished() == 0, kiosk.output()
    (cdr,) = await rig.wait_cdrs(1)
    assert cdr["disposition"] == "completed" and cdr["talk_seconds"] >= 4, rig.log()
    assert (cdr["total_micros"], cdr["recording"]) == (0, None)
    recordings = rig.cfg.data_dir / "recordings"
    assert not recordings.exists() or not list(recordings.iterdir())
    (row,) = await rig.call_rows()
    assert row["privileged"]
    assert (await rig.verify()).ok


async def test_a_spanish_inmate_is_announced_in_spanish_and_accepted_with_a_sip_info_key(rig):
    called = await rig.sipp("called-info", "called_party_info_hangs_up.xml", None,
                            "-key", "digit", "1", "-d", "3000", port=rig.trunk_port)
    kiosk = await rig.kiosk(MOM, pin=SPANISH_PIN)
    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosk.finished() == 0, kiosk.output()
    (cdr,) = await rig.wait_cdrs(1)
    assert cdr["disposition"] == "completed" and cdr["inmate_id"] == "10002", rig.log()
    assert "INFO sip:" in called.messages() and "Signal=1" in called.messages()
    menu = [line for line in rig.worker_lines if "called hears [" in line and "cp_menu_accept" in line]
    assert menu and "Para aceptar, oprima" in menu[0], rig.log()       # the called party's menu
    assert not any("To accept, press" in line for line in rig.worker_lines)
    billed, call, tax = expected_charge(cdr["talk_seconds"])
    assert cdr["total_micros"] == call + tax
    assert (await rig.verify()).ok


async def test_refused_call_costs_nothing_and_the_inmate_hears_it_was_refused(rig):
    called = await rig.called_party("2")
    kiosk = await rig.kiosk(MOM)
    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosk.finished() == 0, kiosk.output()
    (cdr,) = await rig.wait_cdrs(1)
    assert (cdr["disposition"], cdr["talk_seconds"], cdr["total_micros"]) == ("refused", 0, 0)
    assert cdr["accepted_at"] is None and cdr["recording"] is None
    assert rig.heard("called")[-1] == ("cp_goodbye",)
    assert rig.heard("kiosk")[-1] == ("party_refused", "goodbye")
    balance = await rig.balance(MOM)
    assert (balance.available, balance.pending) == (FUNDED, 0)
    assert (await rig.verify()).ok


async def test_block_key_blocks_the_number_and_the_next_call_to_it_is_refused_as_blocked(rig):
    called = await rig.called_party("9")
    kiosk = await rig.kiosk(MOM)
    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosk.finished() == 0, kiosk.output()
    (cdr,) = await rig.wait_cdrs(1)
    assert (cdr["disposition"], cdr["total_micros"]) == ("blocked", 0)
    assert rig.heard("called")[-1] == ("cp_blocked_confirm",)
    assert rig.heard("kiosk")[-1] == ("party_blocked", "goodbye")
    conn = await rig.connect()
    try:
        block = await conn.fetchrow("SELECT * FROM block WHERE pattern = $1", MOM)
    finally:
        await conn.close()
    assert (block["scope"], block["facility_id"], block["requested_by"]) == (
        "facility", "riverside", "called_party")

    again = await rig.kiosk(MOM, name="kiosk-again")
    assert await again.finished() == 0, again.output() + rig.log()
    assert rig.heard("kiosk")[-1] == ("deny_blocked", "goodbye")
    assert len(await rig.call_rows()) == 1              # refused before any call or trunk INVITE
    balance = await rig.balance(MOM)
    assert (balance.available, balance.pending) == (FUNDED, 0)
    assert (await rig.verify()).ok


async def test_number_not_on_the_approved_list_is_refused_before_dialling(rig):
    kiosk = await rig.kiosk(NOT_ON_LIST)
    assert await kiosk.finished() == 0, kiosk.output() + rig.log()
    assert rig.heard("kiosk") == [("deny_not_approved", "goodbye")]
    assert await rig.call_rows() == [] and await rig.cdrs() == []
    conn = await rig.connect()
    try:
        pins = await conn.fetch("SELECT ok, source FROM pin_attempt")
    finally:
        await conn.close()
    assert [(p["ok"], p["source"]) for p in pins] == [(True, "sip_header")]
    assert (await rig.verify()).ok


async def test_an_untrusted_kiosk_cannot_skip_keying_by_putting_the_pin_in_its_invite(rig):
    kiosk = await rig.kiosk(MOM, kiosk_id="kiosk-a2")
    assert await kiosk.finished() == 0, kiosk.output() + rig.log()
    assert rig.heard("kiosk") == [("deny_pin_invalid", "goodbye")]
    assert await rig.call_rows() == []
    conn = await rig.connect()
    try:
        pins = await conn.fetch("SELECT kiosk, inmate_id, ok, outcome FROM pin_attempt")
    finally:
        await conn.close()
    # refused without looking at the PIN, so it counts against no inmate's lockout
    assert [tuple(p) for p in pins] == [("kiosk-a2", None, False, "untrusted_kiosk")]
    assert (await rig.verify()).ok


async def test_underfunded_call_hears_the_warning_and_ends_at_the_funded_seconds(rig):
    called = await rig.called_party("1")                 # stays on the line: the switch ends it
    kiosk = await rig.kiosk(BROTHER)
    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosk.finished() == 0, kiosk.output()
    (cdr,) = await rig.wait_cdrs(1)
    # 0.0085 pays 8 s: 8 s at 0.06/min is 0.008, plus 5.5 % tax is 0.00844; 10 s would be 0.01055
    assert (cdr["disposition"], cdr["talk_seconds"]) == ("grant_exhausted", 8), rig.log()
    billed, call, tax = expected_charge(8)
    assert (cdr["billed_seconds"], cdr["total_micros"]) == (billed, call + tax)
    talk = (cdr["ended_at"] - cdr["accepted_at"]).total_seconds()
    assert talk >= 8                                      # not cut before the funded seconds
    # ...and ended by the worker at the grant (its disposition and talk say so; when the worker
    # hangs up relative to the grant is switch.worker.grant's pure rule, tests/switch/
    # test_worker_grant.py, not a wall-clock window on a loaded machine)
    assert ("warning_one_minute",) in rig.heard("both")
    balance = await rig.balance(BROTHER)
    assert (balance.available, balance.pending) == (BROTHER_FUNDS - call - tax, 0)
    assert (await rig.verify()).ok


async def test_worker_killed_mid_call_closes_the_call_on_its_confirmed_periods(rig, reactor):
    called = await rig.called_party("1", hangs_up_after=60)
    await rig.kiosk(MOM)

    async def continued():
        rows = await rig.call_rows()
        return rows and rows[0]["posted_until"] >= 2 * PERIOD and rows[0]
    await eventually(continued, "two periods confirmed")
    pid = rig.node.supervisor.pid("w1")
    os.kill(pid, signal.SIGKILL)

    (cdr,) = await rig.wait_cdrs(1)
    (row,) = await rig.call_rows()
    assert cdr["disposition"] == "worker_lost"
    assert cdr["talk_seconds"] == row["posted_until"] >= 2 * PERIOD   # only confirmed periods
    billed, call, tax = expected_charge(cdr["talk_seconds"])
    assert (cdr["billed_seconds"], cdr["total_micros"]) == (billed, call + tax)
    balance = await rig.balance(MOM)
    assert (balance.available, balance.pending) == (FUNDED - call - tax, 0)  # the hold released
    assert (await rig.verify()).ok
    # the supervisor started a new worker in its place, ready for calls
    await eventually(lambda: _async(rig.node.supervisor.pid("w1") not in (None, pid)
                                    and rig.node.supervisor.table.slots(reactor.seconds())
                                    ["free"] == 2), "a new worker w1")
    called.stop()


async def test_calls_beyond_the_node_capacity_get_503_and_the_calls_up_go_on(rig, reactor):
    table = rig.node.supervisor.table
    capacity = table.slots(reactor.seconds())["capacity"]
    pid = rig.node.supervisor.pid("w1")
    called = await rig.called_party("1", hangs_up_after=8, calls=capacity)
    kiosks = await rig.kiosk(MOM, calls=capacity, rate=50)

    async def all_up():
        rows = await rig.call_rows()
        return (len(rows) == capacity and all(r["accepted_at"] for r in rows)
                and table.slots(reactor.seconds())["active"] == capacity)
    await eventually(all_up, f"{capacity} calls talking")
    door = await rig.sipp("door-full", "kiosk_refused.xml", f"127.0.0.1:{rig.door_port}",
                          "-s", MOM, "-key", "pin", PIN, "-key", "kiosk", "kiosk-a1")
    assert await door.finished() == 0, door.output()
    assert "SIP/2.0 503 " in door.messages() and "Retry-After: 3" in door.messages()
    assert 'ics_frontdoor_requests_total{method="INVITE",response="503"} 1.0' in _metrics(rig)
    # Sent straight to the full worker, its screen refuses it before pjsua sees it (no room for
    # a kiosk leg and its outbound leg): 503, and the worker and its calls go on.
    worker = await rig.sipp("worker-full", "kiosk_refused.xml", f"127.0.0.1:{rig.worker_port}",
                            "-s", MOM, "-key", "pin", PIN, "-key", "kiosk", "kiosk-a1")
    assert await worker.finished() == 0, worker.output()
    assert "SIP/2.0 503 " in worker.messages()

    assert await called.finished() == 0, called.output() + rig.log()
    assert await kiosks.finished() == 0, kiosks.output()
    cdrs = await rig.wait_cdrs(capacity)
    assert [c["disposition"] for c in cdrs] == ["completed"] * capacity
    charged = sum(c["total_micros"] for c in cdrs)
    balance = await rig.balance(MOM)
    assert (balance.available, balance.pending) == (FUNDED - charged, 0)
    assert len(await rig.call_rows()) == capacity         # the refused INVITEs made no call
    assert rig.node.supervisor.pid("w1") == pid and not rig.node.supervisor.restarts("w1")
    assert (await rig.verify()).ok


async def _async(value):
    return value


def _metrics(rig) -> str:
    from prometheus_client import generate_latest
    return generate_latest(rig.node.metrics.registry).decode()
