"""Who may call whom, when, paid how, and for how long: a pure decision over prefetched facts.

The core reads everything a decision needs in one go (kiosk, inmate, contact, blocks, usage, the
number's class, schedule, the funding candidates and what each can afford), then `decide` runs the
checks as a ladder of early returns in the precedence order of `Deny`. No I/O here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ivr.denials import DenyReason

__all__ = ["Deny", "KioskFacts", "InmateFacts", "ContactFacts", "Usage", "Quota", "Funding",
           "Facts", "Allow", "Refusal", "decide"]


class Deny(enum.Enum):
    """Why the policy refuses a call, in precedence order (the first that applies is reported).
    Each value is its `ivr.denials.DenyReason`: the id on the wire, in the prompts and metrics."""
    KIOSK_UNKNOWN = DenyReason.KIOSK_UNKNOWN
    INMATE_SUSPENDED = DenyReason.INMATE_SUSPENDED
    INVALID_NUMBER = DenyReason.INVALID_NUMBER
    REFUSED_NUMBER_CLASS = DenyReason.REFUSED_NUMBER_CLASS
    BLOCKED = DenyReason.BLOCKED
    NOT_APPROVED = DenyReason.NOT_APPROVED
    OUTSIDE_CALLING_HOURS = DenyReason.OUTSIDE_CALLING_HOURS
    DESTINATION_CLOSED = DenyReason.DESTINATION_CLOSED   # the tariff's closed band
    QUOTA_USED = DenyReason.QUOTA_USED
    INSUFFICIENT_FUNDS = DenyReason.INSUFFICIENT_FUNDS


@dataclass(frozen=True)
class KioskFacts:
    id: str
    facility_id: str
    unit: str | None
    active: bool = True


@dataclass(frozen=True)
class InmateFacts:
    id: str
    facility_id: str
    status: str                 # active | suspended | released


@dataclass(frozen=True)
class ContactFacts:
    status: str                 # requested | approved | denied | removed
    privileged: bool = False


@dataclass(frozen=True)
class Usage:
    calls_today: int = 0
    seconds_today: int = 0
    calls_month: int = 0
    seconds_month: int = 0


@dataclass(frozen=True)
class Quota:
    calls_per_day: int | None = None
    minutes_per_day: int | None = None
    calls_per_month: int | None = None
    minutes_per_month: int | None = None


@dataclass(frozen=True)
class Funding:
    payment_type: str           # rating payment type: prepaid | debit
    account: str                # ledger account id
    affordable_seconds: int     # the longest call this account pays for now (rating's dry run)
    tariff_seconds: int | None = None   # the longest the tariff lets it last (None: no limit)
    tariff_limit: str = ""      # what sets tariff_seconds: ceiling (spending) | closure (hours)


@dataclass(frozen=True)
class Facts:
    kiosk: KioskFacts | None
    inmate: InmateFacts | None
    number_class: str           # rating jurisdiction class of the dialled number
    refused_classes: frozenset[str]
    blocked: bool
    contact: ContactFacts | None
    schedule_seconds_left: int
    facility_max_seconds: int
    quota: Quota = Quota()
    usage: Usage = Usage()
    funding: tuple[Funding, ...] = ()
    min_call_seconds: int = 60  # a call that cannot pay this long is refused up front
    destination_closed: bool = False   # the tariff closes this destination now, whoever pays


@dataclass(frozen=True)
class Allow:
    max_seconds: int
    privileged: bool
    funding: Funding | None     # None for a privileged (free) call
    limited_by: str             # facility | schedule | quota | funds | ceiling | closure
    allow: bool = field(default=True, init=False)


@dataclass(frozen=True)
class Refusal:
    reason: Deny
    allow: bool = field(default=False, init=False)


INVALID_CLASSES = frozenset({"invalid", "unknown"})


def _quota_seconds_left(q: Quota, u: Usage) -> int | None:
    left = [m * 60 - s for m, s in ((q.minutes_per_day, u.seconds_today),
                                    (q.minutes_per_month, u.seconds_month)) if m is not None]
    return min(left) if left else None


def decide(f: Facts) -> Allow | Refusal:
    if f.kiosk is None or not f.kiosk.active:
        return Refusal(Deny.KIOSK_UNKNOWN)
    if f.inmate is None or f.inmate.status != "active" or f.inmate.facility_id != f.kiosk.facility_id:
        return Refusal(Deny.INMATE_SUSPENDED)
    if f.number_class in INVALID_CLASSES:
        return Refusal(Deny.INVALID_NUMBER)
    if f.number_class in f.refused_classes:
        return Refusal(Deny.REFUSED_NUMBER_CLASS)
    if f.blocked:
        return Refusal(Deny.BLOCKED)
    if f.contact is None or f.contact.status != "approved":
        return Refusal(Deny.NOT_APPROVED)
    if f.schedule_seconds_left <= 0:
        return Refusal(Deny.OUTSIDE_CALLING_HOURS)
    if f.destination_closed and not f.contact.privileged:
        return Refusal(Deny.DESTINATION_CLOSED)
    q, u = f.quota, f.usage
    if ((q.calls_per_day is not None and u.calls_today >= q.calls_per_day)
            or (q.calls_per_month is not None and u.calls_month >= q.calls_per_month)):
        return Refusal(Deny.QUOTA_USED)
    quota_left = _quota_seconds_left(q, u)
    if quota_left is not None and quota_left <= 0:
        return Refusal(Deny.QUOTA_USED)

    limits = {"facility": f.facility_max_seconds, "schedule": f.schedule_seconds_left}
    if quota_left is not None:
        limits["quota"] = quota_left
    if f.contact.privileged:
        limited_by = min(limits, key=limits.__getitem__)
        return Allow(limits[limited_by], privileged=True, funding=None, limited_by=limited_by)

    # Funding candidates arrive in the configured order; the first that pays for a minimum call
    # wins. A richer later source does not jump the queue: the family chose to pay first.
    # The tariff's own limit (a spending ceiling that stops the call, the next closed band) is
    # a limit like the others: a call it keeps short is not refused for being short.
    for funding in f.funding:
        these = dict(limits)
        if funding.tariff_seconds is not None and funding.tariff_seconds <= 0:
            continue                    # the ceiling does not pay for one second
        if funding.tariff_seconds is not None:
            these[funding.tariff_limit or "ceiling"] = funding.tariff_seconds
        if funding.affordable_seconds >= min(f.min_call_seconds, min(these.values())):
            these["funds"] = funding.affordable_seconds
            limited_by = min(these, key=these.__getitem__)
            return Allow(these[limited_by], privileged=False, funding=funding,
                         limited_by=limited_by)
    return Refusal(Deny.INSUFFICIENT_FUNDS)
