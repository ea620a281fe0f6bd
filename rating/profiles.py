"""Regulatory profiles: rate caps read from config/profiles/*.toml, and the check of a tariff.

A profile is data (an order's caps per facility tier, the jurisdictions they cover, which charges
are forbidden, the source) so a figure is amended in its file, not here. A facility names its
profile; its tier comes from its kind and average daily population (ADP). `check` lists every
violation of a tariff version: a rate above the cap (plus the tier's additives), a connect fee,
a minimum or increment longer than allowed, a provider fee where none is allowed, and a 15-minute
call that costs more than 15 minutes at the cap.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from rating.deck import _Bad, format_money, parse_money
from rating.errors import RatingError, RatingRefusal
from rating.facility import Facility
from rating.jurisdiction import JurisdictionClass, state_of_npa
from rating.pricing import price
from rating.tariff import PaymentType, SurchargeKind, Tariff, TariffVersion, is_prefix

__all__ = [
    "Tier",
    "Profile",
    "ProfileError",
    "Violation",
    "load_profiles",
    "load_profile",
    "check",
    "fifteen_minute_prices",
    "PROFILES_DIR",
    "CALL_PAYMENTS",
    "CAPPED_ORDER",
]

PROFILES_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"
CALL_PAYMENTS = (PaymentType.PREPAID, PaymentType.DEBIT, PaymentType.COLLECT)
CAPPED_ORDER = (
    JurisdictionClass.LOCAL,
    JurisdictionClass.INTRASTATE,
    JurisdictionClass.INTERSTATE,
    JurisdictionClass.INTERNATIONAL,
)
COMPARED_SECONDS = 15 * 60  # the call regulators compare
_PROFILE_KEYS = {
    "name",
    "title",
    "source",
    "jurisdictions",
    "connect_fee_allowed",
    "fees_allowed",
    "minimum_seconds_max",
    "increment_seconds_max",
    "tier",
}
_TIER_KEYS = {"name", "kind", "adp_min", "adp_max", "per_minute", "additives"}


class ProfileError(RatingError, ValueError):
    """A profile file is unusable or missing; the message names the file and the key."""


@dataclass(frozen=True)
class Tier:
    name: str
    kind: str | None  # prison | jail | None (any)
    adp_min: int
    adp_max: int | None
    per_minute: dict[PaymentType, int]  # micro-units per minute, per payment type of a call
    additives: dict[str, int] = field(default_factory=dict)

    def matches(self, f: Facility) -> bool:
        return (
            (self.kind is None or self.kind == f.kind)
            and f.adp >= self.adp_min
            and (self.adp_max is None or f.adp <= self.adp_max)
        )

    def cap(self, pay: PaymentType) -> int:
        """Micro-units per minute a line for ``pay`` may charge, additives included (a line for
        ``any`` payment type must meet the lowest cap)."""
        base = min(self.per_minute.values()) if pay is PaymentType.ANY else self.per_minute[pay]
        return base + sum(self.additives.values())


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    source: str
    jurisdictions: frozenset[JurisdictionClass]
    connect_fee_allowed: bool
    fees_allowed: bool
    minimum_seconds_max: int | None
    increment_seconds_max: int | None
    tiers: tuple[Tier, ...]
    path: str = ""

    def tier_for(self, f: Facility) -> Tier:
        for t in self.tiers:
            if t.matches(f):
                return t
        raise ProfileError(
            f"{self.path}: no tier of profile {self.name} fits facility {f.id} "
            f"({f.kind}, ADP {f.adp})"
        )


@dataclass(frozen=True)
class Violation:
    profile: str
    version: int
    line: str
    field: str
    value: str
    cap: str
    message: str
    group: int | None = None  # the rate group, for a price or increment
    row: int | None = None  # where the deck being imported says it (file line, column)
    column: str | None = None

    def __str__(self) -> str:
        where = f"line {self.row}, column {self.column}: " if self.row is not None else ""
        return (
            f"{where}v{self.version} {self.line}: {self.field} {self.value} exceeds "
            f"{self.cap} ({self.profile}): {self.message} [rate_cap]"
        )


def _money(path: str, key: str, value: object) -> int:
    if not isinstance(value, str):
        raise ProfileError(
            f'{path}: {key} must be an amount in quotes such as "0.21", got {value!r}'
        )
    try:
        return parse_money(value)
    except _Bad as e:
        raise ProfileError(f"{path}: {key}={value!r}: {e.message}") from None


def _tier(path: str, i: int, data: dict[str, Any]) -> Tier:
    where = f"tier[{i}]"
    unknown = set(data) - _TIER_KEYS
    if unknown:
        raise ProfileError(f"{path}: unknown key {where}.{sorted(unknown)[0]}")
    kind = data.get("kind")
    if kind not in (None, "prison", "jail"):
        raise ProfileError(f"{path}: {where}.kind must be prison or jail, got {kind!r}")
    per = data.get("per_minute")
    if isinstance(per, dict):
        per_minute = {}
        for k, v in per.items():
            try:
                pay = PaymentType(k)
            except ValueError:
                raise ProfileError(f"{path}: {where}.per_minute.{k}: not a payment type") from None
            per_minute[pay] = _money(path, f"{where}.per_minute.{k}", v)
        missing = [p.value for p in CALL_PAYMENTS if p not in per_minute]
        if missing:
            raise ProfileError(f"{path}: {where}.per_minute lacks {', '.join(missing)}")
    else:
        cap = _money(path, f"{where}.per_minute", per)
        per_minute = {p: cap for p in CALL_PAYMENTS}
    additives = {
        k: _money(path, f"{where}.additives.{k}", v)
        for k, v in (data.get("additives") or {}).items()
    }
    adp_min, adp_max = data.get("adp_min", 0), data.get("adp_max")
    if not isinstance(adp_min, int) or (adp_max is not None and not isinstance(adp_max, int)):
        raise ProfileError(f"{path}: {where}.adp_min/adp_max must be whole numbers")
    return Tier(
        str(data.get("name") or f"tier {i + 1}"), kind, adp_min, adp_max, per_minute, additives
    )


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from None
    p = str(path)
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise ProfileError(f"{p}: unknown key {sorted(unknown)[0]}")
    for key in ("name", "source", "jurisdictions", "tier"):
        if key not in data:
            raise ProfileError(f"{p}: {key} is required")
    try:
        jurisdictions = frozenset(JurisdictionClass(j) for j in data["jurisdictions"])
    except ValueError as e:
        raise ProfileError(f"{p}: jurisdictions: {e}") from None
    tiers = tuple(_tier(p, i, t) for i, t in enumerate(data["tier"]))
    return Profile(
        data["name"],
        data.get("title", data["name"]),
        data["source"],
        jurisdictions,
        bool(data.get("connect_fee_allowed", False)),
        bool(data.get("fees_allowed", False)),
        data.get("minimum_seconds_max"),
        data.get("increment_seconds_max"),
        tiers,
        p,
    )


def load_profiles(directory: Path | str | None = None) -> dict[str, Profile]:
    """Every profile in ``directory`` (default config/profiles), by name."""
    d = Path(directory) if directory else PROFILES_DIR
    out = {}
    for f in sorted(d.glob("*.toml")):
        prof = load_profile(f)
        if prof.name != f.stem:
            raise ProfileError(f"{f}: name {prof.name!r} differs from the file name")
        out[prof.name] = prof
    return out


def _per_minute(fraction: Fraction) -> str:
    micros = -(-fraction.numerator // fraction.denominator)
    return format_money(micros) + "/min"


def _line_classes(destination: str, f: Facility) -> set[JurisdictionClass]:
    """The capped classes a line's calls may fall in, seen from facility ``f``."""
    if not is_prefix(destination):
        return {JurisdictionClass(destination)}
    digits = destination[1:]
    if not digits.startswith("1"):
        return {JurisdictionClass.INTERNATIONAL}
    if len(digits) < 4:
        return set(CAPPED_ORDER)
    state = state_of_npa(digits[1:4])
    if state is None:
        return {JurisdictionClass.INTERNATIONAL}
    if state != f.state:
        return {JurisdictionClass.INTERSTATE}
    return {JurisdictionClass.LOCAL, JurisdictionClass.INTRASTATE}


