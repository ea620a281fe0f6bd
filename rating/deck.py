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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledger.money import AMOUNT_MAX, AmountInvalid, format_amount, parse_amount
from rating.errors import Problem, RatingError
from rating.import_codes import DeckErrorCode as C
from rating.calendar import Holiday, parse_spec
from rating.tariff import (ALL_DAYS, ANY_DESTINATION, DAY_NAMES, Band, CapAction, Line,
                           AGENCY_PLAN, PaymentType, RateGroup, Rounding, Surcharge,
                           SurchargeKind, format_time,
                           problems_of)

__all__ = ["COLUMNS", "REQUIRED", "RowError", "DeckError", "Deck", "parse", "write",
           "parse_days", "format_days", "parse_money", "format_money", "ROWS_MAX", "ERRORS_MAX"]

COLUMNS = ("kind", "line", "destination", "payment", "days", "start", "weight", "from_second",
           "price", "per_seconds", "increment", "connect_fee", "minimum_seconds", "cost_cap",
           "rounding", "decimals", "percent", "cap_action", "dates", "parent", "facility")
REQUIRED = ("kind", "line", "destination", "payment")
WRITTEN = COLUMNS[:17]                       # always written; the others only when used
OPTIONAL_WRITTEN = ("cap_action", "dates", "parent")   # `facility` is accepted on input only
LINE_FIELDS = ("destination", "payment", "days", "start", "weight", "connect_fee",
               "minimum_seconds", "cost_cap", "rounding", "decimals", "cap_action", "dates")
RATE_ONLY = ("days", "start", "weight", "from_second", "increment", "connect_fee",
             "minimum_seconds", "cost_cap", "rounding", "decimals", "cap_action", "dates")
KINDS = ("rate", "closed", "tax", "fee", "holiday", "fallback")
ROWS_MAX = 100_000
PERCENT = re.compile(r"^(\d{1,3})(?:\.(\d{1,4}))?$")
INTEGER = re.compile(r"^[+-]?\d{1,12}$")
TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


ERRORS_MAX = 200                             # errors kept (and shown); the total is counted


@dataclass(frozen=True)
class RowError:
    """One error in a deck: file line (1 = header; None = not in the file), column, value, why,
    and its stable `DeckErrorCode` value."""
    line: int | None
    column: str
    value: str
    message: str
    code: str = C.BAD_NUMBER.value

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "deck"
        return f"{where}, column {self.column}, value {self.value!r}: {self.message} [{self.code}]"


def _order(e: RowError) -> tuple[int, int, str]:
    return (e.line or 0, COLUMNS.index(e.column) if e.column in COLUMNS else 99, e.code)


class DeckError(RatingError, ValueError):
    """A deck that cannot be imported: ``errors`` lists the first `ERRORS_MAX` problems found, in
    file order, and ``total`` counts all of them."""

    def __init__(self, errors: list[RowError], total: int | None = None) -> None:
        ordered = sorted(errors, key=_order)
        self.total = len(ordered) if total is None else total
        self.errors = ordered[:ERRORS_MAX]
        shown = "\n  ".join(str(e) for e in self.errors)
        more = (f"\n  ... and {self.total - len(self.errors)} more"
                if self.total > len(self.errors) else "")
        first = self.errors[0] if self.errors else None
        super().__init__(f"{self.total} error(s) in the rate deck; nothing was imported:"
                         f"\n  {shown}{more}",
                         what=first.message if first else "rate deck refused",
                         where=(f"line {first.line}, column {first.column}"
                                if first and first.line is not None else "deck"),
                         value=first.value if first else None)


@dataclass(frozen=True)
class Deck:
    lines: tuple[Line, ...]
    surcharges: tuple[Surcharge, ...]
    facility: str | None = None      # the value of the optional `facility` column, if given
    holidays: tuple[Holiday, ...] = ()
    parent: str | None = None        # the fallback plan: `agency` or a facility id
    parent_row: int | None = field(default=None, compare=False, repr=False)
    # Where each line and tax or fee came from: name -> (first row, row of each rate group).
    rows: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict, compare=False,
                                                          repr=False)


