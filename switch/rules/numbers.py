"""Phone numbers as the switch sees them: E.164 strings, parsed with phonenumbers."""
from __future__ import annotations

import phonenumbers

from switch.errors import SwitchError

__all__ = ["InvalidNumber", "to_e164"]


class InvalidNumber(SwitchError, ValueError):
    """A phone number that cannot be parsed; the message names the text."""


def to_e164(text: str, default_region: str = "US") -> str:
    """'(212) 555-0123', '2125550123', '+44 20 7946 0018' -> E.164. Raises InvalidNumber."""
    raw = text.strip()
    if raw.isdigit() and len(raw) == 11 and raw.startswith("1"):
        raw = "+" + raw
    elif raw.startswith("011"):
        raw = "+" + raw[3:]
    try:
        n = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as e:
        raise InvalidNumber(f"{text!r} is not a phone number: {e}") from None
    if not phonenumbers.is_possible_number(n):
        raise InvalidNumber(f"{text!r} is not a possible phone number")
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
