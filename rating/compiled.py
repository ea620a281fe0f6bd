"""A tariff prepared for pricing: which line prices a destination at any instant, and until when.

Both pricers (one call in `pricing`, arrays of calls in `bulk`) walk a call the same way: at call
second ``pos`` they `locate` the version, the line and the instant the answer may next change (the
next band change or local midnight, the next version, the next UTC-offset change of the facility's
clock), price up to there, and go on. This module holds the one definition of that walk's tables:

* versions by effective instant (a later version number wins a tie);
* per version, a *selector* for each (destination, payment type) that has lines. A call resolves
  to the most specific one: the longest matching E.164 prefix, then its jurisdiction class; for each
  destination the call's own payment type first, then ``any``. Classes refused by default
  (toll-free, premium, n11, emergency) are matched only by a line of that exact class, never by
  a prefix; invalid and unknown numbers only by a prefix (a catch-all such as `+1`);
* per selector, a *week table*: sorted week-seconds (Monday 00:00 local = 0) where the chosen line
  changes, with every local midnight included, so a call is split at band changes and at midnight;
* per selector with dated bands (`rating.calendar`), a *day table* for each local date a dated band
  names: the weekly bands of that weekday and the dated bands of that date, decided by the same
  rule (higher weight, then later start). The week table answers on every other day.

A chosen line may be *closed* (the destination is not callable in that band): pricing refuses a
call that starts there, and billed time that runs into one is priced by the line before it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

from rating.calendar import Holiday, days_between, expand, on_day, weekday_of
from rating.clock import FAR_FUTURE_US, US, LocalClock, clock_for, to_micros
from rating.jurisdiction import NEVER_BY_PREFIX, JurisdictionClass
from rating.tariff import (
    FALLBACK_DEPTH_MAX,
    SECONDS_PER_DAY,
    Line,
    PaymentType,
    Surcharge,
    Tariff,
    TariffVersion,
    is_prefix,
)

__all__ = ["CompiledTariff", "compiled", "WEEK", "LineRates", "DayTable"]

WEEK = 7 * SECONDS_PER_DAY
RESOLVE_CACHE_MAX = 100_000  # destinations remembered per version before forgetting all
DAY_CACHE_MAX = 10_000  # day tables remembered per tariff before forgetting all
_ANY = PaymentType.ANY


@dataclass(frozen=True)
class LineRates:
    """A line's numbers laid out for fast pricing (parallel tuples, one entry per rate group)."""

    line: Line
    version: int  # version number, for spans
    starts: tuple[int, ...]
    ends: tuple[int, ...]  # start of the next group, or a huge number for the last
    prices: tuple[int, ...]
    pers: tuple[int, ...]
    increments: tuple[int, ...]
    closed: bool = False  # a closed band: not callable, no rates
    owner: TariffVersion | None = field(default=None, compare=False)  # whose taxes apply


@dataclass
class WeekTable:
    starts: list[int]  # week-seconds where the chosen line changes (first is 0)
    ends: list[int]  # the next such week-second (WEEK for the last)
    lines: list[int]  # global line id chosen from starts[i]
    weekly: list[tuple[int, Line]] = field(default_factory=list)
    dated: list[tuple[int, Line, tuple[str, ...]]] = field(default_factory=list)  # expanded