class _Bad(Exception):
    def __init__(self, message: str, code: C = C.BAD_NUMBER) -> None:
        self.message = message
        self.code = code


# -- cells ------------------------------------------------------------------------------------
def parse_money(text: str) -> int:
    """A deck's amount ('0.21', '$0.21') -> micro-units: at most 6 decimals, not negative."""
    try:
        return parse_amount(text, allow_zero=True)
    except AmountInvalid as e:
        code = {"negative": C.NEGATIVE, "too_large": C.OUT_OF_RANGE}.get(e.code, C.BAD_NUMBER)
        if code is C.NEGATIVE:
            raise _Bad("negative value: must be 0 or more", code) from None
        if code is C.OUT_OF_RANGE:
            raise _Bad(f"out of range: at most {format_amount(AMOUNT_MAX)}", code) from None
        raise _Bad(f"bad number: {e.reason}" if e.code == "decimals" else
                   "bad number: an amount such as 0.21 (at most 6 decimals)") from None


def format_money(micros: int) -> str:
    """The canonical deck spelling: '0.21', '3' (no trailing zeros)."""
    return format_amount(micros, places=0)


def _percent(text: str) -> int:
    t = text.strip().rstrip("%").strip()
    if t.startswith("-"):
        raise _Bad("negative value: must be 0 or more", C.NEGATIVE)
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
        raise _Bad("negative value: must be 0 or more", C.NEGATIVE) if v < 0 else \
            _Bad(f"must be at least {minimum}", C.OUT_OF_RANGE)
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
                       "or all", C.BAD_DAYS)
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
        raise _Bad("bad time: HH:MM or HH:MM:SS in the facility's time zone", C.BAD_TIME)
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise _Bad("bad time: from 00:00 to 23:59:59", C.BAD_TIME)
    return h * 3600 + mi * 60 + s


def _payment(text: str) -> PaymentType:
    try:
        return PaymentType(text.strip().lower())
    except ValueError:
        raise _Bad("unknown payment type: prepaid, debit, collect or any",
                   C.UNKNOWN_PAYMENT) from None


def _rounding(text: str) -> Rounding:
    try:
        return Rounding(text.strip().lower() or "none")
    except ValueError:
        raise _Bad("unknown rounding: up, half-up, down or none", C.UNKNOWN_ROUNDING) from None


def _cap_action(text: str) -> CapAction:
    try:
        return CapAction(text.strip().lower())
    except ValueError:
        raise _Bad("unknown cap_action: free (charge nothing more) or stop (end the call)",
                   C.OUT_OF_RANGE) from None


def parse_dates(text: str) -> tuple[str, ...]:
    """'12-25, 2025-01-01 holidays' -> ('12-25', '2025-01-01', 'holidays'): a list of dates."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    out = []
    for p in parts:
        try:
            out.append(parse_spec(p))
        except ValueError as e:
            raise _Bad(f"bad date {p!r}: {e}", C.BAD_DATE) from None
    if not out:
        raise _Bad("bad date: a date such as 2025-12-25, 12-25 (every year) or holidays",
                   C.BAD_DATE)
    return tuple(dict.fromkeys(out))


def _parent(text: str) -> str:
    t = text.strip()
    if t.lower() == AGENCY_PLAN:
        return AGENCY_PLAN
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", t):
        raise _Bad("a fallback plan: agency, or a facility id", C.BAD_NAME)
    return t


def _destination(text: str) -> str:
    t = text.strip()
    return t if t.startswith("+") or t == ANY_DESTINATION else t.lower()


# -- reading ------------------------------------------------------------------------------------
@dataclass
class _LineDraft:
    name: str
    first_row: int
    fields: dict[str, Any]             # None where the first row's cell did not parse
    raw: dict[str, str]
    groups: list[RateGroup]
    group_rows: list[int]
    failed: bool = False               # some row of this line had an error: not checked further
    closed: bool = False               # a closed band (one row, no rates)


def _decode(data: bytes | str, errors: list[RowError]) -> tuple[str, set[int]]:
    """The deck as text, and the file lines holding bytes that are not UTF-8 (each reported with
    its line, the deck column it falls in and the byte's column in the line)."""
    if isinstance(data, str):
        return data.lstrip("\ufeff"), set()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), set()
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="surrogateescape")
    bad_lines: set[int] = set()
    header = _cells(text.split("\n", 1)[0])
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
            continue
        except UnicodeDecodeError as e:
            at, end = e.start, e.end
        bad_lines.add(number)
        cells = _cells(raw.decode("utf-8", errors="surrogateescape"))
        column, seen = "kind", 0
        for i, c in enumerate(cells):
            seen += len(c.encode("utf-8", errors="surrogateescape")) + 1
            if seen > at:
                column = (header[i].strip().lower() if number > 1 and i < len(header)
                          else "") or f"#{i + 1}"
                break
        errors.append(RowError(number, column, raw[at:end].decode("latin-1"),
                               f"not UTF-8: byte 0x{raw[at]:02x} at column {at + 1} of the line; "
                               "save the deck as UTF-8 (CSV UTF-8 in a spreadsheet)",
                               C.NOT_UTF8.value))
    return text, bad_lines


