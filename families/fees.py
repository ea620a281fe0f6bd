"""Ancillary fees by regulatory profile: what a payment or a statement may cost (pure, plus a loader).

A facility names a rating profile (config/profiles/<name>.toml); beside it, config/fees/<name>.toml
holds that profile's fee caps and refund period. Where the profile forbids ancillary fees
(`fees_allowed = false`, the 2024+ rules) every fee is zero whatever the operator configures;
elsewhere the operator's own fee is charged up to the cap, never above; a third party's fee is
passed through exactly, with no markup (invariant F3).
"""
from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from families.errors import FamilyError
from families.settings import FamilySettings, parse_amount

__all__ = ["Channel", "FeeSchedule", "FeeError", "Fee", "fee_for", "load_schedules",
           "SCHEDULES_DIR", "strictest"]

SCHEDULES_DIR = Path(__file__).resolve().parent.parent / "config" / "fees"
_KEYS = {"profile", "source", "automated_payment_max", "live_agent_max", "paper_statement_max",
         "third_party_passthrough", "inactivity_refund_days"}


class Channel(enum.StrEnum):
    """How a payment (or a statement) reaches the operator: each has its own fee rule."""
    AUTOMATED = "automated"            # web, app or IVR: no person involved
    LIVE_AGENT = "live_agent"          # a person takes the payment
    THIRD_PARTY = "third_party"        # a money-transmitter's own fee, passed through
    PAPER_STATEMENT = "paper_statement"
    ELECTRONIC_STATEMENT = "electronic_statement"


class FeeError(FamilyError, ValueError):
    """A fee schedule file is unusable, or a fee cannot be charged; names the file or field."""

    def __init__(self, message: str, field: str = "fee", code: str | None = None) -> None:
        super().__init__(field, message, code)


@dataclass(frozen=True)
class FeeSchedule:
    profile: str
    source: str
    fees_allowed: bool                 # from the rating profile
    automated_payment_max: int
    live_agent_max: int
    paper_statement_max: int
    third_party_passthrough: bool
    inactivity_refund_days: int


@dataclass(frozen=True)
class Fee:
    amount: int                        # micro-units, charged on top of the principal
    channel: Channel
    profile: str
    rule: str                          # why: "prohibited", "capped at 3.00", "pass-through", ...


def _fmt(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000 // 10_000:02d}"


def fee_for(schedule: FeeSchedule, channel: Channel, settings: FamilySettings, *,
            third_party_fee: int | None = None) -> Fee:
    """The fee of one payment or statement under `schedule` (invariant F3)."""
    channel = Channel(channel)
    if channel is Channel.ELECTRONIC_STATEMENT:
        return Fee(0, channel, schedule.profile, "electronic statements are free")
    if channel is Channel.THIRD_PARTY:
        if third_party_fee is None or isinstance(third_party_fee, bool) or third_party_fee < 0:
            raise FeeError("a third-party payment needs the third party's own fee (>= 0)",
                           "third_party_fee", "third_party.fee_missing")
        if not schedule.fees_allowed or not schedule.third_party_passthrough:
            if third_party_fee:
                raise FeeError(f"profile {schedule.profile} allows no ancillary fees: a third "
                               f"party's fee of {_fmt(third_party_fee)} cannot be passed on",
                               "third_party_fee", "third_party.fee_prohibited")
            return Fee(0, channel, schedule.profile, "prohibited")
        return Fee(third_party_fee, channel, schedule.profile, "third party's fee, no markup")
    if not schedule.fees_allowed:
        return Fee(0, channel, schedule.profile, "prohibited")
    own, cap = {Channel.AUTOMATED: (settings.automated_fee, schedule.automated_payment_max),
                Channel.LIVE_AGENT: (settings.live_agent_fee, schedule.live_agent_max),
                Channel.PAPER_STATEMENT: (settings.paper_statement_fee,
                                          schedule.paper_statement_max)}[channel]
    return Fee(min(own, cap), channel, schedule.profile, f"capped at {_fmt(cap)}")


def strictest(schedules: list[FeeSchedule]) -> FeeSchedule:
    """Of several profiles that could apply, the one kindest to the family: no fees before low
    caps, then the shortest refund period."""
    return min(schedules, key=lambda s: (s.fees_allowed, s.automated_payment_max,
                                         s.live_agent_max, s.paper_statement_max,
                                         s.inactivity_refund_days, s.profile))


def _money(path: Path, key: str, value: str) -> int:
    try:
        return parse_amount(value, field=key, allow_zero=True)
    except ValueError as e:
        raise FeeError(f"{path}: {e}") from None


def load_schedules(profiles: dict[str, Any], directory: Path | str | None = None) -> dict[str,
                   FeeSchedule]:
    """The fee schedule of every rating profile in `profiles` (name -> rating Profile). A profile
    that allows fees must have a schedule file; one that forbids them may omit it (no fees, 180
    days). A schedule that charges fees under a profile forbidding them is refused."""
    d = Path(directory) if directory else SCHEDULES_DIR
    out: dict[str, FeeSchedule] = {}
    for name, prof in profiles.items():
        path = d / f"{name}.toml"
        if not path.exists():
            if prof.fees_allowed:
                raise FeeError(f"{path}: profile {name} allows ancillary fees but has no fee "
                               "schedule (their caps)")
            out[name] = FeeSchedule(name, prof.source, False, 0, 0, 0, False, 180)
            continue
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise FeeError(f"{path}: not valid TOML: {e}") from None
        unknown = set(data) - _KEYS
        if unknown:
            raise FeeError(f"{path}: unknown key {sorted(unknown)[0]}")
        if data.get("profile") != name:
            raise FeeError(f"{path}: profile must be {name!r}, got {data.get('profile')!r}")
        days = data.get("inactivity_refund_days", 180)
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise FeeError(f"{path}: inactivity_refund_days must be a whole number >= 1")
        s = FeeSchedule(
            name, str(data.get("source", "")), prof.fees_allowed,
            _money(path, "automated_payment_max", data.get("automated_payment_max", "0")),
            _money(path, "live_agent_max", data.get("live_agent_max", "0")),
            _money(path, "paper_statement_max", data.get("paper_statement_max", "0")),
            bool(data.get("third_party_passthrough", False)), days)
        if not prof.fees_allowed and (s.automated_payment_max or s.live_agent_max
                                      or s.paper_statement_max or s.third_party_passthrough):
            raise FeeError(f"{path}: profile {name} forbids ancillary fees; its schedule must "
                           "charge none")
        out[name] = s
    return out
