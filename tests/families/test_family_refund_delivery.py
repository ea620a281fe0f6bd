"""Refund delivery on the real database: a provider failure during a refund leaves the line
pending (the money stays in refunds payable), the sweep sends it again with back-off under the
same idempotency key until the provider takes it, once; after ATTEMPTS_MAX failures the line is
held for an operator, whose retry sends it."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger
from families import refund_delivery, refunds
from families.refund_delivery import ATTEMPTS_MAX, BACKOFF_FIRST, BACKOFF_MAX, backoff
from tests.families.test_family_payments import NUMBER, M, holder_with_number, pay


def test_backoff_doubles_from_the_first_wait_up_to_the_cap():
    assert backoff(1) == BACKOFF_FIRST
    assert backoff(2) == 2 * BACKOFF_FIRST
    assert backoff(3) == 4 * BACKOFF_FIRST
    assert backoff(10_000) == BACKOFF_MAX
    with pytest.raises(ValueError):
        backoff(0)


@given(st.integers(min_value=1, max_value=10_000))
def test_backoff_never_shrinks_and_never_passes_the_cap(n):
    assert BACKOFF_FIRST <= backoff(n) <= backoff(n + 1) <= BACKOFF_MAX


async def _line(conn, line_id):
    return await conn.fetchrow("SELECT * FROM family_refund WHERE id = $1", line_id)


async def _refunded_at_provider(conn, ref) -> int:
    return await conn.fetchval("SELECT refunded FROM test_provider_charge WHERE ref = $1", ref)


async def test_a_refund_the_provider_failed_is_retried_with_backoff_and_taken_once(
        pool, world, clock, provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    p = await pay(pool, fees, provider, clock, hid, 20 * M, "rd1")
    provider.fail_next_refunds(2)
    lines = await refunds.refund_balance(pool, provider, e164=NUMBER, reason="requested",
                                         now=clock(), actor="t")
    (ln,) = lines
    async with pool.acquire() as conn:
        row = await _line(conn, ln.id)
        assert (row["state"], row["attempts"]) == ("pending", 1)
        assert row["next_attempt_at"] == clock() + BACKOFF_FIRST
        assert "unavailable" in row["last_error"]
        # The money is owed: out of the account, in refunds payable; the provider has none of it.
        assert (await ledger.balance(conn, f"prepaid:{NUMBER}")).available == 0
        assert (await ledger.balance(conn, "refunds_payable")).posted >= 20 * M
        assert await _refunded_at_provider(conn, p.provider_ref) == 0
        assert [x.id for x in await refund_delivery.undelivered(conn)] == [ln.id]
    # Not due yet: the sweep leaves it alone.
    seen: list[tuple[str, str]] = []
    observe = lambda what, outcome: seen.append((what, outcome))  # noqa: E731
    assert await refund_delivery.deliver(pool, provider, now=clock(), observe=observe) == {}
    clock.advance(seconds=BACKOFF_FIRST.total_seconds())
    assert await refund_delivery.deliver(pool, provider, now=clock(),
                                         observe=observe) == {ln.id: "retry"}
    async with pool.acquire() as conn:
        row = await _line(conn, ln.id)
        assert (row["attempts"], row["next_attempt_at"]) == (2, clock() + backoff(2))
    clock.advance(seconds=backoff(2).total_seconds())
    assert await refund_delivery.deliver(pool, provider, now=clock(),
                                         observe=observe) == {ln.id: "sent"}
    assert seen == [("refund_delivery", "retry"), ("refund_delivery", "sent")]
    async with pool.acquire() as conn:
        row = await _line(conn, ln.id)
        assert (row["state"], row["attempts"], row["sent_at"]) == ("sent", 3, clock())
        assert await _refunded_at_provider(conn, p.provider_ref) == 20 * M
        assert await refund_delivery.undelivered(conn) == []
        assert (await ledger.verify(conn)).ok
    # Sent again under the same key (a node that crashed before recording "sent"): taken once.
    await provider.refund(ref=ln.provider_ref, amount=ln.amount, idem_key=str(ln.id))
    async with pool.acquire() as conn:
        assert await _refunded_at_provider(conn, p.provider_ref) == 20 * M
    clock.advance(days=1)
    assert await refund_delivery.deliver(pool, provider, now=clock()) == {}


async def test_a_line_that_keeps_failing_is_held_until_an_operator_retries_it(
        pool, world, clock, provider, fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    p = await pay(pool, fees, provider, clock, hid, 15 * M, "rd2")
    provider.fail_next_refunds(ATTEMPTS_MAX)
    (ln,) = await refunds.refund_balance(pool, provider, e164=NUMBER, reason="requested",
                                         now=clock(), actor="t")
    outcomes = []
    for _ in range(ATTEMPTS_MAX - 1):
        clock.advance(hours=7)                           # past any back-off
        outcomes += (await refund_delivery.deliver(pool, provider, now=clock())).values()
    assert outcomes == ["retry"] * (ATTEMPTS_MAX - 2) + ["held"]
    async with pool.acquire() as conn:
        row = await _line(conn, ln.id)
        assert (row["state"], row["attempts"], row["next_attempt_at"]) == (
            "held", ATTEMPTS_MAX, None)
    clock.advance(days=30)
    assert await refund_delivery.deliver(pool, provider, now=clock()) == {}   # held: not swept
    async with pool.acquire() as conn:
        assert await refund_delivery.release_held(conn, [ln.id], now=clock(),
                                                  actor="operator:ana") == 1
        assert await conn.fetchval("SELECT count(*) FROM family_audit WHERE action = "
                                   "'refund.retry'") == 1
    assert await refund_delivery.deliver(pool, provider, now=clock()) == {ln.id: "sent"}
    async with pool.acquire() as conn:
        assert await _refunded_at_provider(conn, p.provider_ref) == 15 * M
        assert await refund_delivery.release_held(conn, [ln.id], now=clock(), actor="x") == 0


async def test_the_test_provider_refuses_a_key_reused_for_another_refund(pool, world, clock,
                                                                          provider, fees):
    from families.providers import ProviderError
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    p = await pay(pool, fees, provider, clock, hid, 10 * M, "rd3")
    await provider.refund(ref=p.provider_ref, amount=4 * M, idem_key="k")
    with pytest.raises(ProviderError, match="was for"):
        await provider.refund(ref=p.provider_ref, amount=5 * M, idem_key="k")
    async with pool.acquire() as conn:
        assert await _refunded_at_provider(conn, p.provider_ref) == 4 * M


async def test_operators_see_and_resend_undelivered_refunds_and_metrics_count_them(
        pool, pg_dsn, world, clock, provider, fees):
    import json

    from ops.metrics import CoreMetrics
    from tests.ops.test_directory_cli import ics
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    p = await pay(pool, fees, provider, clock, hid, 12 * M, "rd4")
    provider.fail_next_refunds(1)
    metrics = CoreMetrics()
    (ln,) = await refunds.refund_balance(pool, provider, e164=NUMBER, reason="requested",
                                         now=clock(), actor="t")
    async with pool.acquire() as conn:
        await metrics.refresh(conn, now=clock() + BACKOFF_FIRST)
    assert metrics.registry.get_sample_value("ics_family_refunds_undelivered",
                                             {"state": "pending"}) == 1
    assert metrics.registry.get_sample_value(
        "ics_family_refunds_undelivered_oldest_seconds") == BACKOFF_FIRST.total_seconds()
    r = ics(pg_dsn, "family", "refunds", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert (row["id"], row["state"], row["amount"], row["attempts"]) == (
        str(ln.id), "pending", 12 * M, 1)
    assert "unavailable" in row["last_error"]
    assert ics(pg_dsn, "family", "refunds-retry", "not-a-uuid").returncode != 0
    r = ics(pg_dsn, "family", "refunds-retry", str(ln.id))
    assert r.returncode == 0 and "1 of 1 refund line(s) taken" in r.stdout, r.stdout + r.stderr
    assert "every refund was taken" in ics(pg_dsn, "family", "refunds").stdout
    async with pool.acquire() as conn:          # one view of every refund, either table's
        lines = await conn.fetch("SELECT * FROM refund_line WHERE account = $1",
                                 f"prepaid:{NUMBER}")
        assert [(x["source"], x["transfer_id"], x["amount"], x["delivery"]) for x in lines] == [
            ("family", ln.id, 12 * M, "sent")]
    async with pool.acquire() as conn:
        assert await _refunded_at_provider(conn, p.provider_ref) == 12 * M
        await metrics.refresh(conn, now=clock())
    assert metrics.registry.get_sample_value("ics_family_refunds_undelivered",
                                             {"state": "pending"}) == 0
    metrics.observe("refund_delivery", "retry")
    metrics.observe("refund_delivery", "surprise")          # outside the set: not a new series
    assert metrics.registry.get_sample_value("ics_family_refund_attempts_total",
                                             {"outcome": "retry"}) == 1
    assert metrics.registry.get_sample_value("ics_family_refund_attempts_total",
                                             {"outcome": "surprise"}) is None
