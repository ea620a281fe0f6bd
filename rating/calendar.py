"""Calendar bands: which local dates a dated band applies on, as data both pricers share.

A dated band names dates instead of days of the week: a date (`2025-12-25`), a date that recurs
every year (`12-25`; `02-29` only in leap years) or `holidays`, the holiday list of the tariff
version. Dates are local dates at the facility. Both pricers ask the same question, "which dated
lines apply on local day D" (days counted from 1970-01-01), answered here from the specs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from rating.errors import RatingError

__all__ = [
    "HOLIDAYS",
    "Holiday",
    "parse_spec",
    "DateSpecInvalid",
    "spec_problem",
    "expand",
    "on_day",
    "days_between",
    "day_number",
    "date_of",
    "specs_meet",
    "weekday_of",
]

HOLIDAYS = "holidays"  # the spec naming the version's holiday list
DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
RECURRING = re.compile(r"^(\d{2})-(\d{2})$")
_EPOCH = date(1970, 1, 1).toordinal()
YEAR_MIN, YEAR_MAX = 1970, 2199


@dataclass(frozen=True)
class Holiday:
    """A day of the tariff's holiday list: a name and its dates (specs without `holidays`)."""

    name: str
    dates: tuple[str, ...]


def spec_problem(spec: str, *, allow_holidays: bool = True) -> str | None:
    """Why ``spec`` is not a date spec, or None when it is one."""
    if spec == HOLIDAYS:
        return (
            None
            if allow_holidays
            else "a holiday is a date (2025-12-25) or a recurring date (12-25), not `holidays`"
        )
    m = DATE.match(spec)
    if m:
        y, mo, d = (int(x) for x in m.groups())
        if not YEAR_MIN <= y <= YEAR_MAX:
            return f"a year from {YEAR_MIN} to {YEAR_MAX}"
        try:
            date(y, mo, d)
        except ValueError:
            return "not a date of the calendar"
        return None
    m = RECURRING.match(spec)
    if m:
        mo, d = (int(x) for x in m.groups())
        try:
            date(2000, mo, d)  # a leap year: 02-29 is a recurring date
        except ValueError:
            return "not a day of the year"
        return None
    return "a date such as 2025-12-25, a date every year such as 12-25, or holidays"


class DateSpecInvalid(RatingError, ValueError):
    """A date spec that names no day: `what` says which forms are accepted."""


def parse_spec(text: str) -> str:
    """The canonical form of one spec ('12-25', '2025-12-25', 'holidays'); DateSpecInvalid (a
    ValueError) if bad."""
    t = text.strip().lower()
    problem = spec_problem(t)
    if problem:
        raise DateSpecInvalid(problem, where="date spec", value=text)
    return t


def expand(specs: tuple[str, ...], holidays: tuple[Holiday, ...]) -> tuple[str, ...]:
    """The specs with `holidays` replaced by the dates of the holiday list."""
    out: list[str] = []
    for s in specs:
        if s == HOLIDAYS:
            out += [d for h in holidays for d in h.dates]
        else:
            out.append(s)
    return tuple(dict.fromkeys(out))


def day_number(d: date) -> int:
    return d.toordinal() - _EPOCH


def date_of(day: int) -> date:
    return date.fromordinal(day + _EPOCH)


def on_day(specs: tuple[str, ...], day: int) -> bool:
    """Whether expanded ``specs`` include local day ``day`` (days since 1970-01-01)."""
    d = date_of(day)
    full, recurring = d.isoformat(), d.isoformat()[5:]
    return any(s == full or s == recurring for s in specs)


def days_between(specs: tuple[str, ...], first: int, last: int) -> list[int]:
    """Every local day in [first, last] that expanded ``specs`` include, sorted."""
    out: set[int] = set()
    lo, hi = date_of(first), date_of(last)
    for s in specs:
        m = DATE.match(s)
        if m:
            n = day_number(date.fromisoformat(s))
            if first <= n <= last:
                out.add(n)
            continue
        recurring = RECURRING.match(s)
        assert recurring is not None  # specs are validated: a date or a recurring date
        mo, d = (int(x) for x in recurring.groups())
        for y in range(lo.year, hi.year + 1):
            try:
                n = day_number(date(y, mo, d))
            except ValueError:  # 02-29 in a common year
                continue
            if first <= n <= last:
                out.add(n)
    return sorted(out)


def specs_meet(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two expanded spec lists can name the same day."""
    for x in a:
        for y in b:
            if x == y or (DATE.match(x) and x[5:] == y) or (DATE.match(y) and y[5:] == x):
                return True
    return False


def weekday_of(day: int) -> int:
    """0 = Monday (1970-01-01 was a Thursday)."""
    return (day + 3) % 7
