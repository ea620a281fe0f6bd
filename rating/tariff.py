"""The tariff model: versions of rate lines, rate groups, time bands, taxes and fees, validated.

A `Tariff` is every version of one facility's rate table (agency-wide defaults fill in before the
facility's first version). A `TariffVersion` takes effect at an instant and holds `Line`s and
`Surcharge`s (taxes and fees). A line is chosen by destination, payment type and time band; its
`RateGroup`s price the call by call second. Money is integer micro-units; times of day are seconds
after local midnight in the facility's time zone; days of week are a bit mask (bit 0 = Monday).

Every version is validated on construction (`problems_of`); an invalid one raises `InvalidTariff`
listing all problems, so pricing never sees a tariff with a hole, a tie or a misaligned group.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rating.calendar import HOLIDAYS, Holiday, expand, spec_problem, specs_meet
from rating.errors import InvalidTariff, Problem
from rating.import_codes import DeckErrorCode as C
from rating.jurisdiction import JurisdictionClass

__all__ = [
    "PaymentType",
    "Rounding",
    "SurchargeKind",
    "Band",
    "RateGroup",
    "Line",
    "Surcharge",
    "TariffVersion",
    "Tariff",
    "ALL_DAYS",
    "DAY_NAMES",
    "SECONDS_PER_DAY",
    "ANY_DESTINATION",
    "problems_of",
    "is_prefix",
    "CapAction",
    "Holiday",
    "FALLBACK_DEPTH_MAX",
    "AGENCY_PLAN",
    "format_time",
    "destination_label",
    "PRICEABLE_CLASSES",
]
SECONDS_PER_DAY = 86_400
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = 0b111_1111
ANY_DESTINATION = "*"  # surcharges only: every destination
PREFIX_PATTERN = re.compile(r"^\+[1-9][0-9]{0,14}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/()+-]{0,63}$")
WEIGHT_MAX = 1_000_000
FALLBACK_DEPTH_MAX = 3  # a plan, its parent, theirs: at most this many parents deep
AGENCY_PLAN = "agency"  # how a fallback names the agency-wide default tariff
# Classes a line may price. Invalid and unknown numbers can never be priced.
PRICEABLE_CLASSES = tuple(
    c for c in JurisdictionClass if c not in (JurisdictionClass.INVALID, JurisdictionClass.UNKNOWN)
)
_CLASS_VALUES = {c.value for c in PRICEABLE_CLASSES}


class PaymentType(enum.Enum):
    """Who pays. The numbers are stable codes used by the bulk pricer; never renumber."""

    PREPAID = "prepaid"  # AdvancePay / prepaid collect: the called party's prepaid account
    DEBIT = "debit"  # inmate debit: the inmate's own account
    COLLECT = "collect"  # billed to the called party afterwards
    ANY = "any"  # tariff lines only: every payment type without a line of its own

    @property
    def code(self) -> int:
        return _PAYMENT_CODES[self]


_PAYMENT_CODES = {p: i for i, p in enumerate(PaymentType)}
PAYMENT_BY_CODE = tuple(PaymentType)


class Rounding(enum.Enum):
    """How the call total is rounded to ``decimals`` places of the currency."""

    NONE = "none"
    UP = "up"
    HALF_UP = "half-up"
    DOWN = "down"


class CapAction(enum.Enum):
    """What a line's ``cost_cap`` does when a call reaches it."""

    FREE = "free"  # charge nothing more: the call goes on at no further charge
    STOP = "stop"  # the call ends there: authorization turns the cap into its longest duration


class SurchargeKind(enum.Enum):
    TAX = "tax"  # levied by a government, passed through as levied
    FEE = "fee"  # the provider's own fee, itemized (regulatory profiles may forbid it)


@dataclass(frozen=True)
class Band:
    """When a line applies: from ``start`` (seconds after local midnight) to the end of each day in
    ``days``, or, for a dated band, of each local date its ``dates`` name (`rating.calendar`:
    `2025-12-25`, `12-25` every year, `holidays`). Among bands active at an instant the higher
    weight wins, ties go to the later start."""

    days: int = ALL_DAYS
    start: int = 0
    weight: int = 0
    dates: tuple[str, ...] = ()

    def on(self, weekday: int) -> bool:
        """Whether this band applies on every such weekday (a dated band never does)."""
        return not self.dates and bool(self.days >> weekday & 1)


@dataclass(frozen=True)
class RateGroup:
    """From call second ``from_second``: ``price_micros`` per ``per_seconds`` seconds, billed in
    increments of ``increment`` seconds (the last one rounded up)."""

    from_second: int
    price_micros: int
    per_seconds: int
    increment: int


