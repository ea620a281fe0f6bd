"""Third-party payments on the real database (invariant F3): a payment a money transmitter or a
retailer took itself, reported with its own fee, moves the principal and exactly that fee (owed
on to the third party) under the older profiles, and no fee at all under 2024+; a report resent
pays once, and one with other figures changes nothing."""
from __future__ import annotations

import pytest

import ledger
from families import payments
from families.errors import Invalid, Refused
from families.providers import ChargeState, ProviderAnswer
from tests.families.test_family_payments import NUMBER, M, holder_with_number, posted

FEE = 4_990_000                     # $4.99: what the third party says it charged the family


async def _report(pool, fees, clock, hid, ref, *, amount=20 * M, fee=FEE, purpose="prepaid",
                  target=NUMBER):
    return await payments.record_third_party(
        pool, fees, provider="cash-retail", ref=ref, holder_id=hid, purpose=purpose,
        target=target, amount=amount, reported_fee=fee, now=clock(), actor="operator:ana")


@pytest.mark.parametrize("profile,fee_passed", [
    ("fcc-2013", True), ("fcc-2021", True), ("fcc-2024", False), ("fcc-2025", False)])
async def test_the_third_partys_fee_passes_through_exactly_only_where_fees_are_allowed(
        pool, world, clock, fees, profile, fee_passed):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, world[profile][1])
    if not fee_passed:
        with pytest.raises(Invalid, match="allows no ancillary fees") as e:
            await _report(pool, fees, clock, hid, "R-1")
        assert e.value.field == "third_party_fee"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM family_payment") == 0
        p = await _report(pool, fees, clock, hid, "R-2", fee=0)   # no fee: the payment goes in
        assert (p.state, p.fee, p.fee_rule) == ("confirmed", 0, "prohibited")
        async with pool.acquire() as conn:
            assert await posted(conn, f"prepaid:{NUMBER}") == 20 * M
        return
    p = await _report(pool, fees, clock, hid, "R-1")
    assert (p.state, p.amount, p.fee, p.channel) == ("confirmed", 20 * M, FEE, "third_party")
    assert p.fee_rule == "third party's fee, no markup"
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 20 * M
        assert await posted(conn, payments.THIRD_PARTY_FEES) == FEE
        assert await posted(conn, payments.REVENUE) == 0            # the operator keeps nothing
        assert (await ledger.verify(conn)).ok


async def test_a_resent_report_pays_once_and_other_figures_change_nothing(pool, world, clock,
                                                                           fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, world["fcc-2013"][1])
    first = await _report(pool, fees, clock, hid, "R-9")
    assert (await _report(pool, fees, clock, hid, "R-9")).id == first.id
    with pytest.raises(Refused, match="first reported with a fee of 4.99"):
        await _report(pool, fees, clock, hid, "R-9", fee=FEE + 10_000)
    with pytest.raises(Refused, match="used for another payment"):
        await _report(pool, fees, clock, hid, "R-9", amount=21 * M)
    for bad in (-1, True):
        with pytest.raises(Invalid):
            await _report(pool, fees, clock, hid, "R-10", fee=bad)
    async with pool.acquire() as conn:
        assert await posted(conn, f"prepaid:{NUMBER}") == 20 * M
        assert await posted(conn, payments.THIRD_PARTY_FEES) == FEE
        assert await conn.fetchval("SELECT count(*) FROM family_payment") == 1


async def test_a_fee_above_what_the_third_party_reported_is_never_taken(pool, world, clock,
                                                                        fees):
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock, world["fcc-2013"][1])
        p, _ = await payments.start(conn, fees, holder_id=hid, purpose="prepaid", target=NUMBER,
                                    amount=20 * M, idem_key="tp", provider="cash-retail",
                                    now=clock(), channel=payments.Channel.THIRD_PARTY,
                                    third_party_fee=FEE)
        for answer in (ProviderAnswer(ChargeState.APPROVED, "X", 20 * M + FEE,
                                      third_party_fee=FEE - 1),
                       ProviderAnswer(ChargeState.APPROVED, "X", 20 * M + FEE)):
            with pytest.raises(Refused, match="above what the third party reported"):
                await payments.settle(conn, p.id, answer, now=clock())
        assert (await payments.get_payment(conn, p.id)).state == "pending"
        assert await posted(conn, f"prepaid:{NUMBER}") == 0


async def test_a_third_party_deposit_to_an_inmate_keeps_the_facilitys_rules(pool, world, clock,
                                                                            fees):
    from families.errors import NotApproved
    async with pool.acquire() as conn:
        hid = await holder_with_number(conn, clock)
    with pytest.raises(NotApproved):
        await _report(pool, fees, clock, hid, "R-I", purpose="inmate",
                      target=world["fcc-2013"][1])
