"""Money as text: integer micro-units in, exact decimal text out, and back. The only place.

Code and database keep amounts as integer micro-units (1e-6 of the currency unit); people read
and write decimal currency units: "12.34", "$12.34", "-2.50", "0.000001". Every formatter and
parser of money text in the product is this module, so a deck, a CLI line, an API body and a
statement agree to the micro-unit, and no message to a person ever speaks of micro-units.

Rules:
1. `format_amount` is exact: no float, no rounding. It shows at least `places` decimals and more
   only when they are not zero ("0.06", "0.065", "12.00"); `places=0` is the shortest form
   ("5", "0.21"), as rate decks write it.
2. `parse_amount` reads text only (a float, int or Decimal is refused: 0.1 as a binary float is
   not 0.1, and a bare int could be units or micro-units). It accepts an optional sign, an
   optional "$", digits, and at most 6 decimals (more only when they are zeros). No exponents,
   NaN, infinities, thousands separators, spaces inside, or non-ASCII digits.
3. parse_amount(format_amount(m, places=p)) == m for every amount within AMOUNT_MAX, and
   format_amount(parse_amount(t)) is t's canonical spelling.

This module imports nothing but the standard library and the ledger's errors, so the pure
modules (pricing, the IVR's say-amount) may use it without pulling in the database.
"""

from __future__ import annotations

import re

from ledger.errors import LedgerError

__all__ = [
    "AMOUNT_MAX",
    "AMOUNT_REFUSALS",
    "AMOUNT_TEXT_MAX",
    "AmountInvalid",
    "DECIMALS",
    "MICROS",
    "format_amount",
    "parse_amount",
]

MICROS = 1_000_000  # micro-units per currency unit
DECIMALS = 6  # one micro-unit is the smallest amount: 0.000001
AMOUNT_MAX = 10**15  # a billion currency units; as ledger.transfers.AMOUNT_MAX
AMOUNT_TEXT_MAX = 40  # characters: longer text is refused before it is read

# Why an amount is refused, in the order checked.
AMOUNT_REFUSALS = ("not_text", "too_long", "malformed", "decimals", "too_large", "negative", "zero")

_AMOUNT = re.compile(r"([0-9]*)(?:\.([0-9]*))?", re.ASCII)


class AmountInvalid(LedgerError, ValueError):
    """Text that is not an acceptable amount. `text` is what was given (its repr, for a value
    that was not text), `reason` says why in words for people, `code` which rule it broke (one
    of AMOUNT_REFUSALS, for callers that map refusals to codes of their own)."""

    def __init__(self, text: object, reason: str, code: str = "malformed") -> None:
        assert code in AMOUNT_REFUSALS, code
        self.text = text if isinstance(text, str) else repr(text)
        self.reason = reason
        self.code = code
        shown = (
            text
            if isinstance(text, str) and len(text) <= AMOUNT_TEXT_MAX
            else (self.text[:AMOUNT_TEXT_MAX] + "...")
        )
        super().__init__(f"{shown!r} {reason}", what=reason, where="amount", value=self.text)


def format_amount(micros: int, *, places: int = 2, currency: str = "") -> str:
    """Micro-units as exact decimal text: 60_000 -> "0.06", 65_000 -> "0.065", -2_500_000 ->
    "-2.50"; with `currency`, "0.06 USD"."""
    if not isinstance(micros, int) or isinstance(micros, bool):
        raise TypeError(f"an amount is an int of micro-units, not {type(micros).__name__}")
    if not 0 <= places <= DECIMALS:
        raise ValueError(f"places must be 0..{DECIMALS}, got {places}")
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    digits = f"{frac:0{DECIMALS}d}".rstrip("0").ljust(places, "0")
    text = f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
    return f"{text} {currency}" if currency else text


def parse_amount(
    text: str, *, allow_negative: bool = False, allow_zero: bool = False, maximum: int = AMOUNT_MAX
) -> int:
    """Decimal text in currency units -> exact micro-units. Raises AmountInvalid saying why.

    By default an amount is more than zero (a payment, a refund); `allow_negative` takes a signed
    amount (an adjustment), `allow_zero` takes 0 (a price). The size limit is `maximum`, in
    micro-units, either way."""
    if not isinstance(text, str):
        raise AmountInvalid(
            text,
            "is not text: give the amount as text such as '12.34' "
            "(a binary float cannot hold most amounts exactly)",
            "not_text",
        )
    if len(text) > AMOUNT_TEXT_MAX:
        raise AmountInvalid(
            text, f"is too long for an amount (at most {AMOUNT_TEXT_MAX} characters)", "too_long"
        )
    t = text.strip()
    signed = t[:1] in ("+", "-")
    negative = t[:1] == "-"
    if signed:
        t = t[1:]
    if t[:1] == "$":
        t = t[1:]
        if t[:1] in ("+", "-") and not signed:  # "$-2.50" as well as "-$2.50"
            negative, t = t[0] == "-", t[1:]
    m = _AMOUNT.fullmatch(t)
    if m is None or not (m.group(1) or m.group(2)):
        raise AmountInvalid(text, _why_not(t))
    whole, frac = m.group(1), m.group(2) or ""
    if frac.rstrip("0") != frac[:DECIMALS].rstrip("0"):
        raise AmountInvalid(
            text,
            f"has more than {DECIMALS} decimals (the smallest amount is "
            f"{format_amount(1, places=0)})",
            "decimals",
        )
    if len(whole.lstrip("0")) > len(str(maximum // MICROS)):
        raise AmountInvalid(text, f"is more than {format_amount(maximum)}", "too_large")
    micros = int(whole or "0") * MICROS + int(frac[:DECIMALS].ljust(DECIMALS, "0"))
    if negative:
        micros = -micros
    if micros < 0 and not allow_negative:
        raise AmountInvalid(text, "must not be negative", "negative")
    if micros == 0 and not allow_zero:
        raise AmountInvalid(text, "must be more than 0", "zero")
    if abs(micros) > maximum:
        raise AmountInvalid(text, f"is more than {format_amount(maximum)}", "too_large")
    return micros


def _why_not(t: str) -> str:
    low = t.lower()
    if low in ("nan", "snan", "inf", "infinity") or low.startswith(("nan", "inf")):
        return "is not a number: give an amount such as 12.34"
    if re.fullmatch(r"[0-9.]+e[+-]?[0-9]+", low, re.ASCII):
        return "is written with an exponent: write the amount out, e.g. 1500.00 not 1.5e3"
    if "," in t and re.fullmatch(r"[0-9,]+(\.[0-9]*)?", t, re.ASCII):
        return "has a thousands separator: write 1234.56, not 1,234.56"
    if not t:
        return "is empty: give an amount such as 12.34"
    return "is not an amount: give one such as 12.34 or $12.34 (at most 6 decimals)"
