"""Payments on the real database (invariants F1-F4): principal and fee as two transfers; a double
submit funds once; a decline moves nothing; a charge confirmed before a crash is recorded on
restart from the provider's books; limits; refunds; the inactivity clock on an injected clock."""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

import ledger
from families import numbers, payments, refunds
from families.errors import Refused
from families.payments import Fees
from families.providers import ProviderTimeout
from switch.provisioning import directory

M = 1_000_000
NUMBER = "+12125550150"


async def holder_with_number(conn, clock, profile_inmate=None, email="ana@example.org"):
    hid = uuid.uuid4()
    await conn.execute("INSERT INTO family_holder (id, email, password_hash, created_at, "
                       "last_request_at, verified_at) VALUES ($1, $2, 'scrypt$x', $3, $3, $3)",
                       hid, email, clock())
    if profile_inmate:
        await directory.add_contact(conn, profile_inmate, NUMBER, status="approved")
    await numbers.claim(conn, hid, NUMBER, now=clock())
    await numbers.prove(conn, hid, NUMBER, by="op", now=clock())
    return hid


async def posted(conn, account) -> int:
    return (await ledger.balance(conn, account)).posted


async def pay(pool, fees, provider, clock, hid, amount, key, token="tok_approve", **kw):
    return await payments.pay(pool, fees, provider, holder_id=hid, purpose="prepaid",
                              target=NUMBER, amount=amount, idem_key=key, token=token,
                              now=clock(), **kw)


async def test_principal_and_fee_are_two_transfers_under_an_older_profile(pool, world, clock,
                                                                          provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, world["fcc-2013"][1])
    p = await pay(pool, fees, provider, clock, hid, 25 * M, "k1")
    assert (p.state, p.amount, p.fee, p.profile) == ("confirmed", 25 * M, 3 * M, "fcc-2013")
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 25 * M
        rows = await conn.fetch("SELECT code, amount, credit_account_id FROM ledger_transfer "
                                "WHERE ref = $1 ORDER BY seq", p.provider_ref)
        assert [(r["code"], r["amount"], r["credit_account_id"]) for r in rows] == [
            ("deposit", 25 * M, f"prepaid:{NUMBER}"), ("fee", 3 * M, "revenue")]
        charged = await conn.fetchval("SELECT amount FROM test_provider_charge WHERE ref = $1",
                                      p.provider_ref)
        assert charged == 28 * M
        assert (await ledger.verify(conn)).ok


