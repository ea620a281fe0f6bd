"""A tariff prepared for pricing: which line prices a destination at any instant, and until when.

Both pricers (one call in `pricing`, arrays of calls in `bulk`) walk a call the same way: at call
second ``pos`` they `locate` the version, the line and the instant the answer may next change (the
next band change or local midnight, the next version, the next UTC-offset change of the facility's
clock), price up to there, and go on. This module holds the one definition of that walk's tables:

* versions by effective instant (a later version number wins a tie);
* per version, a *selector* for each (destination, payment type) that has lines. A call resolves
  to the most specific one: the longest matching E.164 prefix, then its jurisdiction class; for each
  destination the call's own payment type first, then ``any``. Classes refused by default
  (toll-free, premium, ...) are matched only by a line of that exact class, never by a prefix;
* per selector, a *week table*: sorted week-seconds (Monday 00:00 local = 0) where the chosen line
  changes, with every local midnight included, so a call is split at band changes and at midnight.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from rating.clock import FAR_FUTURE_US, US, LocalClock, clock_for, to_micros
from rating.jurisdiction import REFUSED_BY_DEFAULT, JurisdictionClass
from rating.tariff import (SECONDS_PER_DAY, Line, PaymentType, Surcharge, Tariff, TariffVersion,
                           is_prefix)

__all__ = ["CompiledTariff", "compiled", "WEEK", "LineRates"]

WEEK = 7 * SECONDS_PER_DAY
RESOLVE_CACHE_MAX = 100_000          # destinations remembered per version before forgetting all
_ANY = PaymentType.ANY


@dataclass(frozen=True)
class LineRates:
    """A line's numbers laid out for fast pricing (parallel tuples, one entry per rate group)."""
    line: Line
    version: int                      # version number, for spans
    starts: tuple[int, ...]
    ends: tuple[int, ...]             # start of the next group, or a huge number for the last
    prices: tuple[int, ...]
    pers: tuple[int, ...]
    increments: tuple[int, ...]


@dataclass
class WeekTable:
    starts: list[int]                 # week-seconds where the chosen line changes (first is 0)
    ends: list[int]                   # the next such week-second (WEEK for the last)
    lines: list[int]                  # global line id chosen from starts[i]


@dataclass
class CompiledVersion:
    index: int
    version: TariffVersion
    start_us: int
    next_start_us: int
    table_base: int                                   # global id of this version's first table
    class_tables: dict[tuple[str, PaymentType], int]  # (class, payment) -> global table id
    prefix_tables: dict[str, dict[PaymentType, int]]  # prefix digits -> payment -> table id
    prefix_lengths: tuple[int, ...]                   # longest first
    selectors: list[tuple[str, PaymentType]]          # table id - table_base -> its selector
    _cache: dict = field(default_factory=dict)

    def resolve(self, kind: JurisdictionClass, digits: str, pay: PaymentType) -> int:
        """Global week-table id for this destination and payment type, or -1 if none covers it."""
        key = (kind, digits, pay)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = -1
        if kind not in REFUSED_BY_DEFAULT:
            for n in self.prefix_lengths:
                if n <= len(digits):
                    pays = self.prefix_tables.get(digits[:n])
                    if pays is not None:
                        found = pays.get(pay, pays.get(_ANY, -1))
                        if found >= 0:
                            break
        if found < 0:
            found = self.class_tables.get((kind.value, pay),
                                          self.class_tables.get((kind.value, _ANY), -1))
        if len(self._cache) >= RESOLVE_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found

    def surcharges_for(self, kind: JurisdictionClass, digits: str,
                       pay: PaymentType) -> tuple[Surcharge, ...]:
        return tuple(s for s in self.version.surcharges if surcharge_applies(s, kind, digits, pay))


def surcharge_applies(s: Surcharge, kind: JurisdictionClass, digits: str, pay: PaymentType) -> bool:
    """A tax or fee applies to every matching destination (not only the most specific)."""
    if s.payment is not _ANY and s.payment is not pay:
        return False
    if s.destination == "*":
        return True
    if is_prefix(s.destination):
        return kind not in REFUSED_BY_DEFAULT and digits.startswith(s.destination[1:])
    return s.destination == kind.value