@dataclass(frozen=True)
class Line:
    name: str
    destination: str  # a JurisdictionClass value, or an E.164 prefix "+44"
    payment: PaymentType
    band: Band
    groups: tuple[RateGroup, ...]
    connect_micros: int = 0  # charged once, on the first slice of a call that lasted > 0 s
    minimum_seconds: int = 0  # a shorter call (> 0 s) is billed as this long
    cost_cap_micros: int | None = None  # the call charge never exceeds this
    rounding: Rounding = Rounding.NONE  # of the call total
    decimals: int = 6
    cap_action: CapAction = CapAction.FREE  # what reaching cost_cap does
    closed: bool = False  # not callable in this band: no rate groups, refused

    def group_at(self, second: int) -> RateGroup:
        found = self.groups[0]
        for g in self.groups:
            if g.from_second <= second:
                found = g
        return found


@dataclass(frozen=True)
class Surcharge:
    """A tax or fee line, itemized apart from the call charge: ``percent_ppm`` parts per million
    of the call charge, or ``price_micros`` per ``per_seconds`` of billed time."""

    kind: SurchargeKind
    name: str
    destination: str = ANY_DESTINATION
    payment: PaymentType = PaymentType.ANY
    percent_ppm: int | None = None
    price_micros: int | None = None
    per_seconds: int | None = None


def format_time(seconds: int) -> str:
    """Seconds after local midnight as the deck writes them: 19:00, or 07:30:15."""
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{sec:02d}" if sec else "")


def is_prefix(destination: str) -> bool:
    return destination.startswith("+")


def destination_label(destination: str) -> str:
    return destination


def _problem(
    out: list[Problem],
    line: str,
    fld: str,
    value: object,
    message: str,
    group: int | None = None,
    *,
    code: C,
    other: str | None = None,
) -> None:
    out.append(
        Problem(line, fld, "" if value is None else str(value), message, group, code.value, other)
    )


def _line_problems(line: Line, out: list[Problem]) -> None:
    n = line.name
    if not NAME_PATTERN.match(line.name or ""):
        _problem(
            out,
            n,
            "line",
            line.name,
            "a name of letters, digits and ' _.:/()+-' (at most 64)",
            code=C.BAD_NAME,
        )
    d = line.destination
    if not (d in _CLASS_VALUES or PREFIX_PATTERN.match(d)):
        _problem(
            out,
            n,
            "destination",
            d,
            "not a jurisdiction class ("
            + ", ".join(sorted(_CLASS_VALUES))
            + ") nor an E.164 prefix such as +44",
            code=C.UNKNOWN_DESTINATION,
        )
    b = line.band
    if not 0 < b.days <= ALL_DAYS:
        _problem(out, n, "days", b.days, "no day of the week", code=C.BAD_DAYS)
    elif b.dates and b.days != ALL_DAYS:
        _problem(
            out,
            n,
            "days",
            b.days,
            "a dated band applies on its dates: leave days blank",
            code=C.NOT_USED,
        )
    for spec in b.dates:
        problem = spec_problem(spec)
        if problem:
            _problem(out, n, "dates", spec, problem, code=C.BAD_DATE)
    if not 0 <= b.start < SECONDS_PER_DAY:
        _problem(out, n, "start", b.start, "not a time of day", code=C.BAD_TIME)
    if not -WEIGHT_MAX <= b.weight <= WEIGHT_MAX:
        _problem(
            out,
            n,
            "weight",
            b.weight,
            f"must be between -{WEIGHT_MAX} and {WEIGHT_MAX}",
            code=C.OUT_OF_RANGE,
        )
    if line.closed:
        if line.groups:
            _problem(out, n, "price", "", "a closed band has no rates", code=C.NOT_USED)
        for fld, value, default in (
            ("connect_fee", line.connect_micros, 0),
            ("minimum_seconds", line.minimum_seconds, 0),
            ("cost_cap", line.cost_cap_micros, None),
            ("rounding", line.rounding, Rounding.NONE),
            ("cap_action", line.cap_action, CapAction.FREE),
        ):
            if value != default:
                _problem(
                    out,
                    n,
                    fld,
                    getattr(value, "value", value),
                    "not used on a closed band: leave blank",
                    code=C.NOT_USED,
                )
    elif not line.groups:
        _problem(out, n, "from_second", "", "a line needs at least one rate group", code=C.REQUIRED)
    if line.cap_action is CapAction.STOP and line.cost_cap_micros is None:
        _problem(
            out,
            n,
            "cost_cap",
            "",
            "cap_action stop needs a cost_cap: the amount where the call stops",
            code=C.REQUIRED,
        )
    for i, g in enumerate(line.groups):
        if g.price_micros < 0:
            _problem(out, n, "price", g.price_micros, "must not be negative", i, code=C.NEGATIVE)
        if g.per_seconds <= 0:
            _problem(
                out, n, "per_seconds", g.per_seconds, "must be at least 1", i, code=C.OUT_OF_RANGE
            )
        if g.increment <= 0:
            _problem(out, n, "increment", g.increment, "must be at least 1", i, code=C.OUT_OF_RANGE)
        if i == 0 and g.from_second != 0:
            _problem(
                out,
                n,
                "from_second",
                g.from_second,
                "the first rate group must start at second 0",
                i,
                code=C.GROUP_ORDER,
            )
        if i > 0:
            prev = line.groups[i - 1]
            if g.from_second <= prev.from_second:
                _problem(
                    out,
                    n,
                    "from_second",
                    g.from_second,
                    f"rate group starts must increase (previous starts at {prev.from_second})",
                    i,
                    code=C.GROUP_ORDER,
                )
            elif prev.increment > 0 and (g.from_second - prev.from_second) % prev.increment:
                _problem(
                    out,
                    n,
                    "from_second",
                    g.from_second,
                    f"must be a whole number of the previous group's {prev.increment} s "
                    f"increments after its start ({prev.from_second})",
                    i,
                    code=C.GROUP_ORDER,
                )
    if line.connect_micros < 0:
        _problem(
            out, n, "connect_fee", line.connect_micros, "must not be negative", code=C.NEGATIVE
        )
    if line.minimum_seconds < 0:
        _problem(
            out, n, "minimum_seconds", line.minimum_seconds, "must not be negative", code=C.NEGATIVE
        )
    if line.cost_cap_micros is not None and line.cost_cap_micros < 0:
        _problem(out, n, "cost_cap", line.cost_cap_micros, "must not be negative", code=C.NEGATIVE)
    if not 0 <= line.decimals <= 6:
        _problem(out, n, "decimals", line.decimals, "must be between 0 and 6", code=C.OUT_OF_RANGE)
    elif line.rounding is Rounding.NONE and line.decimals != 6:
        _problem(
            out, n, "decimals", line.decimals, "given without a rounding method", code=C.NOT_USED
        )


