"""The core's price totals of a call (`Pricing.cum`) are rating's `price` of every talk second,
whatever order the seconds are asked in and however many are priced ahead of a miss; a refusal
met only past the second asked for does not refuse that second."""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

from rating import pricing
from rating.errors import UnauthorizedDestination
from rating.jurisdiction import Jurisdiction, JurisdictionClass
from rating.tariff import PaymentType, Tariff, TariffVersion
from switch.control import tariffs
from switch.control.tariffs import Pricing
from switch.rules.session import Charge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rig import flat_tariff  # noqa: E402

START = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)


class Facility:
    id = "riverside"


def pricing_of(tariff: Tariff) -> Pricing:
    p = Pricing()
    p._tariffs["riverside"] = (float("inf"), tariff)
    return p


# Seconds as a call asks for them: anywhere, or one after another (short periods) from a start.
ASKED = st.one_of(st.lists(st.integers(0, 400), min_size=1, max_size=60),
                  st.tuples(st.integers(0, 50), st.integers(1, 300)).map(
                      lambda a: list(range(a[0], a[0] + a[1]))))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from((1, 6, 60)), ASKED, st.integers(0, 20), st.integers(0, 100))
def test_cum_is_the_price_of_every_second_in_any_order(increment, seconds, ahead, ahead_max):
    tariff = flat_tariff(increment=increment)
    with mock.patch.object(tariffs, "PRICED_AHEAD", ahead), \
            mock.patch.object(tariffs, "PRICED_AHEAD_MAX", max(ahead, ahead_max)):
        cum = pricing_of(tariff).cum(Facility(), "local", "+19515550101", "prepaid", START)
        for t in seconds:
            p = pricing.price(tariff, Jurisdiction(JurisdictionClass.LOCAL, "+19515550101"),
                              PaymentType.PREPAID, START, t)
            assert cum(t) == Charge(p.call_micros, p.tax_micros)


def test_a_refusal_past_the_second_asked_for_is_met_only_when_that_second_is_asked():
    """A version that does not price the destination takes effect 3 s into the call: seconds
    before it are priced; a second billed into it is refused as price refuses it."""
    v1 = flat_tariff(increment=1).versions[0]
    v2 = TariffVersion(2, START + timedelta(seconds=3),
                       tuple(line for line in v1.lines if line.destination != "local"),
                       v1.surcharges, facility_id="riverside")
    tariff = Tariff("riverside", "America/Los_Angeles", (v1, v2))
    cum = pricing_of(tariff).cum(Facility(), "local", "+19515550101", "prepaid", START)
    assert [cum(t) for t in (0, 1, 2, 3)] == [
        Charge(pricing.price(tariff, JurisdictionClass.LOCAL, PaymentType.PREPAID, START, t)
               .call_micros,
               pricing.price(tariff, JurisdictionClass.LOCAL, PaymentType.PREPAID, START, t)
               .tax_micros) for t in (0, 1, 2, 3)]
    with pytest.raises(UnauthorizedDestination):
        pricing.price(tariff, JurisdictionClass.LOCAL, PaymentType.PREPAID, START, 4)
    with pytest.raises(UnauthorizedDestination):
        cum(4)
