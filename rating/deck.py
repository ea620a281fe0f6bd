"""Rate decks: a tariff version as a CSV file, read with every error named and written canonically.

One row per rate group of a line (rows sharing a ``line`` name form one line, in file order) and
one row per tax or fee. docs/rates.md documents the columns. `parse` checks everything before
returning and collects every error it can find, each with its file line, column and value, so an
import applies all of a deck or nothing. `write` produces the canonical form: parse(write(x)) == x
and write(parse(write(x))) == write(x), byte for byte.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from rating.errors import Problem
from rating.tariff import (ALL_DAYS, ANY_DESTINATION, DAY_NAMES, Band, Line,
                           PaymentType, RateGroup, Rounding, Surcharge, SurchargeKind, problems_of)

__all__ = ["COLUMNS", "REQUIRED", "RowError", "DeckError", "Deck", "parse", "write",
           "parse_days", "format_days", "parse_money", "format_money", "ROWS_MAX"]

COLUMNS = ("kind", "line", "destination", "payment", "days", "start", "weight", "from_second",
           "price", "per_seconds", "increment", "connect_fee", "minimum_seconds", "cost_cap",
           "rounding", "decimals", "percent", "facility")
REQUIRED = ("kind", "line", "destination", "payment")
WRITTEN = COLUMNS[:-1]                       # `facility` is accepted on input only
LINE_FIELDS = ("destination", "payment", "days", "start", "weight", "connect_fee",
               "minimum_seconds", "cost_cap", "rounding", "decimals")
RATE_ONLY = ("days", "start", "weight", "from_second", "increment", "connect_fee",
             "minimum_seconds", "cost_cap", "rounding", "decimals")
ROWS_MAX = 100_000
MONEY = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")
PERCENT = re.compile(r"^(\d{1,3})(?:\.(\d{1,4}))?$")
INTEGER = re.compile(r"^[+-]?\d{1,12}$")
TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class RowError:
    """One error in a deck: file line (1 = header; None = not in the file), column, value, why."""
    line: int | None
    column: str
    value: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "deck"
        return f"{where}, column {self.column}, value {self.value!r}: {self.message}"


class DeckError(ValueError):
    """A deck that cannot be imported; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.line or 0, COLUMNS.index(e.column)
                                                    if e.column in COLUMNS else 99))
        shown = "\n  ".join(str(e) for e in self.errors[:50])
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(f"{len(self.errors)} error(s) in the rate deck; nothing was imported:"
                         f"\n  {shown}{more}")


@dataclass(frozen=True)
class Deck:
    lines: tuple[Line, ...]
    surcharges: tuple[Surcharge, ...]
    facility: str | None = None      # the value of the optional `facility` column, if given