def _surcharge_problems(s: Surcharge, out: list[Problem]) -> None:
    n = s.name
    if not NAME_PATTERN.match(s.name or ""):
        _problem(
            out,
            n,
            "line",
            s.name,
            "a name of letters, digits and ' _.:/()+-' (at most 64)",
            code=C.BAD_NAME,
        )
    d = s.destination
    if not (d == ANY_DESTINATION or d in _CLASS_VALUES or PREFIX_PATTERN.match(d)):
        _problem(
            out,
            n,
            "destination",
            d,
            "not '*', a jurisdiction class nor an E.164 prefix",
            code=C.UNKNOWN_DESTINATION,
        )
    per_time = s.price_micros is not None or s.per_seconds is not None
    if (s.percent_ppm is None) == (not per_time):
        _problem(
            out,
            n,
            "percent",
            s.percent_ppm,
            "give either a percent or a price per_seconds, not both or neither",
            code=C.REQUIRED,
        )
    if s.percent_ppm is not None and not 0 <= s.percent_ppm <= 1_000_000:
        _problem(
            out,
            n,
            "percent",
            s.percent_ppm,
            "must be between 0 and 100 percent",
            code=C.OUT_OF_RANGE,
        )
    if per_time:
        if s.price_micros is None or s.price_micros < 0:
            _problem(
                out, n, "price", s.price_micros, "must be given and not negative", code=C.NEGATIVE
            )
        if s.per_seconds is None or s.per_seconds <= 0:
            _problem(
                out,
                n,
                "per_seconds",
                s.per_seconds,
                "must be given and at least 1",
                code=C.OUT_OF_RANGE,
            )


def _holiday_problems(holidays: tuple[Holiday, ...], out: list[Problem]) -> None:
    seen: set[str] = set()
    for h in holidays:
        if not NAME_PATTERN.match(h.name or ""):
            _problem(
                out,
                h.name,
                "line",
                h.name,
                "a name of letters, digits and ' _.:/()+-' (at most 64)",
                code=C.BAD_NAME,
            )
        if h.name in seen:
            _problem(
                out, h.name, "line", h.name, "two holidays have this name", code=C.DUPLICATE_NAME
            )
        seen.add(h.name)
        if not h.dates:
            _problem(out, h.name, "dates", "", "a holiday needs its date", code=C.REQUIRED)
        for spec in h.dates:
            problem = spec_problem(spec, allow_holidays=False)
            if problem:
                _problem(out, h.name, "dates", spec, problem, code=C.BAD_DATE)


