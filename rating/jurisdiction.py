"""Jurisdiction: which class a dialled number falls in, seen from a facility's state and exchanges.

Priced classes: local (an NPA-NXX of the facility's local exchanges), intrastate (same state),
interstate (another US state or territory), international (any other country, Canada and the
Caribbean included). Classes refused by default (a tariff may price them only with a line of that
exact class): emergency, N11, toll-free, premium rate, invalid and unknown (a valid number with no
state, e.g. a 5XX personal number). The state of a NANP number comes from ``npa_states.toml``.
"""

from __future__ import annotations

import enum
import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

import phonenumbers
from phonenumbers import PhoneNumberType, shortnumberinfo

__all__ = [
    "JurisdictionClass",
    "Jurisdiction",
    "classify",
    "state_of_npa",
    "us_states",
    "REFUSED_BY_DEFAULT",
    "US_REGIONS",
]

US_REGIONS = frozenset({"US", "PR", "VI", "GU", "AS", "MP"})  # NANP regions that are the US
N11_PATTERN = re.compile(r"^[2-9]11$")


class JurisdictionClass(enum.Enum):
    """The class of a called number. Codes are stable (the bulk pricer's arrays); never renumber."""

    LOCAL = "local"
    INTRASTATE = "intrastate"
    INTERSTATE = "interstate"
    INTERNATIONAL = "international"
    EMERGENCY = "emergency"
    N11 = "n11"
    TOLL_FREE = "toll_free"
    PREMIUM = "premium"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    @property
    def code(self) -> int:
        return _CLASS_CODES[self]

    @property
    def refused_by_default(self) -> bool:
        return self in REFUSED_BY_DEFAULT


_CLASS_CODES = {c: i for i, c in enumerate(JurisdictionClass)}
CLASS_BY_CODE = tuple(JurisdictionClass)
REFUSED_BY_DEFAULT = frozenset(
    {
        JurisdictionClass.EMERGENCY,
        JurisdictionClass.N11,
        JurisdictionClass.TOLL_FREE,
        JurisdictionClass.PREMIUM,
        JurisdictionClass.INVALID,
        JurisdictionClass.UNKNOWN,
    }
)
# Classes a prefix line never prices (only a line naming the class does). Invalid and unknown
# numbers may be priced by a prefix line that matches their digits: a deck's catch-all such as
# `+1`. The switch refuses them before pricing; quotes and re-rating price them.
NEVER_BY_PREFIX = frozenset(
    {
        JurisdictionClass.EMERGENCY,
        JurisdictionClass.N11,
        JurisdictionClass.TOLL_FREE,
        JurisdictionClass.PREMIUM,
    }
)


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """A classified destination: its class and, when it has one, its E.164 form."""

    kind: JurisdictionClass
    e164: str | None = None  # "+12125550123"; None for short codes and invalid input
    state: str | None = None  # USPS code when the number rings in the US
    region: str | None = None  # ISO 3166 region of the number

    @property
    def digits(self) -> str:
        """The E.164 digits without '+', or '' (what prefix lines are matched against)."""
        return self.e164[1:] if self.e164 else ""


@functools.cache
def _npa_states() -> dict[str, str]:
    text = (resources.files("rating") / "npa_states.toml").read_text()
    table: dict[str, str] = {}
    for state, npas in tomllib.loads(text)["states"].items():
        for npa in npas:
            table[str(npa)] = state
    return table


def us_states() -> frozenset[str]:
    """USPS codes of the states, DC and the territories (the keys of npa_states.toml)."""
    return frozenset(_npa_states().values())


def state_of_npa(npa: str) -> str | None:
    """'212' -> 'NY'; None for an area code outside the US (or not in the table)."""
    return _npa_states().get(npa)


def _normalise(text: str) -> str:
    raw = re.sub(r"[\s().-]", "", text)
    if raw.startswith("011"):
        return "+" + raw[3:]
    if raw.isdigit() and len(raw) == 11 and raw.startswith("1"):
        return "+" + raw
    return raw


def dialled_e164(number: str) -> str | None:
    """The digits as dialled, in E.164 shape ('+' and 1-15 digits; ten digits are NANP), whether or
    not phonenumbers calls the number valid: what a deck's catch-all prefix is matched against."""
    raw = _normalise(number)
    if raw.startswith("+") and raw[1:].isdigit() and 1 <= len(raw) - 1 <= 15:
        return raw
    if raw.isdigit() and len(raw) == 10:
        return "+1" + raw
    return None


def classify(
    number: str,
    state: str,
    local_exchanges: tuple[str, ...] | frozenset[str] = (),
    default_region: str = "US",
) -> Jurisdiction:
    """Classify a dialled number (any common format) as seen from a facility in ``state`` whose
    local exchanges are ``local_exchanges`` (NPA-NXX strings such as '916-555')."""
    raw = _normalise(number)
    digits = raw.lstrip("+")
    if raw.isdigit() and len(raw) <= 4:
        if shortnumberinfo.is_emergency_number(raw, default_region):
            return Jurisdiction(JurisdictionClass.EMERGENCY)
        if N11_PATTERN.match(raw):
            return Jurisdiction(JurisdictionClass.N11)
        return Jurisdiction(JurisdictionClass.INVALID)
    if not digits.isdigit():
        return Jurisdiction(JurisdictionClass.INVALID)
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return Jurisdiction(JurisdictionClass.INVALID)
    if not phonenumbers.is_valid_number(parsed):
        return Jurisdiction(JurisdictionClass.INVALID)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(parsed)
    kind = phonenumbers.number_type(parsed)
    if kind == PhoneNumberType.TOLL_FREE:
        return Jurisdiction(JurisdictionClass.TOLL_FREE, e164, region=region)
    if kind == PhoneNumberType.PREMIUM_RATE:
        return Jurisdiction(JurisdictionClass.PREMIUM, e164, region=region)
    if parsed.country_code != 1 or region not in US_REGIONS:
        return Jurisdiction(JurisdictionClass.INTERNATIONAL, e164, region=region)
    national = e164[2:]
    called_state = state_of_npa(national[:3])
    if called_state is None:
        return Jurisdiction(JurisdictionClass.UNKNOWN, e164, region=region)
    if called_state != state:
        return Jurisdiction(JurisdictionClass.INTERSTATE, e164, called_state, region)
    exchange = f"{national[:3]}-{national[3:6]}"
    if exchange in local_exchanges:
        return Jurisdiction(JurisdictionClass.LOCAL, e164, called_state, region)
    return Jurisdiction(JurisdictionClass.INTRASTATE, e164, called_state, region)