class _Bad(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


# -- cells ------------------------------------------------------------------------------------
def parse_money(text: str) -> int:
    """'0.21' -> 210000 micro-units; at most 6 decimals, not negative."""
    t = text.strip().lstrip("$")
    if t.startswith("-"):
        raise _Bad("negative value: must be 0 or more")
    m = MONEY.match(t)
    if not m:
        raise _Bad("bad number: an amount such as 0.21 (at most 6 decimals)")
    return int(m.group(1)) * 1_000_000 + int((m.group(2) or "").ljust(6, "0"))


def format_money(micros: int) -> str:
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else str(whole)


def _percent(text: str) -> int:
    t = text.strip().rstrip("%").strip()
    if t.startswith("-"):
        raise _Bad("negative value: must be 0 or more")
    m = PERCENT.match(t)
    if not m:
        raise _Bad("bad number: a percent such as 5.5 (at most 4 decimals)")
    return int(m.group(1)) * 10_000 + int((m.group(2) or "").ljust(4, "0"))


def _format_percent(ppm: int) -> str:
    whole, frac = divmod(ppm, 10_000)
    return f"{whole}.{frac:04d}".rstrip("0").rstrip(".") if frac else str(whole)


def _integer(text: str, minimum: int = 0) -> int:
    t = text.strip()
    if not INTEGER.match(t):
        raise _Bad("bad number: a whole number")
    v = int(t)
    if v < minimum:
        raise _Bad("negative value: must be 0 or more" if minimum == 0 and v < 0
                   else f"must be at least {minimum}")
    return v


def _weight(text: str) -> int:
    t = text.strip()
    if not INTEGER.match(t):
        raise _Bad("bad number: a whole number (higher wins)")
    return int(t)


def parse_days(text: str) -> int:
    """'mon-fri', 'sat,sun', 'all', 'fri-mon' -> bit mask (bit 0 = Monday)."""
    t = text.strip().lower()
    if t in ("all", "*", "mon-sun"):
        return ALL_DAYS
    mask = 0
    for part in t.split(","):
        part = part.strip()
        ends = part.split("-")
        if len(ends) > 2 or any(e.strip() not in DAY_NAMES for e in ends):
            raise _Bad("bad days: names mon..sun, ranges such as mon-fri, lists such as sat,sun, "
                       "or all")
        a = DAY_NAMES.index(ends[0].strip())
        b = DAY_NAMES.index(ends[-1].strip())
        k = a
        while True:
            mask |= 1 << k
            if k == b:
                break
            k = (k + 1) % 7
    return mask


def format_days(mask: int) -> str:
    if mask == ALL_DAYS:
        return "all"
    runs, k = [], 0
    while k < 7:
        if mask >> k & 1:
            j = k
            while j + 1 < 7 and mask >> (j + 1) & 1:
                j += 1
            runs.append(DAY_NAMES[k] if j == k else f"{DAY_NAMES[k]}-{DAY_NAMES[j]}")
            k = j + 1
        else:
            k += 1
    return ",".join(runs)


def _time(text: str) -> int:
    m = TIME.match(text.strip())
    if not m:
        raise _Bad("bad time: HH:MM or HH:MM:SS in the facility's time zone")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise _Bad("bad time: from 00:00 to 23:59:59")
    return h * 3600 + mi * 60 + s


def _format_time(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


def _payment(text: str) -> PaymentType:
    try:
        return PaymentType(text.strip().lower())
    except ValueError:
        raise _Bad("unknown payment type: prepaid, debit, collect or any") from None


def _rounding(text: str) -> Rounding:
    try:
        return Rounding(text.strip().lower() or "none")
    except ValueError:
        raise _Bad("unknown rounding: up, half-up, down or none") from None


def _destination(text: str) -> str:
    t = text.strip()
    return t if t.startswith("+") or t == ANY_DESTINATION else t.lower()


# -- reading ------------------------------------------------------------------------------------
@dataclass
class _LineDraft:
    name: str
    first_row: int
    fields: dict[str, object]
    raw: dict[str, str]
    groups: list[RateGroup]
    group_rows: list[int]


def parse(text: str, *, facility: str | None = None,
          known_facilities: frozenset[str] | set[str] | None = None) -> Deck:
    """Parse and validate a deck. Raises DeckError listing every error (nothing is half-read).

    The optional `facility` column, where filled in, must name a facility in ``known_facilities``
    (when given) and the ``facility`` being imported (when given), the same on every row."""
    errors: list[RowError] = []
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows or not any(c.strip() for c in rows[0]):
        raise DeckError([RowError(1, "kind", "", "the deck is empty: the first line must name "
                                  "the columns (" + ", ".join(COLUMNS) + ")")])
    header = [c.strip().lower() for c in rows[0]]
    for i, name in enumerate(header):
        if name not in COLUMNS:
            errors.append(RowError(1, name or f"#{i + 1}", rows[0][i],
                                   "unknown column (known: " + ", ".join(COLUMNS) + ")"))
        elif header.index(name) != i:
            errors.append(RowError(1, name, rows[0][i], "column given twice"))
    for name in REQUIRED:
        if name not in header:
            errors.append(RowError(1, name, "", "required column is missing"))
    if errors:
        raise DeckError(errors)
    if len(rows) > ROWS_MAX + 1:
        raise DeckError([RowError(ROWS_MAX + 2, "kind", "", f"more than {ROWS_MAX} rows")])

    drafts: dict[str, _LineDraft] = {}
    surcharges: list[tuple[int, dict[str, str], Surcharge]] = []
    facility_seen: str | None = None
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
            errors.append(RowError(n, header[-1], row[len(header)],
                                   f"more values than columns ({len(row)} > {len(header)})"))
            continue
        cells = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        before = len(errors)

        def cell(name: str, convert, default=None, *, required=False):
            value = cells.get(name, "")
            if value == "":
                if required:
                    errors.append(RowError(n, name, "", "required: must not be blank"))
                return default
            try:
                return convert(value)
            except _Bad as e:
                errors.append(RowError(n, name, value, e.message))
                return default

        fac = cells.get("facility", "")
        if fac:
            if known_facilities is not None and fac not in known_facilities:
                errors.append(RowError(n, "facility", fac, "unknown facility"))
            elif facility is not None and fac != facility:
                errors.append(RowError(n, "facility", fac, f"this deck is being imported for "
                                       f"facility {facility!r}"))
            elif facility_seen is not None and fac != facility_seen:
                errors.append(RowError(n, "facility", fac,
                                       f"another facility than earlier rows ({facility_seen!r})"))
            facility_seen = facility_seen or fac
        kind = cells.get("kind", "").lower()
        name = cells.get("line", "")
        if not name:
            errors.append(RowError(n, "line", "", "required: the name of the line"))
        if kind == "rate":
            _rate_row(n, cells, cell, name, drafts, errors)
        elif kind in ("tax", "fee"):
            for col in RATE_ONLY:
                if cells.get(col, ""):
                    errors.append(RowError(n, col, cells[col], f"not used on {kind} rows: "
                                           "leave blank"))
            dest = cell("destination", _destination, required=True)
            pay = cell("payment", _payment, PaymentType.ANY, required=True)
            pct = cell("percent", _percent)
            price = cell("price", parse_money)
            per = cell("per_seconds", lambda v: _integer(v, 1))
            if len(errors) == before and name:
                if any(s.name == name for _, _, s in surcharges):
                    errors.append(RowError(n, "line", name, "a tax or fee of this name is "
                                           "already given above"))
                else:
                    surcharges.append((n, cells, Surcharge(SurchargeKind(kind), name, dest, pay,
                                                           pct, price, per)))
        else:
            errors.append(RowError(n, "kind", cells.get("kind", ""),
                                   "unknown kind: rate, tax or fee"))
    if errors:
        raise DeckError(errors)

    lines = []
    for d in drafts.values():
        f = d.fields
        lines.append(Line(d.name, f["destination"], f["payment"],
                          Band(f["days"], f["start"], f["weight"]), tuple(d.groups),
                          f["connect_fee"], f["minimum_seconds"], f["cost_cap"], f["rounding"],
                          f["decimals"]))
    deck = Deck(tuple(lines), tuple(s for _, _, s in surcharges), facility_seen)
    problems = problems_of(deck.lines, deck.surcharges)
    if problems:
        raise DeckError([_locate_problem(p, drafts, surcharges) for p in problems])
    return deck


def _rate_row(n: int, cells: dict[str, str], cell, name: str, drafts: dict[str, _LineDraft],
              errors: list[RowError]) -> None:
    if cells.get("percent", ""):
        errors.append(RowError(n, "percent", cells["percent"], "not used on rate rows: leave "
                               "blank (a percent belongs on a tax or fee row)"))
    draft = drafts.get(name)
    before = len(errors)
    fields = {
        "destination": cell("destination", _destination, required=draft is None),
        "payment": cell("payment", _payment, required=draft is None),
        "days": cell("days", parse_days, required=draft is None),
        "start": cell("start", _time, required=draft is None),
        "weight": cell("weight", _weight),
        "connect_fee": cell("connect_fee", parse_money),
        "minimum_seconds": cell("minimum_seconds", _integer),
        "cost_cap": cell("cost_cap", parse_money),
        "rounding": cell("rounding", _rounding),
        "decimals": cell("decimals", lambda v: _integer(v)),
    }
    group = RateGroup(cell("from_second", _integer, 0, required=True),
                      cell("price", parse_money, 0, required=True),
                      cell("per_seconds", lambda v: _integer(v, 1), 1, required=True),
                      cell("increment", lambda v: _integer(v, 1), 1, required=True))
    if len(errors) != before or not name:
        return
    if draft is None:
        rounding = fields["rounding"] or Rounding.NONE
        decimals = fields["decimals"]
        if decimals is None:
            if rounding is not Rounding.NONE:
                errors.append(RowError(n, "decimals", "", f"required with rounding "
                                       f"{rounding.value}: how many decimals to round to (0-6)"))
                return
            decimals = 6
        defaults = {"weight": 0, "connect_fee": 0, "minimum_seconds": 0, "rounding": rounding,
                    "decimals": decimals}
        resolved = {k: (v if v is not None else defaults.get(k)) for k, v in fields.items()}
        drafts[name] = _LineDraft(name, n, resolved, dict(cells), [group], [n])
        return
    for k, v in fields.items():
        if v is not None and v != draft.fields[k]:
            errors.append(RowError(n, k, cells[k], f"differs from the first row of line {name!r} "
                                   f"(line {draft.first_row}); leave blank or repeat it"))
    draft.groups.append(group)
    draft.group_rows.append(n)


def _locate_problem(p: Problem, drafts: dict[str, _LineDraft], surcharges) -> RowError:
    column = p.field if p.field in COLUMNS else "line"
    d = drafts.get(p.line)
    if d is not None:
        row = d.group_rows[p.group] if p.group is not None else d.first_row
        if p.field == "days" and "has no price" in p.message:
            return RowError(row, "days", d.raw.get("days", ""), p.message)
        return RowError(row, column, str(p.value), p.message)
    for n, cells, s in surcharges:
        if s.name == p.line:
            return RowError(n, column, cells.get(column, str(p.value)), p.message)
    return RowError(None, column, str(p.value), p.message)


# -- writing ------------------------------------------------------------------------------------
def write(lines: tuple[Line, ...], surcharges: tuple[Surcharge, ...]) -> str:
    """The canonical CSV text of a version's lines and surcharges."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(WRITTEN)
    for line in lines:
        b = line.band
        rounded = line.rounding is not Rounding.NONE
        for g in line.groups:
            w.writerow(["rate", line.name, line.destination, line.payment.value,
                        format_days(b.days), _format_time(b.start), str(b.weight),
                        str(g.from_second), format_money(g.price_micros), str(g.per_seconds),
                        str(g.increment), format_money(line.connect_micros),
                        str(line.minimum_seconds),
                        "" if line.cost_cap_micros is None else format_money(line.cost_cap_micros),
                        line.rounding.value if rounded else "",
                        str(line.decimals) if rounded else "", ""])
    for s in surcharges:
        w.writerow([s.kind.value, s.name, s.destination, s.payment.value, "", "", "", "",
                    "" if s.price_micros is None else format_money(s.price_micros),
                    "" if s.per_seconds is None else str(s.per_seconds), "", "", "", "", "", "",
                    "" if s.percent_ppm is None else _format_percent(s.percent_ppm)])
    return out.getvalue()