def _tie(a: Line, b: Line, holidays: tuple[Holiday, ...]) -> bool:
    """Two bands of one selector that can be active from the same instant with equal weight."""
    if a.band.start != b.band.start or a.band.weight != b.band.weight:
        return False
    if not a.band.dates and not b.band.dates:
        return bool(a.band.days & b.band.days)
    if a.band.dates and b.band.dates:
        return specs_meet(expand(a.band.dates, holidays), expand(b.band.dates, holidays))
    return True  # a dated band meets a weekly one on some year's date


def problems_of(
    lines: tuple[Line, ...],
    surcharges: tuple[Surcharge, ...],
    holidays: tuple[Holiday, ...] = (),
    *,
    fallback: bool = False,
) -> list[Problem]:
    """Everything wrong with a version's lines, surcharges and holiday list (empty when it can be
    priced). A version with a ``fallback`` plan may have no lines of its own."""
    out: list[Problem] = []
    if not lines and not fallback:
        _problem(
            out, "(tariff)", "line", "", "a tariff needs at least one rate line", code=C.EMPTY_DECK
        )
    seen: set[str] = set()
    for line in lines:
        if line.name in seen:
            _problem(
                out, line.name, "line", line.name, "two lines have this name", code=C.DUPLICATE_NAME
            )
        seen.add(line.name)
        _line_problems(line, out)
        if HOLIDAYS in line.band.dates and not holidays:
            _problem(
                out,
                line.name,
                "dates",
                HOLIDAYS,
                "the deck lists no holidays (rows of kind holiday)",
                code=C.UNKNOWN_HOLIDAYS,
            )
    _holiday_problems(holidays, out)
    # Every (destination, payment) group must price (or close) every instant of every weekday,
    # unambiguously; dated bands only add to a day.
    by_selector: dict[tuple[str, PaymentType], list[Line]] = {}
    for line in lines:
        by_selector.setdefault((line.destination, line.payment), []).append(line)
    for (dest, pay), group in by_selector.items():
        for day in range(7):
            if not any(ln.band.on(day) and ln.band.start == 0 for ln in group):
                _problem(
                    out,
                    group[0].name,
                    "days",
                    DAY_NAMES[day],
                    f"{dest} paid {pay.value} has no price from 00:00 on {DAY_NAMES[day]} "
                    "(no band of this destination and payment type starts at 00:00 that day;"
                    " a closed band says it is not callable)",
                    code=C.MISSING_BAND,
                )
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if _tie(a, b, holidays):
                    _problem(
                        out,
                        b.name,
                        "start",
                        format_time(b.band.start),
                        f"overlaps line {a.name!r}: same destination, payment type, days, "
                        f"start ({format_time(b.band.start)}) and weight ({b.band.weight}), "
                        "so neither wins",
                        code=C.OVERLAP,
                        other=a.name,
                    )
    seen = set()
    for s in surcharges:
        if s.name in seen or s.name in {ln.name for ln in lines}:
            _problem(out, s.name, "line", s.name, "two lines have this name", code=C.DUPLICATE_NAME)
        seen.add(s.name)
        _surcharge_problems(s, out)
    return out


@dataclass(frozen=True)
class TariffVersion:
    """One version of a rate table, in force from ``effective_from`` until the next version."""

    number: int
    effective_from: datetime  # aware; compared in UTC
    lines: tuple[Line, ...]
    surcharges: tuple[Surcharge, ...] = ()
    facility_id: str | None = None  # None: an agency-wide default version
    holidays: tuple[Holiday, ...] = ()
    parent: str | None = None  # fallback plan: AGENCY_PLAN or a facility id

    def __post_init__(self) -> None:
        if self.effective_from.tzinfo is None:
            raise ValueError("effective_from must be an aware datetime")
        object.__setattr__(self, "effective_from", self.effective_from.astimezone(UTC))
        problems = problems_of(
            self.lines, self.surcharges, self.holidays, fallback=self.parent is not None
        )
        if problems:
            raise InvalidTariff(problems)


@dataclass(frozen=True)
class Tariff:
    """Every version that prices one facility's calls, in the facility's time zone."""

    facility_id: str | None
    time_zone: str
    versions: tuple[TariffVersion, ...]
    # The fallback plans its versions reach (AGENCY_PLAN or a facility id -> that plan's versions),
    # read in this tariff's time zone.
    plans: tuple[tuple[str, tuple[TariffVersion, ...]], ...] = ()
    _compiled: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def order(vs: tuple[TariffVersion, ...]) -> tuple[TariffVersion, ...]:
            return tuple(sorted(vs, key=lambda v: (v.effective_from, v.number)))

        object.__setattr__(self, "versions", order(self.versions))
        object.__setattr__(self, "plans", tuple((k, order(vs)) for k, vs in self.plans))

    def version_at(self, at: datetime) -> TariffVersion | None:
        found = None
        for v in self.versions:
            if v.effective_from <= at:
                found = v
        return found
