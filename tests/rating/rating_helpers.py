"""Rating test helpers: the demo deck and facility, and small tariffs built in code."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rating.facility import Facility
from rating.tariff import (ALL_DAYS, Band, Line, PaymentType, RateGroup, Tariff, TariffVersion)

DEMO_DECK = Path(__file__).resolve().parents[2] / "config" / "demo" / "tariff.csv"
JAN_2024 = datetime(2024, 1, 1, tzinfo=timezone.utc)

RIVERSIDE = Facility(id="riverside", name="Riverside County Jail", state="CA",
                     time_zone="America/Los_Angeles", adp=1200, kind="jail", profile="fcc-2024",
                     local_exchanges=("951-555", "951-955"))


def flat_line(name: str, destination: str, micros_per_minute: int, *,
              payment: PaymentType = PaymentType.ANY, band: Band = Band(ALL_DAYS, 0, 0),
              **kw) -> Line:
    return Line(name, destination, payment, band, (RateGroup(0, micros_per_minute, 60, 60),
                                                   RateGroup(60, micros_per_minute, 60, 6)), **kw)


def one_version(*lines: Line, surcharges=(), zone: str = "America/Los_Angeles",
                effective=JAN_2024) -> Tariff:
    return Tariff("riverside", zone, (TariffVersion(1, effective, lines, tuple(surcharges)),))
