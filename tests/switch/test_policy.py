import dataclasses

import pytest

from switch.rules.policy import (Allow, ContactFacts, Deny, Facts, Funding, InmateFacts, KioskFacts,
                           Quota, Refusal, Usage, decide)

GOOD = Facts(
    kiosk=KioskFacts("k1", "fac", "A"),
    inmate=InmateFacts("1001", "fac", "active"),
    number_class="interstate",
    refused_classes=frozenset({"emergency", "toll_free", "premium"}),
    blocked=False,
    contact=ContactFacts("approved"),
    schedule_seconds_left=3600,
    facility_max_seconds=900,
    funding=(Funding("prepaid", "pp:+15551234567", 1200),),
)


def with_(**kw):
    return dataclasses.replace(GOOD, **kw)


def test_a_good_call_is_allowed_for_the_facility_limit_paid_by_the_prepaid_account():
    d = decide(GOOD)
    assert isinstance(d, Allow) and d.allow
    assert (d.max_seconds, d.limited_by, d.funding.account) == (900, "facility", "pp:+15551234567")


# One row per refusal reason, in precedence order; each row also carries every lower-precedence
# fault, so the test proves the ladder reports the first that applies.
LADDER = [
    (Deny.KIOSK_UNKNOWN, dict(kiosk=None)),
    (Deny.INMATE_SUSPENDED, dict(inmate=InmateFacts("1001", "fac", "suspended"))),
    (Deny.INVALID_NUMBER, dict(number_class="invalid")),
    (Deny.REFUSED_NUMBER_CLASS, dict(number_class="premium")),
    (Deny.BLOCKED, dict(blocked=True)),
    (Deny.NOT_APPROVED, dict(contact=ContactFacts("requested"))),
    (Deny.OUTSIDE_CALLING_HOURS, dict(schedule_seconds_left=0)),
    (Deny.DESTINATION_CLOSED, dict(destination_closed=True)),
    (Deny.QUOTA_USED, dict(quota=Quota(calls_per_day=3), usage=Usage(calls_today=3))),
    (Deny.INSUFFICIENT_FUNDS, dict(funding=(Funding("prepaid", "pp", 59),))),
]


@pytest.mark.parametrize("i", range(len(LADDER)))
def test_each_refusal_reason_is_reported_first_when_it_applies(i):
    faults = {}
    for _, f in LADDER[i:]:
        if "number_class" in f and "number_class" in faults:
            continue            # invalid beats premium: keep the higher one
        faults.update(f)
    d = decide(with_(**faults))
    assert isinstance(d, Refusal) and d.reason is LADDER[i][0]


def test_every_refusal_reason_is_covered_by_the_ladder():
    assert [r for r, _ in LADDER] == list(Deny)


def test_inmate_from_another_facility_is_refused_at_this_kiosk():
    d = decide(with_(inmate=InmateFacts("1001", "other", "active")))
    assert d == Refusal(Deny.INMATE_SUSPENDED)


def test_minutes_quota_limits_the_call_and_a_spent_quota_refuses():
    d = decide(with_(quota=Quota(minutes_per_day=30), usage=Usage(seconds_today=29 * 60)))
    assert (d.max_seconds, d.limited_by) == (60, "quota")
    d = decide(with_(quota=Quota(minutes_per_month=30), usage=Usage(seconds_month=30 * 60)))
    assert d == Refusal(Deny.QUOTA_USED)


def test_funds_and_schedule_limit_the_call():
    assert decide(with_(funding=(Funding("prepaid", "pp", 300),))).limited_by == "funds"
    d = decide(with_(schedule_seconds_left=120))
    assert (d.max_seconds, d.limited_by) == (120, "schedule")


def test_funding_order_is_kept_and_an_underfunded_first_source_falls_through():
    two = (Funding("prepaid", "pp", 10), Funding("debit", "debit:1001", 5000))
    d = decide(with_(funding=two))
    assert d.funding.payment_type == "debit"
    d = decide(with_(funding=(Funding("prepaid", "pp", 600), Funding("debit", "d", 5000))))
    assert d.funding.payment_type == "prepaid" and d.max_seconds == 600


def test_schedule_shorter_than_the_minimum_call_still_allows_what_the_money_covers():
    d = decide(with_(schedule_seconds_left=30, funding=(Funding("prepaid", "pp", 45),)))
    assert isinstance(d, Allow) and d.max_seconds == 30


def test_privileged_call_is_free_and_needs_no_funding():
    d = decide(with_(contact=ContactFacts("approved", privileged=True), funding=()))
    assert isinstance(d, Allow) and d.privileged and d.funding is None and d.max_seconds == 900


def test_the_tariff_s_ceiling_or_closure_limits_the_call_without_refusing_a_short_one():
    ceiling = with_(funding=(Funding("prepaid", "pp", 1200, 270, "ceiling"),))
    d = decide(ceiling)
    assert (d.max_seconds, d.limited_by) == (270, "ceiling")
    soon = decide(with_(funding=(Funding("prepaid", "pp", 1200, 30, "closure"),)))
    assert (soon.allow, soon.max_seconds, soon.limited_by) == (True, 30, "closure")
    # A ceiling that pays for no second at all falls through to the next source.
    d = decide(with_(funding=(Funding("prepaid", "pp", 1200, 0, "ceiling"),
                              Funding("debit", "inmate", 600))))
    assert (d.funding.account, d.max_seconds, d.limited_by) == ("inmate", 600, "funds")


def test_a_closed_destination_is_refused_but_a_privileged_call_goes_through():
    assert decide(with_(destination_closed=True, funding=())).reason is Deny.DESTINATION_CLOSED
    d = decide(with_(destination_closed=True, funding=(), contact=ContactFacts("approved", True)))
    assert d.allow and d.privileged
