"""Rating: tariffs, jurisdiction, one pricing definition (real time and bulk), rate caps, decks.

The pure API is re-exported here; `rating.bulk` (numpy), `rating.store` (PostgreSQL) and
`rating.profiles` are imported by name where needed.
"""
from rating.errors import (InvalidTariff, NoTariffInForce, RateCapExceeded, RatingRefusal,
                           UnauthorizedDestination)
from rating.jurisdiction import Jurisdiction, JurisdictionClass, classify
from rating.pricing import (Price, Rate, Span, SurchargeItem, affordable_seconds, period_micros,
                            price, rate_at, select_line, total_micros)
from rating.tariff import (Band, Line, PaymentType, RateGroup, Rounding, Surcharge, SurchargeKind,
                           Tariff, TariffVersion)

__all__ = sorted([
    "Band", "InvalidTariff", "Jurisdiction", "JurisdictionClass", "Line", "NoTariffInForce",
    "PaymentType", "Price", "Rate", "RateCapExceeded", "RateGroup", "RatingRefusal", "Rounding",
    "Span", "Surcharge", "SurchargeItem", "SurchargeKind", "Tariff", "TariffVersion",
    "UnauthorizedDestination", "affordable_seconds", "classify", "period_micros", "price",
    "rate_at", "select_line", "total_micros",
])