def _week_table(lines: list[tuple[int, Line]]) -> WeekTable:
    starts: list[int] = []
    chosen: list[int] = []
    for day in range(7):
        today = [(gid, l) for gid, l in lines if l.band.on(day)]
        previous = None
        for t in sorted({l.band.start for _, l in today}):
            active = [(l.band.weight, l.band.start, gid) for gid, l in today if l.band.start <= t]
            if not active:          # cannot happen in a validated version (00:00 is covered)
                continue
            best = max(active)[2]
            if best != previous or t == 0:
                starts.append(day * SECONDS_PER_DAY + t)
                chosen.append(best)
                previous = best
    ends = starts[1:] + [WEEK]
    return WeekTable(starts, ends, chosen)


class CompiledTariff:
    """Everything `locate` needs, built once per `Tariff` (see `compiled`)."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.clock: LocalClock = clock_for(tariff.time_zone)
        self.lines: list[LineRates] = []
        self.tables: list[WeekTable] = []
        self.versions: list[CompiledVersion] = []
        self.starts_us: list[int] = [to_micros(v.effective_from) for v in tariff.versions]
        for i, v in enumerate(tariff.versions):
            nxt = self.starts_us[i + 1] if i + 1 < len(tariff.versions) else FAR_FUTURE_US
            self.versions.append(self._compile_version(i, v, nxt))

    def _compile_version(self, index: int, v: TariffVersion, next_start_us: int) -> CompiledVersion:
        by_selector: dict[tuple[str, PaymentType], list[tuple[int, Line]]] = {}
        for line in v.lines:
            gid = len(self.lines)
            starts = tuple(g.from_second for g in line.groups)
            self.lines.append(LineRates(
                line, v.number, starts, starts[1:] + (FAR_FUTURE_US,),
                tuple(g.price_micros for g in line.groups), tuple(g.per_seconds for g in line.groups),
                tuple(g.increment for g in line.groups)))
            by_selector.setdefault((line.destination, line.payment), []).append((gid, line))
        base = len(self.tables)
        class_tables: dict[tuple[str, PaymentType], int] = {}
        prefix_tables: dict[str, dict[PaymentType, int]] = {}
        selectors = []
        for selector, lines in by_selector.items():
            tid = len(self.tables)
            self.tables.append(_week_table(lines))
            selectors.append(selector)
            dest, pay = selector
            if is_prefix(dest):
                prefix_tables.setdefault(dest[1:], {})[pay] = tid
            else:
                class_tables[selector] = tid
        lengths = tuple(sorted({len(p) for p in prefix_tables}, reverse=True))
        return CompiledVersion(index, v, self.starts_us[index], next_start_us, base, class_tables,
                               prefix_tables, lengths, selectors)

    def version_index(self, us: int) -> int:
        return bisect.bisect_right(self.starts_us, us) - 1

    def locate(self, table_id: int, us: int) -> tuple[int, int]:
        """The line a selector chooses at instant ``us``, and the instant that may next change:
        the next change of the week table (band or midnight) or of the clock's UTC offset. The
        caller also stops at the next version."""
        offset, offset_change_us = self.clock.offset_at(us)
        local = us // US + offset
        day = local // SECONDS_PER_DAY
        week_second = (day + 3) % 7 * SECONDS_PER_DAY + (local - day * SECONDS_PER_DAY)
        table = self.tables[table_id]
        i = bisect.bisect_right(table.starts, week_second) - 1
        end_us = (local - week_second + table.ends[i] - offset) * US
        return table.lines[i], min(end_us, offset_change_us)


def compiled(tariff: Tariff) -> CompiledTariff:
    """The tariff's compiled form, built on first use and kept on the (immutable) tariff."""
    c = tariff._compiled
    if c is None:
        c = CompiledTariff(tariff)
        object.__setattr__(tariff, "_compiled", c)
    return c
