"""Rating: tariffs, jurisdiction, one pricing definition (real time and bulk), rate caps, decks.

The pure API is re-exported here; `rating.bulk` (numpy), `rating.store` (PostgreSQL) and
`rating.profiles` are imported by name where needed.
"""

from rating.calendar import Holiday
from rating.errors import (
    DestinationClosed,
    InvalidTariff,
    NoTariffInForce,
    RateCapExceeded,
    RatingRefusal,
    UnauthorizedDestination,
)
from rating.import_codes import DeckErrorCode
from rating.jurisdiction import Jurisdiction, JurisdictionClass, classify
from rating.pricing import (
    Longest,
    Price,
    Rate,
    Span,
    SurchargeItem,
    affordable_seconds,
    callable_seconds,
    ceiling_seconds,
    longest_call,
    period_micros,
    price,
    rate_at,
    select_line,
    total_micros,
)
from rating.tariff import (
    Band,
    CapAction,
    Line,
    PaymentType,
    RateGroup,
    Rounding,
    Surcharge,
    SurchargeKind,
    Tariff,
    TariffVersion,
)

__all__ = [
    "Band",
    "CapAction",
    "DeckErrorCode",
    "DestinationClosed",
    "Holiday",
    "InvalidTariff",
    "Jurisdiction",
    "JurisdictionClass",
    "Line",
    "Longest",
    "NoTariffInForce",
    "PaymentType",
    "Price",
    "Rate",
    "RateCapExceeded",
    "RateGroup",
    "RatingRefusal",
    "Rounding",
    "Span",
    "Surcharge",
    "SurchargeItem",
    "SurchargeKind",
    "Tariff",
    "TariffVersion",
    "UnauthorizedDestination",
    "affordable_seconds",
    "callable_seconds",
    "ceiling_seconds",
    "classify",
    "longest_call",
    "period_micros",
    "price",
    "rate_at",
    "select_line",
    "total_micros",
]
