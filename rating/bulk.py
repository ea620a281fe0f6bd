"""Bulk pricing: re-rate arrays of calls with numpy, to the micro-unit what `rating.pricing` says.

The steps are those of `rating.pricing` (read its docstring first), vectorised over calls:

* calls are priced in chunks of `CHUNK_CALLS`, so that a chunk's temporaries stay in the CPU's
  cache (a pass over a million int64 is bound by memory, not arithmetic);
* the version comes from the compiled tables (`rating.compiled`), the selector from a table by
  (class, payment type) folded over the fallback chain, or prefix searches when a plan has
  prefix lines;
* the line at an instant comes from *day profiles*: each selector's week table cut into its
  seven days, plus the day tables of the special dates the calls can reach, each profile
  identified once. A day map says which profile a selector follows on each local day of the
  calls' span; a dense (profile, slot-of-the-day) table gives the line and the day-second its
  answer may next change;
* most calls never leave their first slice (no band change, midnight, version or offset change
  before the billed end). Their price is a few gathers: per line, the cumulative price of the
  whole rate groups before group g, plus the one partial span of group g;
* the others walk slice by slice, each step vectorised over the calls still walking, with spans
  cut at the rate-group starts of the line in force;
* taxes and fees, when every line prices a class (no prefix lines or prefix surcharges), come
  from per (line, payment type) tables; otherwise from a match per surcharge.

All money is int64 micro-units; nothing passes through floating point. A call that cannot be
priced gets an error code (`BulkError`) and zeros, never a price of zero with no error.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rating.clock import FAR_FUTURE_US, US
from rating.compiled import CompiledTariff, CompiledVersion, WeekTable, compiled
from rating.jurisdiction import CLASS_BY_CODE, NEVER_BY_PREFIX
from rating.tariff import SECONDS_PER_DAY, PaymentType, Rounding, Surcharge, Tariff, is_prefix

if TYPE_CHECKING:
    from numpy.typing import NDArray

    IntArray = NDArray[np.int64]

__all__ = ["BulkError", "BulkPrices", "price_many", "e164_digits", "CHUNK_CALLS"]

I64 = np.int64
CHUNK_CALLS = 32_768  # calls per pass: 256 KiB per int64 temporary, in the cache
DENSE_ENTRIES_MAX = 1 << 21  # (profile, slot) entries before lines are found by a search instead
STOPS_INLINE_MAX = 4  # version or offset changes handled one by one in a chunk's first slices
N_PAY = len(PaymentType)
DAY_US = SECONDS_PER_DAY * US
_BIG = FAR_FUTURE_US
_NO_CAP = np.iinfo(np.int64).max
_POW10 = np.array([10**k for k in range(19)], dtype=I64)
_ROUNDING_CODES = {Rounding.NONE: 0, Rounding.UP: 1, Rounding.HALF_UP: 2, Rounding.DOWN: 3}
assert len(CLASS_BY_CODE) * N_PAY < 128  # the (class, payment) key is computed in int8


class BulkError(enum.IntEnum):
    """Why a call got no price. Stable codes, stored in re-rated files; never renumber."""

    NONE = 0
    UNAUTHORIZED_DESTINATION = 1
    NO_TARIFF_IN_FORCE = 2
    DESTINATION_CLOSED = 3  # a closed band is in force at the call's start


@dataclass(frozen=True)
class BulkPrices:
    billed_seconds: np.ndarray  # int64
    connect_micros: np.ndarray  # int64
    call_micros: np.ndarray  # int64
    tax_micros: np.ndarray  # int64
    total_micros: np.ndarray  # int64
    version: np.ndarray  # int64: number of the version in force at second 0 (0: error)
    error: np.ndarray  # int8: BulkError codes


def e164_digits(e164: list[str | None]) -> np.ndarray:
    """['+12125550123', None] -> int64 array of the digits (0 where there is no number)."""
    return np.array([int(x[1:]) if x else 0 for x in e164], dtype=I64)


Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # day-second starts, ends, lines


@dataclass(frozen=True)
class _DayMap:
    """Which day profile each selector follows on each local day of [first, first + span)."""

    first: int
    span: int
    profile: np.ndarray  # [table id * span + local day - first]


class _Arrays:
    """A compiled tariff laid out as numpy arrays (built once per tariff)."""

    def __init__(self, ct: CompiledTariff) -> None:
        self.ct = ct
        self.version_starts = np.array(ct.starts_us, dtype=I64)
        self.version_numbers = np.array([v.version.number for v in ct.versions], dtype=I64)
        self.changes_us = np.array(ct.clock.changes_us, dtype=I64)
        self.offsets = np.array(ct.clock.offsets, dtype=I64)
        # Where the answer of `locate` may change besides a band or midnight: the next offset
        # change of the clock or the next version, whichever comes first.
        self.stops = np.append(
            np.unique(np.concatenate([self.changes_us, self.version_starts])), I64(_BIG)
        )
        self._profile_ids: dict[Profile, int] = {}
        self.profiles: list[Profile] = []
        self._lookup_built = 0
        self.n_tables = len(ct.tables)
        self.weekday_profile = np.zeros((max(self.n_tables, 1), 7), dtype=I64)
        for tid, t in enumerate(ct.tables):
            for w in range(7):
                self.weekday_profile[tid, w] = self._profile(*_weekday_slice(t, w))
        self.any_dated = any(t.dated for t in ct.tables)
        self._build_lines(ct)
        self._build_taxes(ct)
        self.needs_digits = any(cv.prefix_lengths for cv in self._chain_all()) or any(
            is_prefix(s.destination) for o in self.owners for s in o.surcharges
        )
        self.refused = np.array([c in NEVER_BY_PREFIX for c in CLASS_BY_CODE], dtype=bool)
        self._class_pay: dict[int, np.ndarray | None] = {}

    # -- tables ----------------------------------------------------------------------------
    def _build_lines(self, ct: CompiledTariff) -> None:
        # Lines: flat [line * G + group] arrays, padded with empty groups.
        n = len(ct.lines)
        g = self.groups = max((len(r.starts) for r in ct.lines), default=1)
        self.starts = np.full(n * g, _BIG, dtype=I64)
        self.ends = np.full(n * g, _BIG, dtype=I64)
        self.prices2 = np.zeros(n * g, dtype=I64)  # twice the price: half-up in one division
        self.pers = np.ones(n * g, dtype=I64)
        self.pers2 = np.full(n * g, 2, dtype=I64)
        self.increments = np.ones(n * g, dtype=I64)
        self.cumulative = np.zeros(n * g, dtype=I64)  # price of whole groups before this one
        for lid, r in enumerate(ct.lines):
            before = 0
            rows = zip(r.starts, r.ends, r.prices, r.pers, r.increments, strict=True)
            for k, (s, e, p, u, inc) in enumerate(rows):
                j = lid * g + k
                self.starts[j], self.ends[j], self.prices2[j] = s, e, 2 * p
                self.pers[j], self.pers2[j], self.increments[j] = u, 2 * u, inc
                self.cumulative[j] = before
                if e < FAR_FUTURE_US:
                    before += (2 * (e - s) * p + u) // (2 * u)
        self.start_columns = [self.starts[k::g].copy() for k in range(g)]
        # A call of 0 s bills nothing; the arithmetic says so by itself when every first group
        # starts at second 0.
        self.zero_is_free = all(r.starts[0] == 0 for r in ct.lines)
        lines_ = [r.line for r in ct.lines]
        self.connect = np.array([x.connect_micros for x in lines_], dtype=I64)
        self.minimum = np.array([x.minimum_seconds for x in lines_], dtype=I64)
        self.cap = np.array(
            [_NO_CAP if x.cost_cap_micros is None else x.cost_cap_micros for x in lines_], dtype=I64
        )
        self.rounding = np.array(
            [_ROUNDING_CODES[x.rounding] if x.decimals < 6 else 0 for x in lines_], dtype=np.int8
        )
        self.quantum = np.array([10 ** (6 - x.decimals) for x in lines_], dtype=I64)
        self.any_cap = bool((self.cap != _NO_CAP).any())
        self.any_rounding = bool(self.rounding.any())
        self.any_minimum = bool(self.minimum.any())
        self.any_connect = bool(self.connect.any())
        self.closed = np.array([r.closed for r in ct.lines], dtype=bool)
        self.any_closed = bool(self.closed.any())
        self.slack = max((x.minimum_seconds for x in lines_), default=0) + max(
            (g.from_second + g.increment for x in lines_ for g in x.groups), default=0
        )

    def _build_taxes(self, ct: CompiledTariff) -> None:
        # Taxes follow the governing line: those of the version (own or fallback) it belongs to.
        self.owners = list({id(r.owner): r.owner for r in ct.lines if r.owner}.values())
        index = {id(o): i for i, o in enumerate(self.owners)}
        self.line_owner = np.array([index.get(id(r.owner), -1) for r in ct.lines], dtype=I64)
        self.any_tax = any(o.surcharges for o in self.owners)
        # When every line prices a class and no surcharge names a prefix, which surcharges apply
        # depends on the line and the payment type alone: one table per surcharge slot.
        self.percent_slots: list[np.ndarray] = []  # [line * N_PAY + payment]: 2 x ppm
        self.fee_slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # 2P, U, 2U
        self.taxes_by_line = (
            self.any_tax
            and not any(is_prefix(r.line.destination) for r in ct.lines)
            and not any(is_prefix(s.destination) for o in self.owners for s in o.surcharges)
        )
        if not self.taxes_by_line:
            return
        n = len(ct.lines)
        percents: list[list[int]] = [[] for _ in range(n * N_PAY)]
        fees: list[list[Surcharge]] = [[] for _ in range(n * N_PAY)]
        for lid, r in enumerate(ct.lines):
            if r.owner is None:
                continue
            for pay in PaymentType:
                for s in r.owner.surcharges:
                    if s.payment is not PaymentType.ANY and s.payment is not pay:
                        continue
                    if s.destination != "*" and s.destination != r.line.destination:
                        continue
                    if s.percent_ppm is not None:
                        percents[lid * N_PAY + pay.code].append(s.percent_ppm)
                    else:
                        fees[lid * N_PAY + pay.code].append(s)
        for k in range(max(map(len, percents), default=0)):
            self.percent_slots.append(
                np.array([2 * p[k] if k < len(p) else 0 for p in percents], dtype=I64)
            )
        for k in range(max(map(len, fees), default=0)):
            price2 = np.array([2 * (f[k].price_micros or 0) if k < len(f) else 0 for f in fees])
            per = np.array([(f[k].per_seconds or 1) if k < len(f) else 1 for f in fees])
            self.fee_slots.append((price2.astype(I64), per.astype(I64), 2 * per.astype(I64)))

    def _chain_all(self) -> list[CompiledVersion]:
        return [x for cv in self.ct.versions for x in (cv, *cv.fallbacks)]

    def _profile(
        self, starts: tuple[int, ...], ends: tuple[int, ...], lines: tuple[int, ...]
    ) -> int:
        key = (starts, ends, lines)
        pid = self._profile_ids.get(key)
        if pid is None:
            pid = self._profile_ids[key] = len(self.profiles)
            self.profiles.append(key)
        return pid

    def _build_lookup(self) -> None:
        """The line and its end for (profile, day-second): a dense table over slots of q seconds
        (q the gcd of every band start), or sorted keys to search when that would be too big."""
        q = SECONDS_PER_DAY
        for starts, _, _ in self.profiles:
            for s in starts:
                q = math.gcd(q, s)
        slots = SECONDS_PER_DAY // q
        n = len(self.profiles)
        self.dense = n * slots <= DENSE_ENTRIES_MAX
        if self.dense:
            self.quantum_s, self.slots = q, slots
            self.dense_line = np.zeros(n * slots, dtype=I64)
            self.dense_end = np.zeros(n * slots, dtype=I64)
            for pid, (starts, ends, lines) in enumerate(self.profiles):
                for s, e, line in zip(starts, ends, lines, strict=True):
                    lo, hi = pid * slots + s // q, pid * slots + e // q
                    self.dense_line[lo:hi], self.dense_end[lo:hi] = line, e
        else:
            keys: list[int] = []
            lines_: list[int] = []
            ends_: list[int] = []
            for pid, (starts, ends, lines) in enumerate(self.profiles):
                keys += [pid * SECONDS_PER_DAY + s for s in starts]
                lines_ += lines
                ends_ += ends
            self.keys = np.array(keys, dtype=I64)
            self.key_lines = np.array(lines_, dtype=I64)
            self.key_ends = np.array(ends_, dtype=I64)
        self._lookup_built = n

    def day_map(self, start: np.ndarray, seconds: np.ndarray) -> _DayMap:
        """The profiles of every local day these calls can reach (with two days' margin)."""
        lo = int(start.min()) // US - 2 * SECONDS_PER_DAY
        hi = int(start.max()) // US + int(seconds.max()) + self.slack + 2 * SECONDS_PER_DAY
        first, last = lo // SECONDS_PER_DAY, hi // SECONDS_PER_DAY
        span = last - first + 1
        weekdays = (np.arange(first, last + 1, dtype=I64) + 3) % 7
        profile = self.weekday_profile[:, weekdays]
        if self.any_dated:
            profile = profile.copy()
            for tid, day, table in self.ct.special_days(first, last):
                profile[tid, day - first] = self._profile(table.starts, table.ends, table.lines)
        if self._lookup_built != len(self.profiles):
            self._build_lookup()
        return _DayMap(first, span, profile.ravel())

    def line_at(self, prof: np.ndarray, ds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(line, day-second where the answer may next change) for day profiles and day-seconds."""
        if self.dense:
            i = prof if self.slots == 1 else prof * self.slots + ds // self.quantum_s
            return self.dense_line[i], self.dense_end[i]
        i = np.searchsorted(self.keys, prof * SECONDS_PER_DAY + ds, side="right") - 1
        return self.key_lines[i], self.key_ends[i]

    # -- selectors -------------------------------------------------------------------------
    def resolve(
        self,
        v: int,
        kind: np.ndarray,
        number: np.ndarray,
        pay: np.ndarray,
        ndigits: np.ndarray | None,
    ) -> np.ndarray:
        """Global week-table id per call for version ``v`` (-1: no line covers it): its own
        lines, then each fallback plan's."""
        if v not in self._class_pay:
            self._class_pay[v] = self._fold_class_pay(v)
        table = self._class_pay[v]
        if table is not None:  # no prefix lines anywhere in the chain: one gather
            return table[pay + kind * np.int8(N_PAY)]
        assert ndigits is not None
        cv = self.ct.versions[v]
        tid = self._resolve_own(cv, kind, number, pay, ndigits)
        for fb in cv.fallbacks:
            missing = tid < 0
            if not missing.any():
                break
            tid = np.where(missing, self._resolve_own(fb, kind, number, pay, ndigits), tid)
        return tid

    def _fold_class_pay(self, v: int) -> np.ndarray | None:
        cv = self.ct.versions[v]
        chain = (cv, *cv.fallbacks)
        if any(x.prefix_lengths for x in chain):
            return None
        table = np.full(len(CLASS_BY_CODE) * N_PAY, -1, dtype=I64)
        for x in reversed(chain):  # the nearest plan last, so that it wins
            own = _class_table(x)
            table = np.where(own >= 0, own, table)
        return table

    def _resolve_own(
        self,
        cv: CompiledVersion,
        kind: np.ndarray,
        number: np.ndarray,
        pay: np.ndarray,
        ndigits: np.ndarray,
    ) -> np.ndarray:
        tid = _class_table(cv)[pay + kind * np.int8(N_PAY)]
        if not cv.prefix_lengths:
            return tid
        best = np.full(len(kind), -1, dtype=I64)
        eligible = ~self.refused[kind]
        for length in cv.prefix_lengths:
            prefixes = sorted(p for p in cv.prefix_tables if len(p) == length)
            known = np.array([int(p) for p in prefixes], dtype=I64)
            by_pay = np.full((len(prefixes), N_PAY), -1, dtype=I64)
            for i, p in enumerate(prefixes):
                pays = cv.prefix_tables[p]
                for q in PaymentType:
                    by_pay[i, q.code] = pays.get(q, pays.get(PaymentType.ANY, -1))
            ok = eligible & (ndigits >= length) & (best < 0)
            head = number // _POW10[np.maximum(ndigits - length, 0)]
            i = np.minimum(np.searchsorted(known, head), len(known) - 1)
            hit = ok & (known[i] == head)
            cand = by_pay[i, pay]
            best = np.where(hit & (cand >= 0), cand, best)
        return np.where(best >= 0, best, tid)

    # -- instants --------------------------------------------------------------------------
    def offsets_at(self, us: np.ndarray) -> np.ndarray | np.int64:
        """The clock's UTC offset (seconds) at each instant: one number when all share it."""
        i_lo = int(np.searchsorted(self.changes_us, us.min(), side="right")) - 1
        i_hi = int(np.searchsorted(self.changes_us, us.max(), side="right")) - 1
        if i_lo == i_hi:
            return np.int64(self.offsets[i_lo])
        if i_hi - i_lo <= STOPS_INLINE_MAX:
            offset = np.where(
                us >= self.changes_us[i_lo + 1], self.offsets[i_lo + 1], self.offsets[i_lo]
            )
            for k in range(i_lo + 2, i_hi + 1):
                offset = np.where(us >= self.changes_us[k], self.offsets[k], offset)
            return np.asarray(offset)
        return np.asarray(self.offsets[np.searchsorted(self.changes_us, us, side="right") - 1])

    def version_of(self, us: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.version_starts, us, side="right") - 1

    def locate(
        self, days: _DayMap, tid: np.ndarray, us: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised `CompiledTariff.locate`, also stopping at the next version: (line, the
        instant the answer may next change)."""
        offset = self.offsets_at(us)
        local = us // US + offset
        day, ds = np.divmod(local, SECONDS_PER_DAY)
        line, end_ds = self.line_at(days.profile[tid * days.span + (day - days.first)], ds)
        end = (local - ds + end_ds - offset) * US
        stop = self.stops[np.searchsorted(self.stops, us, side="right")]
        return line, np.minimum(end, stop)

    def first_slice(
        self, days: _DayMap, tid: np.ndarray, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(line at the start, the call second where the first slice ends): `locate` at each
        call's start, the end counted in whole call seconds from the start."""
        local = start // US + self.offsets_at(start)
        day, ds = np.divmod(local, SECONDS_PER_DAY)
        line, end_ds = self.line_at(days.profile[tid * days.span + (day - days.first)], ds)
        # The end is a whole local second and the start is within its second: the first call
        # second at or after the end is end_ds - ds.
        last = end_ds - ds
        # A band ends within a day, so only version or offset changes within a day of a start
        # can end its first slice sooner.
        lo, hi = int(start.min()), int(start.max()) + DAY_US
        i0 = int(np.searchsorted(self.stops, lo, side="right"))
        i1 = int(np.searchsorted(self.stops, hi, side="right"))
        if i1 - i0 > STOPS_INLINE_MAX:
            stop = self.stops[np.searchsorted(self.stops, start, side="right")]
            np.minimum(last, -((start - stop) // US), out=last)
        else:
            for c in self.stops[i0:i1]:
                near = np.flatnonzero((start < c) & (start >= c - DAY_US))
                if near.size:
                    last[near] = np.minimum(last[near], -((start[near] - c) // US))
        return line, last


def _weekday_slice(table: WeekTable, weekday: int) -> Profile:
    """Day ``weekday`` of a week table as day-second (starts, ends, lines). A validated table
    starts every day at 00:00; otherwise the line in force at midnight carries over."""
    lo, hi = weekday * SECONDS_PER_DAY, (weekday + 1) * SECONDS_PER_DAY
    idx = [i for i, s in enumerate(table.starts) if lo <= s < hi]
    starts = [table.starts[i] - lo for i in idx]
    ends = [min(table.ends[i], hi) - lo for i in idx]
    lines = [table.lines[i] for i in idx]
    if not starts or starts[0] != 0:
        before = [i for i, s in enumerate(table.starts) if s < lo] or [len(table.starts) - 1]
        starts.insert(0, 0)
        ends.insert(0, starts[1] if len(starts) > 1 else SECONDS_PER_DAY)
        lines.insert(0, table.lines[before[-1]])
    return tuple(starts), tuple(ends), tuple(lines)


def _class_table(cv: CompiledVersion) -> np.ndarray:
    """[class code * N_PAY + payment code] -> the version's own week-table id for that class, or
    -1: the call's own payment type first, then `any`."""
    table = np.full(len(CLASS_BY_CODE) * N_PAY, -1, dtype=I64)
    for kc, klass in enumerate(CLASS_BY_CODE):
        for p in PaymentType:
            table[kc * N_PAY + p.code] = cv.class_tables.get(
                (klass.value, p), cv.class_tables.get((klass.value, PaymentType.ANY), -1)
            )
    return table


def _arrays(tariff: Tariff) -> _Arrays:
    ct = compiled(tariff)
    a: _Arrays | None = getattr(ct, "_bulk", None)
    if a is None:
        a = _Arrays(ct)
        ct._bulk = a  # type: ignore[attr-defined]
    return a


def price_many(
    tariff: Tariff,
    kind: np.ndarray,
    number: np.ndarray,
    payment: np.ndarray,
    start_us: np.ndarray,
    seconds: np.ndarray,
) -> BulkPrices:
    """Price calls given as parallel arrays: ``kind`` (JurisdictionClass codes), ``number``
    (E.164 digits as int64, 0 for none; see `e164_digits`), ``payment`` (PaymentType codes),
    ``start_us`` (microseconds since the epoch, UTC) and ``seconds`` (talk time)."""
    a = _arrays(tariff)
    kind = np.asarray(kind, dtype=np.int8)
    number = np.asarray(number, dtype=I64)
    pay = np.asarray(payment, dtype=I64)
    start = np.asarray(start_us, dtype=I64)
    seconds = np.asarray(seconds, dtype=I64)
    n = len(start)
    if not len(kind) == len(number) == len(pay) == len(seconds) == n:
        raise ValueError("price_many needs arrays of one length")
    out = [np.zeros(n, dtype=I64) for _ in range(6)]
    error = np.zeros(n, dtype=np.int8)
    if n == 0:
        return _prices(out, error)
    if seconds.min() < 0:
        raise ValueError(f"a call lasts 0 seconds or more (row {int(np.argmax(seconds < 0))})")
    if kind.min() < 0 or kind.max() >= len(CLASS_BY_CODE) or pay.min() < 0 or pay.max() >= N_PAY:
        raise ValueError("kind or payment holds a code that is not a class or payment type")
    if a.n_tables == 0:  # no line at all: nothing is authorized
        vi = a.version_of(start)
        error[:] = np.where(
            vi < 0, BulkError.NO_TARIFF_IN_FORCE, BulkError.UNAUTHORIZED_DESTINATION
        )
        return _prices(out, error)
    days = a.day_map(start, seconds)
    for i in range(0, n, CHUNK_CALLS):
        j = min(n, i + CHUNK_CALLS)
        _price_chunk(
            a, days, kind[i:j], number[i:j], pay[i:j], start[i:j], seconds[i:j],
            [x[i:j] for x in out], error[i:j],
        )  # fmt: skip
    return _prices(out, error)


def _prices(out: list[np.ndarray], error: np.ndarray) -> BulkPrices:
    billed, connect, call, tax, total, version = out
    return BulkPrices(billed, connect, call, tax, total, version, error)


def _price_chunk(
    a: _Arrays,
    days: _DayMap,
    kind: np.ndarray,
    number: np.ndarray,
    pay: np.ndarray,
    start: np.ndarray,
    seconds: np.ndarray,
    out: list[np.ndarray],
    error: np.ndarray,
) -> None:
    """Price one chunk of calls into ``out`` (billed, connect, call, tax, total, version) and
    ``error``; rows with an error are left at zero."""
    ndigits = np.searchsorted(_POW10, number, side="right").astype(I64) if a.needs_digits else None
    # Step 1: version and selector at second 0.
    resolved: dict[int, np.ndarray] = {}
    vi0: np.ndarray | int
    if len(a.version_starts) == 1 and start.min() >= a.version_starts[0]:
        vi0 = 0
        tid0 = resolved[0] = a.resolve(0, kind, number, pay, ndigits)
    else:
        vi0 = a.version_of(start)
        tid0 = np.full(len(start), -1, dtype=I64)
        for v in range(max(int(vi0.min()), 0), int(vi0.max()) + 1):
            m = vi0 == v
            if m.any():
                resolved[v] = a.resolve(v, kind, number, pay, ndigits)
                tid0[m] = resolved[v][m]
        error[vi0 < 0] = BulkError.NO_TARIFF_IN_FORCE
        vi0 = np.maximum(vi0, 0)
    unpriced = np.flatnonzero(tid0 < 0)
    if unpriced.size:
        error[unpriced[error[unpriced] == 0]] = BulkError.UNAUTHORIZED_DESTINATION
        tid0 = np.maximum(tid0, 0)  # priced like any other, then zeroed
    line, last = a.first_slice(days, tid0, start)
    if a.any_closed:
        closed = np.flatnonzero(a.closed[line])
        if closed.size:  # refused like the scalar path: no price, an error code
            error[closed[error[closed] == 0]] = BulkError.DESTINATION_CLOSED

    # Step 2: billed seconds by the governing line.
    g = a.groups
    d = seconds
    if a.any_minimum:  # a call of 0 s stays at 0 s
        d = np.where(seconds > 0, np.maximum(seconds, a.minimum[line]), 0)
    if g == 1:
        flat = line
    else:
        flat = line * g
        for k in range(1, g):
            flat += a.start_columns[k][line] < d
    gs = a.starts[flat]
    inc = a.increments[flat]
    billed = gs - (gs - d) // inc * inc
    if not a.zero_is_free:
        billed = np.where(seconds > 0, billed, 0)

    # Step 3, fast path: the whole billed time lies in the first slice.
    subtotal = (
        a.cumulative[flat] + ((billed - gs) * a.prices2[flat] + a.pers[flat]) // a.pers2[flat]
    )
    if not a.zero_is_free:
        subtotal = np.where(billed > 0, subtotal, 0)
    walking = np.flatnonzero(last < billed)
    if walking.size and error.any():
        walking = walking[error[walking] == 0]
    if walking.size:
        subtotal[walking], lost = _walk(
            a, days, walking, line, last, start, billed, kind, number, pay, ndigits, resolved
        )
        if lost.size:  # a later slice has no line for this destination
            error[lost] = BulkError.UNAUTHORIZED_DESTINATION
    connect: np.ndarray | int = 0
    if a.any_connect:
        connect = np.where(seconds > 0, a.connect[line], 0)
        subtotal += connect

    # Step 4: total rounding and cost cap of the governing line.
    call = subtotal
    if a.any_rounding:
        method, q = a.rounding[line], a.quantum[line]
        call = np.select(
            [method == 1, method == 2, method == 3],
            [-(-subtotal // q) * q, (2 * subtotal + q) // (2 * q) * q, subtotal // q * q],
            subtotal,
        )
    if a.any_cap:
        call = np.minimum(call, a.cap[line])

    # Step 5: taxes and fees of the version at second 0 (of the governing line's plan).
    tax = _taxes(a, line, call, billed, kind, number, pay, ndigits)

    out[0][:] = billed
    out[1][:] = connect
    out[2][:] = call
    out[3][:] = tax
    np.add(call, tax, out=out[4])
    out[5][:] = a.version_numbers[vi0]
    bad = np.flatnonzero(error)
    if bad.size:
        for x in out:
            x[bad] = 0


def _taxes(
    a: _Arrays,
    line: np.ndarray,
    call: np.ndarray,
    billed: np.ndarray,
    kind: np.ndarray,
    number: np.ndarray,
    pay: np.ndarray,
    ndigits: np.ndarray | None,
) -> np.ndarray | int:
    if not a.any_tax:
        return 0
    tax: np.ndarray | int = 0
    if a.taxes_by_line:
        lp = line * N_PAY + pay
        for ppm2 in a.percent_slots:
            tax = tax + (call * ppm2[lp] + 1_000_000) // 2_000_000
        for price2, per, per2 in a.fee_slots:
            tax = tax + (billed * price2[lp] + per[lp]) // per2[lp]
        return tax
    owner = a.line_owner[line]
    for oi, version in enumerate(a.owners):
        for sc in version.surcharges:
            m = owner == oi
            if sc.payment is not PaymentType.ANY:
                m &= pay == sc.payment.code
            if is_prefix(sc.destination):
                assert ndigits is not None
                digits = sc.destination[1:]
                m &= ~a.refused[kind] & (ndigits >= len(digits))
                m &= number // _POW10[np.maximum(ndigits - len(digits), 0)] == int(digits)
            elif sc.destination != "*":
                m &= kind == _class_code(sc.destination)
            if sc.percent_ppm is not None:
                amount = (2 * call * sc.percent_ppm + 1_000_000) // 2_000_000
            else:
                assert sc.price_micros is not None and sc.per_seconds is not None
                amount = (2 * billed * sc.price_micros + sc.per_seconds) // (2 * sc.per_seconds)
            tax = tax + np.where(m, amount, 0)
    return tax


def _class_code(value: str) -> int:
    for c in CLASS_BY_CODE:
        if c.value == value:
            return c.code
    raise ValueError(value)


def _walk(
    a: _Arrays,
    days: _DayMap,
    walking: np.ndarray,
    line0: np.ndarray,
    last0: np.ndarray,
    start: np.ndarray,
    billed: np.ndarray,
    kind: np.ndarray,
    number: np.ndarray,
    pay: np.ndarray,
    ndigits: np.ndarray | None,
    resolved: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Price calls that leave their first slice, slice by slice (step 3 in full). Returns their
    subtotals before the connect fee, and the rows (of the chunk) of calls that reach an instant
    where no line covers them."""
    g = a.groups
    idx = np.arange(walking.size)  # positions into `walking` still walking
    sub = np.zeros(walking.size, dtype=I64)
    lost = []
    t0 = start[walking]
    b_all = billed[walking]
    line, last = line0[walking], last0[walking]
    pos = np.zeros(walking.size, dtype=I64)
    while idx.size:
        b = b_all[idx]
        last = np.minimum(last, b)
        amount = np.zeros(idx.size, dtype=I64)
        for k in range(g):
            j = line * g + k
            lo = np.maximum(a.starts[j], pos)
            hi = np.minimum(a.ends[j], last)
            span = np.maximum(hi - lo, 0)
            amount += (span * a.prices2[j] + a.pers[j]) // a.pers2[j]
        sub[idx] += amount
        more = last < b
        idx, pos, line = idx[more], last[more], line[more]
        if not idx.size:
            break
        at = t0[idx] + pos * US
        vi = a.version_of(at)
        if (vi < 0).any():
            raise AssertionError("a call walked back before its first version")
        here = walking[idx]
        tid = np.empty(idx.size, dtype=I64)
        for v in np.unique(vi):
            v = int(v)
            if v not in resolved:
                resolved[v] = a.resolve(v, kind, number, pay, ndigits)
            m = vi == v
            tid[m] = resolved[v][here[m]]
        bad = tid < 0
        if bad.any():
            lost.append(idx[bad])
            idx, pos, at, tid, line = idx[~bad], pos[~bad], at[~bad], tid[~bad], line[~bad]
            if not idx.size:
                break
        found, end = a.locate(days, tid, at)
        last = -((t0[idx] - end) // US)
        # Billed time that runs into a closed band is priced by the line before it.
        line = np.where(a.closed[found], line, found) if a.any_closed else found
    lost_at = np.concatenate(lost) if lost else np.zeros(0, dtype=I64)
    return sub, walking[lost_at]