def _cells(line: str) -> list[str]:
    """One physical line's cells, to say which column a bad character falls in. Never raises:
    where the csv module refuses the line, commas are a good enough guide."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return line.split(",")


def _column_at(header: list[str], number: int, line: str, at: int) -> str:
    """The deck column (a header name, or #n) holding character `at` of file line `number`."""
    i = max(len(_cells(line[:at])) - 1, 0)
    return (header[i].strip().lower() if number > 1 and i < len(header) else "") or f"#{i + 1}"


_BARE_CR = re.compile(r"\r(?!\n)")


def _bare_carriage_returns(text: str, errors: list[RowError]) -> str:
    """Report every carriage return not followed by a line feed (old Mac line ends, or a stray
    control character in a cell) at its line and column, and drop it so the rest of the deck is
    still checked (line numbers unchanged). CSV allows line ends only as CRLF or LF here: the
    csv module would refuse such a row with a bare exception, and guessing that a lone CR ends
    a line would silently merge or split rows of a damaged file."""
    if "\r" not in text or not _BARE_CR.search(text):
        return text
    lines = text.split("\n")
    header = _cells(lines[0].replace("\r", ""))
    for number, raw in enumerate(lines, start=1):
        m = _BARE_CR.search(raw + "\n")
        if m is None or m.start() >= len(raw):
            continue
        at = m.start()
        errors.append(RowError(number, _column_at(header, number, raw, at), "\\r",
                               f"a carriage return without a line feed at column {at + 1} of "
                               "the line: save the deck with ordinary line ends (CRLF or LF)",
                               C.BARE_CARRIAGE_RETURN.value))
    return _BARE_CR.sub("", text)


def _rows(text: str, errors: list[RowError]) -> list[tuple[int, list[str]]]:
    """(file line where the row starts, cells) for every row; a quoted cell may span lines."""
    out: list[tuple[int, list[str]]] = []
    text = _bare_carriage_returns(text, errors)
    if "\x00" in text:
        for number, raw in enumerate(text.split("\n"), start=1):
            if "\x00" in raw:
                errors.append(RowError(number, "kind", "\\x00", f"a NUL byte at column "
                                       f"{raw.index(chr(0)) + 1}: not a text file",
                                       C.MALFORMED_CSV.value))
        text = text.replace("\x00", "")
    reader = csv.reader(io.StringIO(text))
    first = 1
    try:
        for row in reader:
            out.append((first, row))
            first = reader.line_num + 1
            if len(out) > ROWS_MAX + 1:
                break
    except csv.Error as e:
        # What is left after the checks above: a cell over the csv module's size limit. The
        # reader cannot resume inside a broken row, so the deck is reported from here on.
        errors.append(RowError(first, "kind", "", f"not readable as CSV from this line on: {e}",
                               C.MALFORMED_CSV.value))
    return out


def parse(data: str | bytes, *, facility: str | None = None,
          known_facilities: frozenset[str] | set[str] | None = None) -> Deck:
    """Parse and validate a deck (text, or bytes in any encoding: what is not UTF-8 is an error).
    Raises DeckError listing every error in the deck at once (nothing is half-read).

    The optional `facility` column, where filled in, must name a facility in ``known_facilities``
    (when given) and the ``facility`` being imported (when given), the same on every row."""
    errors: list[RowError] = []
    text, bad_lines = _decode(data, errors)
    rows = _rows(text, errors)
    if not rows or not any(c.strip() for c in rows[0][1]):
        raise DeckError(errors + [RowError(1, "kind", "", "the deck is empty: the first line must "
                                           "name the columns (" + ", ".join(COLUMNS) + ")",
                                           C.EMPTY_DECK.value)])
    header_line, header_cells = rows[0]
    header = [c.strip().lower() for c in header_cells]
    columns: dict[str, int] = {}                # known column -> its position (first one)
    for i, name in enumerate(header):
        if header_line in bad_lines:
            break
        if name not in COLUMNS:
            errors.append(RowError(1, name or f"#{i + 1}", header_cells[i],
                                   "unknown column (known: " + ", ".join(COLUMNS) + ")",
                                   C.UNKNOWN_COLUMN.value))
        elif name in columns:
            errors.append(RowError(1, name, header_cells[i], "column given twice",
                                   C.DUPLICATE_COLUMN.value))
        else:
            columns[name] = i
    for name in REQUIRED:
        if name not in columns:
            errors.append(RowError(1, name, "", "required column is missing",
                                   C.MISSING_COLUMN.value))
    if "kind" not in columns:
        raise DeckError(errors)
    if len(rows) > ROWS_MAX + 1:
        raise DeckError(errors + [RowError(rows[ROWS_MAX + 1][0], "kind", "",
                                           f"more than {ROWS_MAX} rows", C.TOO_MANY_ROWS.value)])

    drafts: dict[str, _LineDraft] = {}
    surcharges: list[tuple[int, dict[str, str], Surcharge]] = []
    missing: dict[str, tuple[str, int]] = {}     # column absent from the header -> (kind, row)
    failed_names: set[str] = set()
    holidays: list[tuple[int, Holiday]] = []
    parent: tuple[int, str] | None = None
    unsure = False                               # a row failed before its selector was known
    facility_seen: str | None = None
    for n, row in rows[1:]:
        if not any(c.strip() for c in row):
            continue
        if n in bad_lines:
            unsure = True
            continue
        if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
            errors.append(RowError(n, header[-1], row[len(header)],
                                   f"more values than columns ({len(row)} > {len(header)})",
                                   C.EXTRA_VALUES.value))
            unsure = True
            continue
        cells = {h: (row[i].strip() if i < len(row) else "") for h, i in columns.items()}
        kind = cells.get("kind", "").lower()
        before = len(errors)

        def cell(name: str, convert: Callable[[str], Any], default: Any = None, *,
                 required: bool = False) -> Any:
            if name not in columns:
                if required:
                    missing.setdefault(name, (kind, n))
                return default
            value = cells[name]
            if value == "":
                if required:
                    errors.append(RowError(n, name, "", "required: must not be blank",
                                           C.REQUIRED.value))
                return default
            try:
                return convert(value)
            except _Bad as e:
                errors.append(RowError(n, name, value, e.message, e.code.value))
                return default

        fac = cells.get("facility", "")
        if fac:
            if known_facilities is not None and fac not in known_facilities:
                errors.append(RowError(n, "facility", fac, "unknown facility",
                                       C.UNKNOWN_FACILITY.value))
            elif facility is not None and fac != facility:
                errors.append(RowError(n, "facility", fac, f"this deck is being imported for "
                                       f"facility {facility!r}", C.WRONG_FACILITY.value))
            elif facility_seen is not None and fac != facility_seen:
                errors.append(RowError(n, "facility", fac, "another facility than earlier rows "
                                       f"({facility_seen!r})", C.WRONG_FACILITY.value))
            facility_seen = facility_seen or fac
        name = cells.get("line", "")
        if not name and "line" in columns:
            errors.append(RowError(n, "line", "", "required: the name of the line",
                                   C.REQUIRED.value))
        if kind in ("rate", "closed"):
            _rate_row(n, kind, cells, cell, name, drafts, errors)
            if len(errors) != before:
                failed_names.add(name)
                if name not in drafts:
                    unsure = True
        elif kind in ("holiday", "fallback"):
            used = ("dates",) if kind == "holiday" else ("parent",)
            for col in COLUMNS[2:-1]:
                if col not in used and cells.get(col, ""):
                    errors.append(RowError(n, col, cells[col], f"not used on {kind} rows: "
                                           "leave blank", C.NOT_USED.value))
            if kind == "holiday":
                dates = cell("dates", parse_dates, required=True)
                if dates and "holidays" in dates:
                    errors.append(RowError(n, "dates", cells["dates"], "a holiday is a date "
                                           "(2025-12-25) or a date every year (12-25)",
                                           C.BAD_DATE.value))
                elif name and dates:
                    if any(h.name == name for _, h in holidays) or name in drafts:
                        errors.append(RowError(n, "line", name, "a holiday of this name is "
                                               "already given above", C.DUPLICATE_NAME.value))
                    else:
                        holidays.append((n, Holiday(name, dates)))
            else:
                plan = cell("parent", _parent, required=True)
                if parent is not None and plan:
                    errors.append(RowError(n, "parent", cells["parent"], "a deck falls back to "
                                           f"one plan, given at line {parent[0]}",
                                           C.DUPLICATE_NAME.value))
                elif plan and name:
                    parent = (n, plan)
        elif kind in ("tax", "fee"):
            for col in RATE_ONLY:
                if cells.get(col, ""):
                    errors.append(RowError(n, col, cells[col], f"not used on {kind} rows: "
                                           "leave blank", C.NOT_USED.value))
            dest = cell("destination", _destination, required=True)
            pay = cell("payment", _payment, PaymentType.ANY, required=True)
            pct = cell("percent", _percent)
            price = cell("price", parse_money)
            per = cell("per_seconds", lambda v: _integer(v, 1))
            if len(errors) == before and name:
                if any(s.name == name for _, _, s in surcharges):
                    errors.append(RowError(n, "line", name, "a tax or fee of this name is "
                                           "already given above", C.DUPLICATE_NAME.value))
                else:
                    surcharges.append((n, cells, Surcharge(SurchargeKind(kind), name, dest, pay,
                                                           pct, price, per)))
        else:
            errors.append(RowError(n, "kind", cells.get("kind", ""),
                                   "unknown kind: " + ", ".join(KINDS), C.UNKNOWN_KIND.value))
            unsure = True
    for col, (kind, first) in missing.items():
        errors.append(RowError(1, col, "", f"required column is missing (needed by {kind} rows, "
                               f"the first at line {first})", C.MISSING_COLUMN.value))
    if missing:
        unsure = True

    # Check the lines that read cleanly together, so an error in one row does not hide the band
    # gaps, overlaps and group order errors of the others. A day without a price is reported
    # only for destinations whose rows all read (a failed row may have been the missing band).
    lines, tainted = [], set()
    for d in drafts.values():
        f = d.fields
        if (d.failed or d.name in failed_names or missing
                or any(f[k] is None for k in LINE_FIELDS if k not in ("cost_cap", "dates"))):
            tainted.add((f.get("destination"), f.get("payment")))
            continue
        lines.append(Line(d.name, f["destination"], f["payment"],
                          Band(f["days"], f["start"], f["weight"], f["dates"] or ()),
                          tuple(d.groups), f["connect_fee"], f["minimum_seconds"], f["cost_cap"],
                          f["rounding"], f["decimals"], f["cap_action"], d.closed))
    where = {d.name: (d.first_row, tuple(d.group_rows)) for d in drafts.values()}
    where.update({s.name: (n, (n,)) for n, _, s in surcharges})
    where.update({h.name: (n, (n,)) for n, h in holidays})
    deck = Deck(tuple(lines), tuple(s for _, _, s in surcharges), facility_seen,
                holidays=tuple(h for _, h in holidays), parent=parent[1] if parent else None,
                rows=where, parent_row=parent[0] if parent else None)
    for p in problems_of(deck.lines, deck.surcharges, deck.holidays,
                         fallback=deck.parent is not None):
        if p.code == C.MISSING_BAND.value:
            line = next(l for l in lines if l.name == p.line)
            if unsure or (line.destination, line.payment) in tainted:
                continue
        if p.code == C.EMPTY_DECK.value and (errors or drafts):
            continue
        errors.append(_locate_problem(p, drafts, surcharges))
    if errors:
        raise DeckError(errors)
    return deck


def _rate_row(n: int, kind: str, cells: dict[str, str], cell: Callable[..., Any], name: str,
              drafts: dict[str, _LineDraft], errors: list[RowError]) -> None:
    closed = kind == "closed"
    unused = ("percent",) + (("from_second", "price", "per_seconds", "increment", "connect_fee",
                              "minimum_seconds", "cost_cap", "rounding", "decimals", "cap_action")
                             if closed else ())
    for col in unused:
        if cells.get(col, ""):
            errors.append(RowError(n, col, cells[col], f"not used on {kind} rows: leave blank"
                                   + (" (a percent belongs on a tax or fee row)"
                                      if col == "percent" else ""), C.NOT_USED.value))
    draft = drafts.get(name)
    before = len(errors)
    first = draft is None
    if closed and draft is not None:
        errors.append(RowError(n, "line", name, f"a closed band is one row; line {name!r} is "
                               f"already given at line {draft.first_row}",
                               C.DUPLICATE_NAME.value))
        return
    if draft is not None and draft.closed:
        errors.append(RowError(n, "line", name, f"line {name!r} is a closed band (line "
                               f"{draft.first_row}): it has no rates", C.DUPLICATE_NAME.value))
        return
    raw = {k: cells.get(k, "") for k in LINE_FIELDS}
    dated = bool(cells.get("dates", ""))
    if dated and cells.get("days", ""):
        errors.append(RowError(n, "days", cells["days"], "a band applies on days of the week or "
                               "on dates: leave days blank on a dated band", C.NOT_USED.value))
    fields = {
        "destination": cell("destination", _destination, required=first),
        "payment": cell("payment", _payment, required=first),
        "days": cell("days", parse_days, required=first and not dated),
        "start": cell("start", _time, required=first),
        "weight": cell("weight", _weight),
        "connect_fee": cell("connect_fee", parse_money),
        "minimum_seconds": cell("minimum_seconds", _integer),
        "cost_cap": cell("cost_cap", parse_money),
        "rounding": cell("rounding", _rounding),
        "decimals": cell("decimals", lambda v: _integer(v)),
        "cap_action": cell("cap_action", _cap_action),
        "dates": cell("dates", parse_dates),
    }
    if dated:
        fields["days"] = ALL_DAYS
    group = None if closed else RateGroup(
        cell("from_second", _integer, 0, required=True),
        cell("price", parse_money, 0, required=True),
        cell("per_seconds", lambda v: _integer(v, 1), 1, required=True),
        cell("increment", lambda v: _integer(v, 1), 1, required=True))
    if not name:
        return
    bad = {k for k in fields if raw[k] and fields[k] is None}     # given but unreadable
    if draft is None:
        rounding = fields["rounding"] or Rounding.NONE
        decimals = fields["decimals"]
        if decimals is None and "decimals" not in bad:
            if rounding is not Rounding.NONE:
                errors.append(RowError(n, "decimals", "", f"required with rounding "
                                       f"{rounding.value}: how many decimals to round to (0-6)",
                                       C.REQUIRED.value))
            decimals = 6
        defaults = {"weight": 0, "connect_fee": 0, "minimum_seconds": 0, "rounding": rounding,
                    "decimals": decimals, "cap_action": CapAction.FREE}
        resolved = {k: (None if k in bad else v if v is not None else defaults.get(k))
                    for k, v in fields.items()}
        drafts[name] = _LineDraft(name, n, resolved, dict(cells), [group] if group else [], [n],
                                  failed=len(errors) != before, closed=closed)
        return
    for k, v in fields.items():
        if k == "days" and dated and not raw["days"]:
            continue
        if v is not None and draft.fields[k] is not None and v != draft.fields[k]:
            errors.append(RowError(n, k, cells[k], f"differs from the first row of line {name!r} "
                                   f"(line {draft.first_row}); leave blank or repeat it",
                                   C.CONTRADICTS_LINE.value))
    assert group is not None  # a closed band is one row: a second one was refused above
    draft.groups.append(group)
    draft.group_rows.append(n)
    if len(errors) != before:
        draft.failed = True


def _locate_problem(p: Problem, drafts: dict[str, _LineDraft],
                    surcharges: list[tuple[int, dict[str, str], Surcharge]]) -> RowError:
    column = p.field if p.field in COLUMNS else "line"
    d = drafts.get(p.line)
    message = p.message
    if p.other is not None and p.other in drafts:
        message = message.replace(f"line {p.other!r}", f"line {p.other!r} (line "
                                  f"{drafts[p.other].first_row})")
    if d is not None:
        row = d.group_rows[p.group] if p.group is not None else d.first_row
        if p.code == C.MISSING_BAND.value:
            return RowError(row, "days", d.raw.get("days", ""), message, p.code)
        if p.group is None and d.raw.get(column):
            return RowError(row, column, d.raw[column], message, p.code)
        return RowError(row, column, str(p.value), message, p.code)
    for n, cells, s in surcharges:
        if s.name == p.line:
            return RowError(n, column, cells.get(column, str(p.value)), message, p.code)
    return RowError(None, column, str(p.value), message, p.code)


# -- writing ------------------------------------------------------------------------------------
def write(lines: tuple[Line, ...], surcharges: tuple[Surcharge, ...],
          holidays: tuple[Holiday, ...] = (), parent: str | None = None) -> str:
    """The canonical CSV text of a version. Columns beyond the classic ones (`cap_action`,
    `dates`, `parent`) are written only when the version uses them, so older decks export as
    they always did."""
    extra = [c for c, used in (
        ("cap_action", any(l.cap_action is not CapAction.FREE for l in lines)),
        ("dates", bool(holidays) or any(l.band.dates for l in lines)),
        ("parent", parent is not None)) if used]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(list(WRITTEN) + extra)

    def row(values: list[str], **more: str) -> None:
        w.writerow(values + [more.get(c, "") for c in extra])

    for line in lines:
        b = line.band
        days = "" if b.dates else format_days(b.days)
        dates = {"dates": ",".join(b.dates)} if b.dates else {}
        if line.closed:
            row(["closed", line.name, line.destination, line.payment.value, days,
                 format_time(b.start), str(b.weight)] + [""] * 10, **dates)
            continue
        rounded = line.rounding is not Rounding.NONE
        action = ({"cap_action": line.cap_action.value}
                  if line.cap_action is not CapAction.FREE else {})
        for g in line.groups:
            row(["rate", line.name, line.destination, line.payment.value, days,
                 format_time(b.start), str(b.weight), str(g.from_second),
                 format_money(g.price_micros), str(g.per_seconds), str(g.increment),
                 format_money(line.connect_micros), str(line.minimum_seconds),
                 "" if line.cost_cap_micros is None else format_money(line.cost_cap_micros),
                 line.rounding.value if rounded else "", str(line.decimals) if rounded else "", ""],
                **dates, **action)
    for s in surcharges:
        row([s.kind.value, s.name, s.destination, s.payment.value, "", "", "", "",
             "" if s.price_micros is None else format_money(s.price_micros),
             "" if s.per_seconds is None else str(s.per_seconds), "", "", "", "", "", "",
             "" if s.percent_ppm is None else _format_percent(s.percent_ppm)])
    for h in holidays:
        row(["holiday", h.name] + [""] * 15, dates=",".join(h.dates))
    if parent is not None:
        row(["fallback", "fallback"] + [""] * 15, parent=parent)
    return out.getvalue()