def check(
    profile: Profile, f: Facility, tariff: Tariff, version: TariffVersion | None = None
) -> list[Violation]:
    """Every violation of ``profile`` by one version (default: all versions) of ``tariff``."""
    tier = profile.tier_for(f)
    out: list[Violation] = []
    for v in (version,) if version is not None else tariff.versions:
        out += _check_version(profile, tier, f, tariff, v)
    return out


def _check_version(
    profile: Profile, tier: Tier, f: Facility, tariff: Tariff, v: TariffVersion
) -> list[Violation]:
    out: list[Violation] = []

    def bad(
        line: str, fld: str, value: str, cap: str, message: str, group: int | None = None
    ) -> None:
        out.append(Violation(profile.name, v.number, line, fld, value, cap, message, group))

    for line in v.lines:
        capped = _line_classes(line.destination, f) & profile.jurisdictions
        if not capped:
            continue
        cap = tier.cap(line.payment)
        cap_text = format_money(cap) + "/min"
        for k, g in enumerate(line.groups):
            rate = Fraction(g.price_micros * 60, g.per_seconds)
            if rate > cap:
                bad(
                    line.name,
                    "price",
                    _per_minute(rate),
                    cap_text,
                    f"from second {g.from_second}: above the {tier.name} cap",
                    k,
                )
            if (
                profile.increment_seconds_max is not None
                and g.increment > profile.increment_seconds_max
            ):
                bad(
                    line.name,
                    "increment",
                    f"{g.increment}s",
                    f"{profile.increment_seconds_max}s",
                    "billing blocks longer than allowed charge for time not used",
                    k,
                )
        if not profile.connect_fee_allowed and line.connect_micros > 0:
            bad(
                line.name,
                "connect_fee",
                format_money(line.connect_micros),
                "0",
                "no per-call or connect charges",
            )
        if (
            profile.minimum_seconds_max is not None
            and line.minimum_seconds > profile.minimum_seconds_max
        ):
            bad(
                line.name,
                "minimum_seconds",
                f"{line.minimum_seconds}s",
                f"{profile.minimum_seconds_max}s",
                "a minimum charge longer than allowed is a per-call charge",
            )
    if not profile.fees_allowed:
        for s in v.surcharges:
            if s.kind is SurchargeKind.FEE:
                bad(
                    s.name,
                    "kind",
                    "fee",
                    "taxes only",
                    "ancillary fees are not allowed; taxes pass through without markup",
                )
    if not out:  # the compared call catches what the per-line checks let through
        _check_compared_call(profile, tier, tariff, v, bad)
    return out