@dataclass(frozen=True)
class DayTable:
    """One special local date of one selector: day-seconds where the chosen line changes."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]  # the next start, SECONDS_PER_DAY for the last
    lines: tuple[int, ...]


def _choose(today: list[tuple[int, Line]], offset: int) -> tuple[list[int], list[int]]:
    """(starts, chosen line ids) over one day's bands, from 00:00, starts offset by ``offset``:
    the higher weight wins, on equal weight the later start (validation excludes other ties)."""
    starts: list[int] = []
    chosen: list[int] = []
    previous = None
    for t in sorted({ln.band.start for _, ln in today}):
        active = [(ln.band.weight, ln.band.start, gid) for gid, ln in today if ln.band.start <= t]
        if not active:  # cannot happen in a validated version (00:00 is covered)
            continue
        best = max(active)[2]
        if best != previous or t == 0:
            starts.append(offset + t)
            chosen.append(best)
            previous = best
    return starts, chosen


@dataclass
class CompiledVersion:
    index: int
    version: TariffVersion
    start_us: int
    next_start_us: int
    table_base: int  # global id of this version's first table
    class_tables: dict[tuple[str, PaymentType], int]  # (class, payment) -> global table id
    prefix_tables: dict[str, dict[PaymentType, int]]  # prefix digits -> payment -> table id
    prefix_lengths: tuple[int, ...]  # longest first
    selectors: list[tuple[str, PaymentType]]  # table id - table_base -> its selector
    _cache: dict[tuple[str, str, str], int] = field(default_factory=dict)
    fallbacks: tuple[CompiledVersion, ...] = ()  # parent plans' versions, nearest first

    def resolve(self, kind: JurisdictionClass, digits: str, pay: PaymentType) -> int:
        """Global week-table id for this destination and payment type, or -1 if none covers it:
        this version's own lines first, then each fallback plan's, nearest first."""
        key = (kind._value_, digits, pay._value_)  # plain strings hash faster than members
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = self.resolve_own(kind, digits, pay)
        for fb in self.fallbacks:
            if found >= 0:
                break
            found = fb.resolve_own(kind, digits, pay)
        if len(self._cache) >= RESOLVE_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found

    def resolve_own(self, kind: JurisdictionClass, digits: str, pay: PaymentType) -> int:
        found = -1
        if kind not in NEVER_BY_PREFIX:
            for n in self.prefix_lengths:
                if n <= len(digits):
                    pays = self.prefix_tables.get(digits[:n])
                    if pays is not None:
                        found = pays.get(pay, pays.get(_ANY, -1))
                        if found >= 0:
                            break
        if found < 0:
            found = self.class_tables.get(
                (kind.value, pay), self.class_tables.get((kind.value, _ANY), -1)
            )
        return found

    def surcharges_for(
        self, kind: JurisdictionClass, digits: str, pay: PaymentType
    ) -> tuple[Surcharge, ...]:
        return tuple(s for s in self.version.surcharges if surcharge_applies(s, kind, digits, pay))


def surcharge_applies(s: Surcharge, kind: JurisdictionClass, digits: str, pay: PaymentType) -> bool:
    """A tax or fee applies to every matching destination (not only the most specific)."""
    if s.payment is not _ANY and s.payment is not pay:
        return False
    if s.destination == "*":
        return True
    if is_prefix(s.destination):
        return kind not in NEVER_BY_PREFIX and digits.startswith(s.destination[1:])
    return s.destination == kind.value


def _week_table(lines: list[tuple[int, Line]], holidays: tuple[Holiday, ...]) -> WeekTable:
    starts: list[int] = []
    chosen: list[int] = []
    weekly = [(gid, ln) for gid, ln in lines if not ln.band.dates]
    for day in range(7):
        s, c = _choose([(gid, ln) for gid, ln in weekly if ln.band.on(day)], day * SECONDS_PER_DAY)
        starts += s
        chosen += c
    ends = starts[1:] + [WEEK]
    dated = [(gid, ln, expand(ln.band.dates, holidays)) for gid, ln in lines if ln.band.dates]
    return WeekTable(starts, ends, chosen, weekly, dated)


def _day_table(table: WeekTable, day: int) -> DayTable | None:
    """The table of local day ``day`` (days since 1970-01-01) if a dated band names it."""
    dated = [(gid, ln) for gid, ln, specs in table.dated if on_day(specs, day)]
    if not dated:
        return None
    weekday = weekday_of(day)
    starts, chosen = _choose(
        [(gid, ln) for gid, ln in table.weekly if ln.band.on(weekday)] + dated, 0
    )
    return DayTable(tuple(starts), tuple(starts[1:]) + (SECONDS_PER_DAY,), tuple(chosen))


def _in_force(
    versions: tuple[TariffVersion, ...], starts: list[int], us: int
) -> TariffVersion | None:
    i = bisect.bisect_right(starts, us) - 1
    return versions[i] if i >= 0 else None


def _segments(tariff: Tariff) -> list[tuple[int, list[TariffVersion]]]:
    """The tariff's timeline cut wherever the version in force, or the version of a fallback plan
    it reaches, changes: (start, the chain of versions from the tariff's own to the farthest
    fallback, at most FALLBACK_DEPTH_MAX parents deep)."""
    own = tariff.versions
    own_starts = [to_micros(v.effective_from) for v in own]
    plans = {key: (vs, [to_micros(v.effective_from) for v in vs]) for key, vs in tariff.plans}
    if not own:
        return []
    cuts = set(own_starts)
    if any(v.parent for v in own):
        for _versions, starts in plans.values():
            cuts.update(s for s in starts if s > own_starts[0])
    out: list[tuple[int, list[TariffVersion]]] = []
    for cut in sorted(cuts):
        first = _in_force(own, own_starts, cut)
        assert first is not None  # every cut is at or after the first own version
        chain = [first]
        v: TariffVersion | None = first
        while v is not None and v.parent is not None and len(chain) <= FALLBACK_DEPTH_MAX:
            plan = plans.get(v.parent)
            v = _in_force(plan[0], plan[1], cut) if plan else None
            if v is None or any(v is c for c in chain):
                break
            chain.append(v)
        if (
            out
            and len(out[-1][1]) == len(chain)
            and all(a is b for a, b in zip(out[-1][1], chain, strict=True))
        ):
            continue  # nothing changed at this cut
        out.append((cut, chain))
    return out


class CompiledTariff:
    """Everything `locate` needs, built once per `Tariff` (see `compiled`)."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.clock: LocalClock = clock_for(tariff.time_zone)
        self.lines: list[LineRates] = []
        self.tables: list[WeekTable] = []
        self.versions: list[CompiledVersion] = []
        self._days: dict[tuple[int, int], DayTable | None] = {}
        self._surcharges: dict[tuple[int, str, str, str], tuple[Surcharge, ...]] = {}
        self._layers: dict[tuple[int, tuple[Holiday, ...]], CompiledVersion] = {}
        segments = _segments(tariff)
        self.starts_us: list[int] = [start for start, _ in segments]
        for i, (start, chain) in enumerate(segments):
            nxt = self.starts_us[i + 1] if i + 1 < len(segments) else FAR_FUTURE_US
            holidays = tuple(dict.fromkeys(h for v in chain for h in v.holidays))
            layers = [self._layer(v, holidays) for v in chain]
            self.versions.append(
                replace(
                    layers[0],
                    index=i,
                    start_us=start,
                    next_start_us=nxt,
                    fallbacks=tuple(layers[1:]),
                    _cache={},
                )
            )

    def _layer(self, v: TariffVersion, holidays: tuple[Holiday, ...]) -> CompiledVersion:
        """A version's tables, with the holiday list of its whole fallback chain (compiled once
        per version and list)."""
        key = (id(v), holidays)
        layer = self._layers.get(key)
        if layer is None:
            layer = self._layers[key] = self._compile_version(-1, v, 0, holidays)
        return layer

    def _compile_version(
        self, index: int, v: TariffVersion, next_start_us: int, holidays: tuple[Holiday, ...]
    ) -> CompiledVersion:
        by_selector: dict[tuple[str, PaymentType], list[tuple[int, Line]]] = {}
        for line in v.lines:
            gid = len(self.lines)
            starts = tuple(g.from_second for g in line.groups)
            if line.closed:
                self.lines.append(
                    LineRates(
                        line,
                        v.number,
                        (0,),
                        (FAR_FUTURE_US,),
                        (0,),
                        (1,),
                        (1,),
                        closed=True,
                        owner=v,
                    )
                )
            else:
                self.lines.append(
                    LineRates(
                        line,
                        v.number,
                        starts,
                        starts[1:] + (FAR_FUTURE_US,),
                        tuple(g.price_micros for g in line.groups),
                        tuple(g.per_seconds for g in line.groups),
                        tuple(g.increment for g in line.groups),
                        owner=v,
                    )
                )
            by_selector.setdefault((line.destination, line.payment), []).append((gid, line))
        base = len(self.tables)
        class_tables: dict[tuple[str, PaymentType], int] = {}
        prefix_tables: dict[str, dict[PaymentType, int]] = {}
        selectors = []
        for selector, lines in by_selector.items():
            tid = len(self.tables)
            self.tables.append(_week_table(lines, holidays))
            selectors.append(selector)
            dest, pay = selector
            if is_prefix(dest):
                prefix_tables.setdefault(dest[1:], {})[pay] = tid
            else:
                class_tables[selector] = tid
        lengths = tuple(sorted({len(p) for p in prefix_tables}, reverse=True))
        return CompiledVersion(
            index, v, 0, next_start_us, base, class_tables, prefix_tables, lengths, selectors
        )

    def version_index(self, us: int) -> int:
        return bisect.bisect_right(self.starts_us, us) - 1

    def locate(self, table_id: int, us: int) -> tuple[int, int]:
        """The line a selector chooses at instant ``us``, and the instant that may next change:
        the next change of the week table (band or midnight) or of the clock's UTC offset. The
        caller also stops at the next version."""
        offset, offset_change_us = self.clock.offset_at(us)
        local = us // US + offset
        day = local // SECONDS_PER_DAY
        table = self.tables[table_id]
        if table.dated:
            special = self.day_table(table_id, day)
            if special is not None:
                day_second = local - day * SECONDS_PER_DAY
                i = bisect.bisect_right(special.starts, day_second) - 1
                end_us = (local - day_second + special.ends[i] - offset) * US
                return special.lines[i], min(end_us, offset_change_us)
        week_second = (day + 3) % 7 * SECONDS_PER_DAY + (local - day * SECONDS_PER_DAY)
        i = bisect.bisect_right(table.starts, week_second) - 1
        end_us = (local - week_second + table.ends[i] - offset) * US
        return table.lines[i], min(end_us, offset_change_us)

    def day_table(self, table_id: int, day: int) -> DayTable | None:
        key = (table_id, day)
        if key in self._days:
            return self._days[key]
        if len(self._days) >= DAY_CACHE_MAX:
            self._days.clear()
        found = self._days[key] = _day_table(self.tables[table_id], day)
        return found

    def surcharges_of(
        self, rates: LineRates, kind: JurisdictionClass, digits: str, pay: PaymentType
    ) -> tuple[Surcharge, ...]:
        """The taxes and fees of the plan whose line ``rates`` is that apply to this
        destination and payment type (remembered per destination)."""
        key = (id(rates.owner), kind._value_, digits, pay._value_)
        hit = self._surcharges.get(key)
        if hit is None:
            if len(self._surcharges) >= RESOLVE_CACHE_MAX:
                self._surcharges.clear()
            owner = rates.owner
            hit = self._surcharges[key] = (
                ()
                if owner is None
                else tuple(s for s in owner.surcharges if surcharge_applies(s, kind, digits, pay))
            )
        return hit

    def special_days(self, first: int, last: int) -> list[tuple[int, int, DayTable]]:
        """(table id, local day, its table) for every special day in [first, last], sorted."""
        out = []
        for tid, table in enumerate(self.tables):
            if table.dated:
                days = sorted(
                    {d for _, _, specs in table.dated for d in days_between(specs, first, last)}
                )
                for d in days:
                    table_of_day = self.day_table(tid, d)
                    if table_of_day is not None:  # a day a dated band names always has one
                        out.append((tid, d, table_of_day))
        return out


def compiled(tariff: Tariff) -> CompiledTariff:
    """The tariff's compiled form, built on first use and kept on the (immutable) tariff."""
    c = tariff._compiled
    if not isinstance(c, CompiledTariff):
        c = CompiledTariff(tariff)
        object.__setattr__(tariff, "_compiled", c)
    return c
