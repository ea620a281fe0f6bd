"""IVR settings: keys, limits and timeouts the two call flows run with, checked once at start-up.

The defaults are the product's; a node overrides them in the ``[ivr]`` section of its config
(`ops.config` reads that section into this class as it is; `from_section` takes any object with
the same field names).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ivr import catalog
from ivr.errors import IvrError

__all__ = ["IvrSettings", "SettingsError", "KEYS", "BLOCK_SCOPES"]

KEYS = "0123456789*#"
BLOCK_SCOPES = ("facility", "inmate")


class SettingsError(IvrError, ValueError):
    """An IVR setting is unusable; the message names the setting and the value."""


@dataclass(frozen=True)
class IvrSettings:
    # language
    languages: tuple[str, ...] = ("en", "es")  # offered in this order
    language_keys: tuple[str, ...] = ("1", "2")  # key for each language, same order
    language_default: str = "en"  # used when the inmate does not choose
    language_menu: bool = True  # False: skip the menu, use the default
    # inmate identification (the PIN is the inmate number followed by the secret)
    pin_length: int = 0  # 0: variable, ended by # or a pause
    pin_length_min: int = 4
    pin_length_max: int = 16
    pin_attempts_max: int = 3  # wrong PINs in one call before hanging up
    # dialled number
    number_attempts_max: int = 3  # badly shaped numbers before hanging up
    number_digits_max: int = 18  # 011 + 15 digits of E.164
    international_prefix: str = "011"  # NANP: 011 + country code + number
    international_digits_min: int = 7  # after the prefix (country code included)
    # timing and retries
    first_digit_timeout_seconds: float = 8.0  # after a prompt, for the first key
    digit_timeout_seconds: float = 5.0  # between keys; a pause after digits ends entry
    repeat_max: int = 2  # replays of a menu after the first play
    announce_time_limit: bool = True  # tell the inmate how long the call may last
    # called party
    accept_key: str = "1"
    refuse_key: str = "2"
    block_key: str = "9"  # "" disables blocking from the IVR
    repeat_key: str = "0"
    language_switch_key: str = "*"  # "" disables "para español, oprima asterisco"
    block_scope: str = "facility"  # what the block key blocks: facility | inmate
    choice_timeout_seconds: float = 6.0  # after the announcement, for the choice
    passive_grace_seconds: float = 3.0  # passive acceptance: no key this long: accept

    def __post_init__(self) -> None:
        self._check()

    @classmethod
    def from_section(cls, section: Any) -> IvrSettings:
        """From a config section object with the same field names (lists become tuples)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = getattr(section, f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def _check(self) -> None:
        def bad(name: str, why: str) -> SettingsError:
            return SettingsError(f"ivr.{name} = {getattr(self, name)!r}: {why}")

        if not self.languages or len(set(self.languages)) != len(self.languages):
            raise bad("languages", "must list distinct languages")
        for lang in self.languages:
            if lang not in catalog.LANGUAGES:
                raise bad("languages", f"no prompts in {lang!r} (have {catalog.LANGUAGES})")
        if len(self.language_keys) != len(self.languages):
            raise bad("language_keys", "needs one key per language")
        if self.language_default not in self.languages:
            raise bad("language_default", "must be one of ivr.languages")
        for name in ("language_keys",):
            keys = getattr(self, name)
            if len(set(keys)) != len(keys) or any(k not in KEYS or len(k) != 1 for k in keys):
                raise bad(name, "keys must be distinct, each one of 0-9 * #")
        menu = {
            "accept_key": self.accept_key,
            "refuse_key": self.refuse_key,
            "block_key": self.block_key,
            "repeat_key": self.repeat_key,
            "language_switch_key": self.language_switch_key,
        }
        for name, key in menu.items():
            optional = name in ("block_key", "language_switch_key")
            if not (key == "" and optional) and (len(key) != 1 or key not in KEYS):
                raise bad(name, "must be one key of 0-9 * #" + (' or ""' if optional else ""))
        used = [k for k in menu.values() if k]
        if len(set(used)) != len(used):
            raise bad("accept_key", f"the called-party keys must differ, got {menu}")
        if self.block_scope not in BLOCK_SCOPES:
            raise bad("block_scope", f"must be one of {BLOCK_SCOPES}")
        if not 1 <= self.pin_length_min <= self.pin_length_max <= 32:
            raise bad("pin_length_min", "need 1 <= pin_length_min <= pin_length_max <= 32")
        if self.pin_length and not self.pin_length_min <= self.pin_length <= self.pin_length_max:
            raise bad("pin_length", "must be 0 (variable) or within pin_length_min..max")
        for name in ("pin_attempts_max", "number_attempts_max"):
            if not 1 <= getattr(self, name) <= 10:
                raise bad(name, "must be between 1 and 10")
        if not 0 <= self.repeat_max <= 10:
            raise bad("repeat_max", "must be between 0 and 10")
        if not self.international_prefix.isdigit():
            raise bad("international_prefix", "must be digits")
        if not 11 <= self.number_digits_max <= 24:
            raise bad("number_digits_max", "must be between 11 and 24")
        if not 3 <= self.international_digits_min <= 15:
            raise bad("international_digits_min", "must be between 3 and 15")
        for name in (
            "first_digit_timeout_seconds",
            "digit_timeout_seconds",
            "choice_timeout_seconds",
            "passive_grace_seconds",
        ):
            if not 0 < getattr(self, name) <= 120:
                raise bad(name, "must be more than 0 and at most 120 seconds")