def _check_compared_call(
    profile: Profile,
    tier: Tier,
    tariff: Tariff,
    v: TariffVersion,
    bad: Callable[..., None],
) -> None:
    """A 15-minute call started at every band start of the version's first week must cost at
    most 15 minutes at the cap (this catches rounding and minimums the per-line checks allow)."""
    starts = _band_instants(tariff, v)
    for klass in CAPPED_ORDER:
        if klass not in profile.jurisdictions:
            continue
        for pay in CALL_PAYMENTS:
            limit = tier.cap(pay) * COMPARED_SECONDS // 60
            worst = None
            for at in starts:
                try:
                    p = price(tariff, klass, pay, at, COMPARED_SECONDS)
                except RatingRefusal:
                    continue
                if worst is None or p.call_micros > worst.call_micros:
                    worst = p
            if worst is not None and worst.call_micros > limit:
                bad(
                    worst.line,
                    "15-minute call",
                    f"{klass.value}/{pay.value} {format_money(worst.call_micros)}",
                    format_money(limit),
                    "a 15-minute call costs more than 15 minutes at the cap",
                )


def _band_instants(tariff: Tariff, v: TariffVersion) -> list[datetime]:
    """Local band starts (and midnights) over the week after ``v`` takes effect, while in force."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tariff.time_zone)
    later = [w.effective_from for w in tariff.versions if w.effective_from > v.effective_from]
    until = min(later) if later else v.effective_from + timedelta(days=8)
    first = v.effective_from.astimezone(zone).date()
    starts = sorted({line.band.start for line in v.lines})
    out = [v.effective_from]
    for day in range(8):
        date = first + timedelta(days=day)
        for s in starts:
            local = datetime(
                date.year, date.month, date.day, s // 3600, s // 60 % 60, s % 60, tzinfo=zone
            )
            at = local.astimezone(v.effective_from.tzinfo)
            if v.effective_from <= at < until:
                out.append(at)
    return out


def fifteen_minute_prices(
    tariff: Tariff, at: datetime
) -> dict[tuple[JurisdictionClass, PaymentType], object]:
    """The price of a 15-minute call starting at ``at`` per capped class and payment type: a
    `Price`, or the refusal (e.g. UnauthorizedDestination) when the tariff does not cover it."""
    out: dict[tuple[JurisdictionClass, PaymentType], object] = {}
    for klass in CAPPED_ORDER:
        for pay in CALL_PAYMENTS:
            try:
                out[(klass, pay)] = price(tariff, klass, pay, at, COMPARED_SECONDS)
            except RatingRefusal as e:
                out[(klass, pay)] = e
    return out
