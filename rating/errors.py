"""Rating's refusals, named after the domain condition, each carrying what a person needs to act.

One family, as asyncpg has its own: every error rating raises is a `RatingError` that says
`what` went wrong (the condition), `where` (the line, field, facility or destination) and the
offending `value`; ``str(e)`` is the sentence for people. Within it: refusals of a call or a deck
(`RatingRefusal` and its subclasses), unusable facilities, profiles and decks (which also derive
from ValueError, as their callers caught them before), and our own bugs (`InternalRatingError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import EngineError

__all__ = [
    "RatingError",
    "RatingRefusal",
    "UnauthorizedDestination",
    "DestinationClosed",
    "NoTariffInForce",
    "Problem",
    "InvalidTariff",
    "RateCapExceeded",
    "InternalRatingError",
]


class RatingError(EngineError):
    """Base of rating's errors: `what`, `where` and `value` as the module says."""


class RatingRefusal(RatingError):
    """A call or a tariff that rating refuses to price; never priced at zero instead."""


class UnauthorizedDestination(RatingRefusal):
    """No line of the tariff in force covers this destination and payment type."""

    def __init__(self, destination: str, payment: str, at: str) -> None:
        super().__init__(
            f"unauthorized destination: no tariff line covers {destination} paid {payment} at {at}",
            what="no tariff line covers this destination",
            where=f"paid {payment} at {at}",
            value=destination,
        )
        self.destination = destination
        self.payment = payment
        self.at = at


class DestinationClosed(RatingRefusal):
    """The line in force for this destination at the call's start is a closed band: the deck says
    the destination is not callable at this hour."""

    def __init__(self, destination: str, payment: str, at: str, line: str) -> None:
        super().__init__(
            f"destination closed: {destination} paid {payment} is not callable at "
            f"{at} (closed band {line!r})",
            what="destination closed",
            where=f"line {line}",
            value=destination,
        )
        self.destination = destination
        self.payment = payment
        self.at = at
        self.line = line


class NoTariffInForce(RatingRefusal):
    """The call starts before the first version of the tariff takes effect (or there is none)."""

    def __init__(self, facility_id: str | None, at: str) -> None:
        who = facility_id or "the agency"
        super().__init__(
            f"no tariff of {who} is in force at {at}",
            what="no tariff in force",
            where=who,
            value=at,
        )
        self.facility_id = facility_id
        self.at = at


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a tariff: which line (or tax/fee), which field, its value, and why.

    ``group`` is the index of the rate group when the problem is in one, else None; ``code`` a
    `DeckErrorCode` value; ``other`` the name of the other line of a conflict (an overlap)."""

    line: str
    field: str
    value: str
    message: str
    group: int | None = None
    code: str = ""
    other: str | None = None

    def __str__(self) -> str:
        where = self.line + (f" group {self.group + 1}" if self.group is not None else "")
        return f"{where}: {self.field}={self.value!r}: {self.message}"


class InvalidTariff(RatingRefusal):
    """A tariff version that cannot be priced consistently; lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("invalid tariff: " + "; ".join(str(p) for p in problems))
        self.problems = list(problems)


class InternalRatingError(RatingError, AssertionError):
    """Rating broke one of its own invariants: a bug, not bad input."""


class RateCapExceeded(RatingRefusal):
    """A tariff breaks its facility's regulatory profile; ``violations`` lists each one."""

    def __init__(self, violations: list[Any]) -> None:
        super().__init__(
            f"{len(violations)} rate-cap violation(s); nothing was imported:\n  "
            + "\n  ".join(str(v) for v in violations)
        )
        self.violations = list(violations)
