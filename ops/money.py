"""Money as people write it and as the code keeps it: decimal text <-> integer micro-units."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

__all__ = ["MICROS", "parse_amount", "format_micros"]

MICROS = 1_000_000
AMOUNT_MAX_MICROS = 10**15          # a billion in currency units: beyond any real deposit


def parse_amount(text: str) -> int:
    """'25', '25.00', '0.000001' -> micro-units; more than 6 decimals or junk is an error."""
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if not d.is_finite():
        raise ValueError(f"{text!r} is not an amount")
    micros = d * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"{text!r} has more than 6 decimals")
    if not 0 < micros <= AMOUNT_MAX_MICROS:
        raise ValueError(f"{text!r} must be > 0 and at most {AMOUNT_MAX_MICROS // MICROS}")
    return int(micros)


def format_micros(micros: int, places: int = 2) -> str:
    """60_000 -> '0.06'; shows more places only when they are not zero."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    digits = f"{frac:06d}".rstrip("0")
    digits = digits.ljust(places, "0")
    return f"{sign}{whole}.{digits}"