async def test_a_double_submit_funds_once_and_a_reused_key_for_another_amount_is_refused(
        pool, world, clock, provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    import asyncio
    a, b = await asyncio.gather(pay(pool, fees, provider, clock, hid, 10 * M, "same"),
                                pay(pool, fees, provider, clock, hid, 10 * M, "same"))
    c = await pay(pool, fees, provider, clock, hid, 10 * M, "same")
    assert a.id == b.id == c.id and c.state == "confirmed"
    with pytest.raises(Refused) as e:
        await pay(pool, fees, provider, clock, hid, 11 * M, "same")
    assert e.value.field == "idempotency_key"
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 10 * M
        assert await conn.fetchval("SELECT count(*) FROM test_provider_charge") == 1


async def test_a_decline_and_an_error_move_no_money(pool, world, clock, provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    assert (await pay(pool, fees, provider, clock, hid, 10 * M, "d", "tok_decline")).state \
        == "declined"
    assert (await pay(pool, fees, provider, clock, hid, 10 * M, "e", "tok_error")).state \
        == "failed"
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 0


async def test_a_charge_confirmed_before_a_crash_is_recorded_on_restart(pool, world, clock,
                                                                        provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, world["fcc-2021"][1])
        p, _ = await payments.start(conn, fees, holder_id=hid, purpose="prepaid", target=NUMBER,
                                    amount=40 * M, idem_key="crash", provider="test", now=clock())
    await provider.charge(idem_key=str(p.id), token="tok_approve", amount=p.total)
    # ... and the node dies here, before `settle`. On restart:
    clock.advance(minutes=5)
    done = await payments.reconcile(pool, provider, now=clock())
    assert [(x.id, x.state) for x in done] == [(p.id, "confirmed")]
    assert await payments.reconcile(pool, provider, now=clock()) == []
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 40 * M
        assert await posted(conn, "revenue") == 3 * M


async def test_a_timeout_stays_pending_until_reconciled(pool, world, clock, provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    p = await pay(pool, fees, provider, clock, hid, 10 * M, "slow", "tok_timeout")
    assert p.state == "pending"
    assert await payments.reconcile(pool, provider, now=clock()) == []   # too young yet
    clock.advance(minutes=3)
    assert [x.state for x in await payments.reconcile(pool, provider, now=clock())] == \
        ["confirmed"]


async def test_limits_per_payment_per_day_and_per_account(pool, world, clock, provider, settings):
    fees = Fees(dataclasses.replace(settings, deposit_max=50 * M, deposit_daily_max=120 * M,
                                    balance_max=100 * M))
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    with pytest.raises(Refused, match="at most 50.00 per payment"):
        await pay(pool, fees, provider, clock, hid, 50 * M + 1, "big")
    await pay(pool, fees, provider, clock, hid, 50 * M, "a")
    await pay(pool, fees, provider, clock, hid, 50 * M, "b")
    with pytest.raises(Refused, match="may hold at most 100.00"):
        await pay(pool, fees, provider, clock, hid, 1 * M, "c")
    await refunds.refund_balance(pool, provider, e164=NUMBER, reason="requested", now=clock(),
                                 actor="t")
    with pytest.raises(Refused, match="daily deposit limit"):
        await pay(pool, fees, provider, clock, hid, 21 * M, "d")
    clock.advance(days=1)
    assert (await pay(pool, fees, provider, clock, hid, 21 * M, "d")).state == "confirmed"


async def test_a_refund_never_exceeds_the_available_balance_nor_the_payments(pool, world, clock,
                                                                            provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    a = await pay(pool, fees, provider, clock, hid, 10 * M, "r1")
    clock.advance(minutes=1)                  # b is the newer payment: refunded first
    b = await pay(pool, fees, provider, clock, hid, 30 * M, "r2")
    async with pool.acquire() as conn:       # a call spent 35.00 of it
        await ledger.submit(conn, [ledger.Transfer(
            id=uuid.uuid4(), kind=ledger.TransferKind.SINGLE, debit=f"prepaid:{NUMBER}",
            credit="revenue", amount=35 * M, code=ledger.TransferCode.CALL_CHARGE, ref="call")])
    lines = await refunds.refund_balance(pool, provider, e164=NUMBER, reason="requested",
                                         now=clock(), actor="t")
    assert [(ln.payment_id, ln.amount) for ln in lines] == [(b.id, 5 * M)]
    assert a.id not in [ln.payment_id for ln in lines]
    async with pool.acquire() as conn:
        assert (await ledger.balance(conn, f"prepaid:{NUMBER}")).available == 0
        assert await conn.fetchval("SELECT refunded FROM test_provider_charge WHERE ref = $1",
                                   b.provider_ref) == 5 * M


async def test_inactivity_refund_after_180_days_restarted_by_a_deposit(pool, world, clock,
                                                                       provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    await pay(pool, fees, provider, clock, hid, 10 * M, "i1")
    clock.advance(days=179)
    assert await refunds.refund_inactive(pool, fees, provider, now=clock()) == []
    await pay(pool, fees, provider, clock, hid, 5 * M, "i2")     # restarts the clock
    clock.advance(days=179)
    assert await refunds.refund_inactive(pool, fees, provider, now=clock()) == []
    clock.advance(days=1)
    lines = await refunds.refund_inactive(pool, fees, provider, now=clock())
    assert sum(ln.amount for ln in lines) == 15 * M
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 0
        mail = await conn.fetchrow("SELECT * FROM family_outbox WHERE kind = 'inactivity_refund'")
        assert mail["recipient"] == "ana@example.org" and "$15.00" in mail["body"]
    assert await refunds.refund_inactive(pool, fees, provider, now=clock()) == []


async def test_a_low_balance_notice_goes_out_once_per_dip(pool, world, clock, provider, fees,
                                                          settings):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    await pay(pool, fees, provider, clock, hid, 6 * M, "l1")
    async with pool.acquire() as conn:
        assert await refunds.low_balance_notices(conn, settings, now=clock()) == 0
        await ledger.submit(conn, [ledger.Transfer(
            id=uuid.uuid4(), kind=ledger.TransferKind.SINGLE, debit=f"prepaid:{NUMBER}",
            credit="revenue", amount=2 * M, code=ledger.TransferCode.CALL_CHARGE, ref="call")])
        assert await refunds.low_balance_notices(conn, settings, now=clock()) == 1
        assert await refunds.low_balance_notices(conn, settings, now=clock()) == 0
        assert await conn.fetchval("SELECT count(*) FROM family_outbox WHERE kind = "
                                   "'low_balance'") == 1


async def test_a_provider_that_charged_a_different_amount_leaves_the_payment_pending(
        pool, world, clock, provider, fees):
    from families.providers import ChargeState, ProviderAnswer
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
        p, _ = await payments.start(conn, fees, holder_id=hid, purpose="prepaid", target=NUMBER,
                                    amount=10 * M, idem_key="odd", provider="test", now=clock())
        with pytest.raises(Refused):
            await payments.settle(conn, p.id, ProviderAnswer(ChargeState.APPROVED, "X", 99 * M),
                                  now=clock())
        assert (await payments.get_payment(conn, p.id)).state == "pending"
        assert await posted(conn, f"prepaid:{NUMBER}") == 0


async def test_a_paper_statement_costs_the_profiles_fee_once_and_an_electronic_one_nothing(
        pool, world, clock, provider, fees):
    from families import history
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, world["fcc-2013"][1])
    await pay(pool, fees, provider, clock, hid, 10 * M, "s1")
    async with pool.acquire() as conn:
        e = await history.order_statement(conn, fees, holder_id=hid, e164=NUMBER,
                                          month="2026-03", delivery="electronic", now=clock())
        assert e["fee"] == 0 and await posted(conn, f"prepaid:{NUMBER}") == 10 * M
        p = await history.order_statement(conn, fees, holder_id=hid, e164=NUMBER,
                                          month="2026-03", delivery="paper", now=clock())
        again = await history.order_statement(conn, fees, holder_id=hid, e164=NUMBER,
                                              month="2026-03", delivery="paper", now=clock())
        assert (p["fee"], again["repeat"]) == (2 * M, True)
        assert await posted(conn, f"prepaid:{NUMBER}") == 8 * M
        assert await conn.fetchval("SELECT count(*) FROM family_outbox WHERE kind = "
                                   "'paper_statement'") == 1


async def test_inmate_deposits_need_an_approved_contact_where_the_facility_says_so(
        pool, world, clock, provider, fees):
    from families.errors import NotApproved
    facility, inmate = world["fcc-2024"]
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    with pytest.raises(NotApproved):
        await payments.pay(pool, fees, provider, holder_id=hid, purpose="inmate", target=inmate,
                           amount=10 * M, idem_key="i", token="tok_approve", now=clock())
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO family_facility_policy (facility_id, "
                           "deposits_approved_only, debit_monthly_max) VALUES ($1, false, $2)",
                           facility, 15 * M)
    p = await payments.pay(pool, fees, provider, holder_id=hid, purpose="inmate", target=inmate,
                           amount=10 * M, idem_key="i", token="tok_approve", now=clock())
    assert (p.state, p.fee) == ("confirmed", 0)
    with pytest.raises(Refused, match="a month"):
        await payments.pay(pool, fees, provider, holder_id=hid, purpose="inmate",
                           target=inmate, amount=5 * M + 1, idem_key="j", token="tok_approve",
                           now=clock())
    async with pool.acquire() as conn:
        assert await posted(conn, f"inmate:{inmate}") == 10 * M


async def test_the_inactivity_sweep_looks_only_at_idle_funded_numbers(pool, world, clock,
                                                                      provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
        await numbers.claim(conn, hid, "+12125550151", now=clock())
        await numbers.prove(conn, hid, "+12125550151", by="op", now=clock())
    await pay(pool, fees, provider, clock, hid, 10 * M, "idle")      # NUMBER has money
    clock.advance(days=100)
    async with pool.acquire() as conn:
        since = clock() - dt.timedelta(days=90)
        # Idle 100 days with money: a candidate; the unfunded number is not.
        assert [r["e164"] for r in await refunds.idle_candidates(conn, idle_since=since)] == [
            NUMBER]
        await conn.execute("UPDATE family_holder SET last_request_at = $2 WHERE id = $1",
                           hid, clock())
        assert await refunds.idle_candidates(conn, idle_since=since) == []   # a request
        await conn.execute("UPDATE family_holder SET last_request_at = $2 WHERE id = $1",
                           hid, clock() - dt.timedelta(days=100))
        call_id = uuid.uuid4()
        facility, inmate = world["fcc-2024"]
        await conn.execute(
            "INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
            "privileged, record, max_seconds, limited_by, authorized_at, last_seen_at, "
            "ended_at) VALUES ($1, 'ended', $2, 'k', $3, $4, 'local', false, true, 900, "
            "'funds', $5, $5, $5)", call_id, facility, inmate, NUMBER, clock())
        await conn.execute(
            "INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
            "payment_type, privileged, authorized_at, ended_at, funding_account, talk_seconds, "
            "billed_seconds, disposition, call_micros, tax_micros, total_micros, charges, "
            "transfer_ids) VALUES ($1, $2, 'k', $3, $4, 'local', 'prepaid', false, $5, $5, $6, "
            "60, 60, 'completed', 0, 0, 0, '{}', '{}')", call_id, facility, inmate, NUMBER,
            clock(), f"prepaid:{NUMBER}")
        assert await refunds.idle_candidates(conn, idle_since=since) == []   # a call
