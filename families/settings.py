"""The families' settings, checked: amounts as micro-units, limits that the rules require."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from families.errors import FamilyError, FieldInvalid
from ledger.money import format_amount

__all__ = ["FamilySettings", "SettingsInvalid", "parse_amount", "DEPOSIT_MAX_FLOOR_MICROS",
           "MICROS", "AMOUNT_KEYS"]

MICROS = 1_000_000
# The rules let a family deposit at least $50 per transaction: a lower per-payment cap is refused.
DEPOSIT_MAX_FLOOR_MICROS = 50 * MICROS
AMOUNT_MAX_MICROS = 10**12           # a million in currency units: beyond any family payment


class SettingsInvalid(FamilyError, ValueError):
    """A setting is unusable; the message names the key."""

    def __init__(self, message: str) -> None:
        super().__init__("families", message)


def parse_amount(text: str, *, field: str = "amount", allow_zero: bool = False) -> int:
    """'25', '25.5', '0.01' -> micro-units, exactly (Decimal, never float); at most 2 decimals
    (people pay in cents). Raises FieldInvalid (a FamilyError and a ValueError) naming the field."""
    if not isinstance(text, str):
        raise FieldInvalid(field, "give the amount as text such as \"25.00\"", value=text)
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise FieldInvalid(field, f"{text!r} is not an amount", value=text) from None
    if not d.is_finite():
        raise FieldInvalid(field, f"{text!r} is not an amount", value=text)
    cents = d * 100
    if cents != cents.to_integral_value():
        raise FieldInvalid(field, f"{text!r} has more than 2 decimals", value=text)
    micros = int(d * MICROS)
    if micros < 0 or (micros == 0 and not allow_zero):
        raise FieldInvalid(field, f"{text!r} must be greater than 0", value=text)
    if micros > AMOUNT_MAX_MICROS:
        raise FieldInvalid(field, f"{text!r} is larger than {AMOUNT_MAX_MICROS // MICROS}",
                           value=text)
    return micros


@dataclass(frozen=True)
class FamilySettings:
    default_profile: str = "fcc-2024"
    automated_fee: int = 3 * MICROS
    live_agent_fee: int = 5_950_000
    paper_statement_fee: int = 2 * MICROS
    deposit_max: int = 200 * MICROS
    deposit_daily_max: int = 500 * MICROS
    balance_max: int = 1000 * MICROS
    login_failures_max: int = 5
    login_source_failures_max: int = 20
    login_window_seconds: int = 900
    session_seconds: int = 43_200
    token_seconds: int = 86_400
    low_balance: int = 5 * MICROS
    webhook_secret: str = ""
    webhook_window_seconds: int = 300
    smtp_host: str = ""
    smtp_port: int = 25
    mail_from: str = "no-reply@ics.invalid"

    def __post_init__(self) -> None:
        if self.deposit_max < DEPOSIT_MAX_FLOOR_MICROS:
            raise SettingsInvalid(f"families.deposit_max must be at least 50.00 (families may "
                                  f"deposit at least $50 per transaction), got "
                                  f"{self.deposit_max / MICROS:.2f}")
        if self.deposit_daily_max < self.deposit_max:
            raise SettingsInvalid("families.deposit_daily_max must be >= families.deposit_max")
        if self.balance_max < self.deposit_max:
            raise SettingsInvalid("families.balance_max must be >= families.deposit_max")
        for name in ("login_failures_max", "login_source_failures_max", "login_window_seconds",
                     "session_seconds", "token_seconds", "webhook_window_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsInvalid(f"families.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.smtp_port < 65536:
            raise SettingsInvalid(f"families.smtp_port must be a port, got {self.smtp_port}")
        if "@" not in self.mail_from:
            raise SettingsInvalid(f"families.mail_from must be an address, got "
                                  f"{self.mail_from!r}")

    @classmethod
    def from_section(cls, section: Any) -> "FamilySettings":
        """From the config's [families] section, which holds these same keys (amounts as text,
        the way an operator writes them) besides others of its own (proof_*)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = getattr(section, f.name)
            if f.name in AMOUNT_KEYS:
                try:
                    value = parse_amount(value, field=f"families.{f.name}", allow_zero=True)
                except ValueError as e:
                    raise SettingsInvalid(str(e)) from None
            values[f.name] = value
        return cls(**values)

    def as_text(self, name: str) -> Any:
        """A setting as the config file writes it: amounts as decimal text ("5.95")."""
        value = getattr(self, name)
        return format_amount(value) if name in AMOUNT_KEYS else value


# The settings that are money: micro-units here, decimal text in the config file.
AMOUNT_KEYS = frozenset({"automated_fee", "live_agent_fee", "paper_statement_fee", "deposit_max",
                         "deposit_daily_max", "balance_max", "low_balance"})
