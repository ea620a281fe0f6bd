"""Bulk pricing: re-rate arrays of calls with numpy, to the micro-unit what `rating.pricing` says.

The steps are those of `rating.pricing` (read its docstring first), vectorised over calls:

* the version, selector and line at second 0 come from searchsorted lookups in the compiled
  tables (`rating.compiled`), the UTC offset from the clock's table of offset changes;
* most calls never leave their first slice (no band change, midnight, version or offset change
  before the billed end). Their price is a few gathers: per line, the cumulative price of the whole
  rate groups before group g, plus the one partial span of group g;
* the others walk slice by slice, each step vectorised over the calls still walking, with spans
  cut at the rate-group starts of the line in force.

All money is int64 micro-units; nothing passes through floating point. A call that cannot be
priced gets an error code (`BulkError`) and zeros, never a price of zero with no error.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from rating.clock import FAR_FUTURE_US, US
from rating.compiled import WEEK, CompiledTariff, compiled
from rating.jurisdiction import CLASS_BY_CODE, NEVER_BY_PREFIX
from rating.tariff import SECONDS_PER_DAY, PaymentType, Rounding, Tariff, is_prefix

__all__ = ["BulkError", "BulkPrices", "price_many", "e164_digits"]

I64 = np.int64
NO_CAP = -1
_BIG = np.int64(FAR_FUTURE_US)
_POW10 = np.array([10 ** k for k in range(19)], dtype=I64)
_ROUNDING_CODES = {Rounding.NONE: 0, Rounding.UP: 1, Rounding.HALF_UP: 2, Rounding.DOWN: 3}


class BulkError(enum.IntEnum):
    """Why a call got no price. Stable codes, stored in re-rated files; never renumber."""
    NONE = 0
    UNAUTHORIZED_DESTINATION = 1
    NO_TARIFF_IN_FORCE = 2
    DESTINATION_CLOSED = 3          # a closed band is in force at the call's start


@dataclass(frozen=True)
class BulkPrices:
    billed_seconds: np.ndarray      # int64
    connect_micros: np.ndarray      # int64
    call_micros: np.ndarray         # int64
    tax_micros: np.ndarray          # int64
    total_micros: np.ndarray        # int64
    version: np.ndarray             # int64: number of the version in force at second 0 (0: error)
    error: np.ndarray               # int8: BulkError codes


def e164_digits(e164: list[str | None]) -> np.ndarray:
    """['+12125550123', None] -> int64 array of the digits (0 where there is no number)."""
    return np.array([int(x[1:]) if x else 0 for x in e164], dtype=I64)


class _Arrays:
    """A compiled tariff laid out as numpy arrays (built once per tariff)."""

    def __init__(self, ct: CompiledTariff) -> None:
        self.ct = ct
        self.version_starts = np.array(ct.starts_us, dtype=I64)
        self.version_next = np.array([v.next_start_us for v in ct.versions], dtype=I64)
        self.version_numbers = np.array([v.version.number for v in ct.versions], dtype=I64)
        self.changes_us = np.array(ct.clock.changes_us, dtype=I64)
        self.offsets = np.array(ct.clock.offsets, dtype=I64)
        # Week tables, concatenated under key = table id * WEEK + week-second.
        keys, lines, ends = [], [], []
        for tid, t in enumerate(ct.tables):
            keys += [tid * WEEK + s for s in t.starts]
            lines += t.lines
            ends += t.ends
        self.table_keys = np.array(keys, dtype=I64)
        self.table_lines = np.array(lines, dtype=I64)
        self.table_ends = np.array(ends, dtype=I64)
        # Lines: flat [line * G + group] arrays, padded with empty groups.
        n = len(ct.lines)
        g = self.groups = max((len(r.starts) for r in ct.lines), default=1)
        self.starts = np.full(n * g, _BIG, dtype=I64)
        self.ends = np.full(n * g, _BIG, dtype=I64)
        self.prices = np.zeros(n * g, dtype=I64)
        self.pers = np.ones(n * g, dtype=I64)
        self.increments = np.ones(n * g, dtype=I64)
        self.cumulative = np.zeros(n * g, dtype=I64)   # price of whole groups before this one
        for lid, r in enumerate(ct.lines):
            before = 0
            for k, (s, e, p, u, inc) in enumerate(zip(r.starts, r.ends, r.prices, r.pers,
                                                        r.increments)):
                j = lid * g + k
                self.starts[j], self.ends[j], self.prices[j] = s, e, p
                self.pers[j], self.increments[j], self.cumulative[j] = u, inc, before
                if e < FAR_FUTURE_US:
                    before += (2 * (e - s) * p + u) // (2 * u)
        self.start_columns = [self.starts[k::g].copy() for k in range(g)]
        lines_ = [r.line for r in ct.lines]
        self.connect = np.array([l.connect_micros for l in lines_], dtype=I64)
        self.minimum = np.array([l.minimum_seconds for l in lines_], dtype=I64)
        self.cap = np.array([NO_CAP if l.cost_cap_micros is None else l.cost_cap_micros
                             for l in lines_], dtype=I64)
        self.rounding = np.array([_ROUNDING_CODES[l.rounding] if l.decimals < 6 else 0
                                  for l in lines_], dtype=np.int8)
        self.quantum = np.array([10 ** (6 - l.decimals) for l in lines_], dtype=I64)
        self.any_cap = bool((self.cap >= 0).any())
        self.any_rounding = bool(self.rounding.any())
        self.any_minimum = bool(self.minimum.any())
        self.any_connect = bool(self.connect.any())
        self.closed = np.array([r.closed for r in ct.lines], dtype=bool)
        # Taxes follow the governing line: those of the version (own or fallback) it belongs to.
        self.owners = list({id(r.owner): r.owner for r in ct.lines}.values())
        index = {id(o): i for i, o in enumerate(self.owners)}
        self.line_owner = np.array([index[id(r.owner)] for r in ct.lines], dtype=I64)
        self.any_closed = bool(self.closed.any())
        self.any_dated = any(t.dated for t in ct.tables)
        self.slack = max((l.minimum_seconds for l in lines_), default=0) + max(
            (g.from_second + g.increment for l in lines_ for g in l.groups), default=0)
        self.refused = np.array([c in NEVER_BY_PREFIX for c in CLASS_BY_CODE], dtype=bool)

    # -- selectors -------------------------------------------------------------------------
    def resolve(self, v: int, kind: np.ndarray, number: np.ndarray, pay: np.ndarray,
                ndigits: np.ndarray) -> np.ndarray:
        """Global week-table id per call for version ``v`` (-1: no line covers it): its own
        lines, then each fallback plan's."""
        cv = self.ct.versions[v]
        tid = self._resolve_own(cv, kind, number, pay, ndigits)
        for fb in cv.fallbacks:
            missing = tid < 0
            if not missing.any():
                break
            tid = np.where(missing, self._resolve_own(fb, kind, number, pay, ndigits), tid)
        return tid

    def _resolve_own(self, cv, kind: np.ndarray, number: np.ndarray, pay: np.ndarray,
                     ndigits: np.ndarray) -> np.ndarray:
        n_pay = len(PaymentType)
        table = np.full(len(CLASS_BY_CODE) * n_pay, -1, dtype=I64)
        for kc, klass in enumerate(CLASS_BY_CODE):
            for p in PaymentType:
                table[kc * n_pay + p.code] = cv.class_tables.get(
                    (klass.value, p), cv.class_tables.get((klass.value, PaymentType.ANY), -1))
        tid = table[kind.astype(I64) * n_pay + pay]
        if not cv.prefix_lengths:
            return tid
        best = np.full(len(kind), -1, dtype=I64)
        eligible = ~self.refused[kind]
        for length in cv.prefix_lengths:
            prefixes = sorted(p for p in cv.prefix_tables if len(p) == length)
            known = np.array([int(p) for p in prefixes], dtype=I64)
            by_pay = np.full((len(prefixes), n_pay), -1, dtype=I64)
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

    # -- the walk --------------------------------------------------------------------------
    def offsets_at(self, us: np.ndarray) -> tuple[np.ndarray | np.int64, np.ndarray | np.int64]:
        lo, hi = us.min(), us.max()
        i_lo = np.searchsorted(self.changes_us, lo, side="right") - 1
        i_hi = np.searchsorted(self.changes_us, hi, side="right") - 1
        if i_lo == i_hi:           # no offset change among these instants: one offset for all
            nxt = self.changes_us[i_lo + 1] if i_lo + 1 < len(self.changes_us) else _BIG
            return self.offsets[i_lo], nxt
        i = np.searchsorted(self.changes_us, us, side="right") - 1
        nxt = np.append(self.changes_us, _BIG)[i + 1]
        return self.offsets[i], nxt

    def locate(self, tid: np.ndarray, us: np.ndarray, vi: np.ndarray | int,
               special: _Special | None = None):
        """Vectorised `CompiledTariff.locate`, also stopping at the next version."""
        offset, change = self.offsets_at(us)
        local = us // US + offset
        day = local // SECONDS_PER_DAY
        week_second = (day + 3) % 7 * SECONDS_PER_DAY + (local - day * SECONDS_PER_DAY)
        i = np.searchsorted(self.table_keys, tid * WEEK + week_second, side="right") - 1
        line = self.table_lines[i]
        end = (local - week_second + self.table_ends[i] - offset) * US
        if special is not None:
            # Most calls are on ordinary days: a gather by day finds the few that may not be.
            rel = day - special.first
            maybe = np.flatnonzero(special.day_mask[np.clip(rel, 0, special.span - 1)])
            if maybe.size:
                key = tid[maybe] * special.span + rel[maybe]
                j = np.minimum(np.searchsorted(special.keys, key), len(special.keys) - 1)
                hit = special.keys[j] == key
                at, j = maybe[hit], j[hit]
                if at.size:
                    line = line.copy()
                    end = end.copy()
                    off = offset[at] if np.ndim(offset) else offset
                    day_second = local[at] - day[at] * SECONDS_PER_DAY
                    k = np.searchsorted(special.entry_keys, j * SECONDS_PER_DAY + day_second,
                                        side="right") - 1
                    line[at] = special.lines[k]
                    end[at] = (local[at] - day_second + special.ends[k] - off) * US
        end = np.minimum(end, change)
        end = np.minimum(end, self.version_next[vi])
        return line, end

    def special(self, start: np.ndarray, seconds: np.ndarray) -> _Special | None:
        """The day tables of the special dates these calls can reach (None: none)."""
        if not self.any_dated:
            return None
        lo = int(start.min()) // US - 2 * SECONDS_PER_DAY
        hi = int((start + (seconds + self.slack) * US).max()) // US + 2 * SECONDS_PER_DAY
        first, last = lo // SECONDS_PER_DAY, hi // SECONDS_PER_DAY
        days = self.ct.special_days(first, last)
        if not days:
            return None
        span = last - first + 1
        keys, entry_keys, lines, ends = [], [], [], []
        for j, (tid, day, table) in enumerate(days):
            keys.append(tid * span + day - first)
            entry_keys += [j * SECONDS_PER_DAY + t for t in table.starts]
            lines += table.lines
            ends += table.ends
        mask = np.zeros(span, dtype=bool)
        mask[[day - first for _, day, _ in days]] = True
        return _Special(first, span, np.array(keys, dtype=I64), np.array(entry_keys, dtype=I64),
                        np.array(lines, dtype=I64), np.array(ends, dtype=I64), mask)

    def version_of(self, us: np.ndarray) -> np.ndarray:
        if len(self.version_starts) == 1:
            return np.where(us >= self.version_starts[0], 0, -1)
        return np.searchsorted(self.version_starts, us, side="right") - 1


@dataclass(frozen=True)
class _Special:
    """Day tables of special dates, keyed by table id * span + (local day - first)."""
    first: int
    span: int
    keys: np.ndarray                 # sorted
    entry_keys: np.ndarray           # special index * SECONDS_PER_DAY + day-second, sorted
    lines: np.ndarray
    ends: np.ndarray                 # day-second of the entry's end
    day_mask: np.ndarray             # [local day - first]: some table has a special day then


def _gather_by_version(per_version: dict[int, np.ndarray], vi: np.ndarray,
                       rows: np.ndarray | None) -> np.ndarray:
    """per_version[vi[j]][rows[j]] for each j (rows None: j itself)."""
    if len(per_version) == 1:
        (only,) = per_version.values()
        return only if rows is None else only[rows]
    out = np.empty(len(vi), dtype=I64)
    for v, arr in per_version.items():
        m = vi == v
        out[m] = arr[m] if rows is None else arr[rows[m]]
    return out


def price_many(tariff: Tariff, kind: np.ndarray, number: np.ndarray, payment: np.ndarray,
               start_us: np.ndarray, seconds: np.ndarray) -> BulkPrices:
    """Price calls given as parallel arrays: ``kind`` (JurisdictionClass codes), ``number``
    (E.164 digits as int64, 0 for none; see `e164_digits`), ``payment`` (PaymentType codes),
    ``start_us`` (microseconds since the epoch, UTC) and ``seconds`` (talk time)."""
    ct = compiled(tariff)
    a: _Arrays | None = getattr(ct, "_bulk", None)
    if a is None:
        a = _Arrays(ct)
        ct._bulk = a
    kind = np.asarray(kind, dtype=np.int8)
    number = np.asarray(number, dtype=I64)
    pay = np.asarray(payment, dtype=I64)
    start = np.asarray(start_us, dtype=I64)
    seconds = np.asarray(seconds, dtype=I64)
    n = len(start)
    if not len(kind) == len(number) == len(pay) == len(seconds) == n:
        raise ValueError("price_many needs arrays of one length")
    zeros = np.zeros(n, dtype=I64)
    error = np.zeros(n, dtype=np.int8)
    if n == 0:
        return BulkPrices(zeros, zeros, zeros, zeros, zeros, zeros, error)
    if (seconds < 0).any():
        raise ValueError(f"a call lasts 0 seconds or more (row {int(np.argmax(seconds < 0))})")
    if ((kind < 0) | (kind >= len(CLASS_BY_CODE))).any() or ((pay < 0) | (pay >= 4)).any():
        raise ValueError("kind or payment holds a code that is not a class or payment type")
    ndigits = (np.searchsorted(_POW10, number, side="right")).astype(I64)

    vi0 = a.version_of(start)
    error[vi0 < 0] = BulkError.NO_TARIFF_IN_FORCE
    resolved: dict[int, np.ndarray] = {}
    for v in (np.unique(vi0) if len(a.version_starts) > 1 else (0,)):
        if v >= 0:
            resolved[int(v)] = a.resolve(int(v), kind, number, pay, ndigits)
    if len(resolved) == 1 and (vi0 >= 0).all():
        (tid0,) = resolved.values()
    else:
        tid0 = np.full(n, -1, dtype=I64)
        for v, arr in resolved.items():
            m = vi0 == v
            tid0[m] = arr[m]
    error[(tid0 < 0) & (error == 0)] = BulkError.UNAUTHORIZED_DESTINATION
    ok = error == 0
    rows = None if ok.all() else np.flatnonzero(ok)
    if rows is not None and rows.size == 0:
        return BulkPrices(zeros, zeros, zeros, zeros, zeros, zeros, error)

    def pick(x):
        return x if rows is None else x[rows]

    s_start, s_sec, s_vi, s_tid = pick(start), pick(seconds), pick(vi0), pick(tid0)
    special = a.special(s_start, s_sec)
    line, end = a.locate(s_tid, s_start, s_vi, special)
    if a.any_closed:
        closed = a.closed[line]
        if closed.any():            # refused like the scalar path: no price, an error code
            error[np.flatnonzero(ok)[closed] if rows is not None else np.flatnonzero(closed)] = \
                BulkError.DESTINATION_CLOSED
            keep = ~closed
            rows = np.flatnonzero(ok)[keep] if rows is not None else np.flatnonzero(keep)
            if rows.size == 0:
                return BulkPrices(zeros, zeros, zeros, zeros, zeros, zeros, error)
            s_start, s_sec, s_vi, s_tid = s_start[keep], s_sec[keep], s_vi[keep], s_tid[keep]
            line, end = line[keep], end[keep]

    # Step 2: billed seconds by the governing line.
    g = a.groups
    d = np.maximum(s_sec, a.minimum[line]) if a.any_minimum else s_sec
    group = np.zeros(len(d), dtype=I64)
    for k in range(1, g):
        group += a.start_columns[k][line] < d
    flat = line * g + group
    gs = a.starts[flat]
    inc = a.increments[flat]
    billed = gs - (gs - d) // inc * inc
    billed = np.where(s_sec > 0, billed, 0)

    # Step 3, fast path: the whole billed time lies in the first slice.
    last = -((s_start - end) // US)
    p, u = a.prices[flat], a.pers[flat]
    subtotal = a.cumulative[flat] + (2 * (billed - gs) * p + u) // (2 * u)
    subtotal = np.where(billed > 0, subtotal, 0)
    walking = np.flatnonzero(last < billed)
    if walking.size:
        subtotal[walking], lost = _walk(a, walking, line, end, s_start, billed, s_vi, kind, number,
                                        pay, ndigits, rows, resolved, special)
        if lost.size:                # a later slice has no line for this destination
            where = lost if rows is None else rows[lost]
            error[where] = BulkError.UNAUTHORIZED_DESTINATION
    if a.any_connect:
        subtotal += np.where(s_sec > 0, a.connect[line], 0)

    # Step 4: total rounding and cost cap of the governing line.
    call = subtotal
    if a.any_rounding:
        method, q = a.rounding[line], a.quantum[line]
        call = np.select([method == 1, method == 2, method == 3],
                         [-(-subtotal // q) * q, (2 * subtotal + q) // (2 * q) * q,
                          subtotal // q * q], subtotal)
    if a.any_cap:
        cap = a.cap[line]
        call = np.where((cap >= 0) & (call > cap), cap, call)

    # Step 5: taxes and fees of the version at second 0.
    tax = np.zeros(len(call), dtype=I64)
    s_kind, s_number, s_pay, s_nd = pick(kind), pick(number), pick(pay), pick(ndigits)
    owner = a.line_owner[line]
    for oi, version in enumerate(a.owners):
        for sc in version.surcharges:
            m = owner == oi
            if sc.payment is not PaymentType.ANY:
                m &= s_pay == sc.payment.code
            if is_prefix(sc.destination):
                digits = sc.destination[1:]
                m &= ~a.refused[s_kind] & (s_nd >= len(digits))
                m &= s_number // _POW10[np.maximum(s_nd - len(digits), 0)] == int(digits)
            elif sc.destination != "*":
                m &= s_kind == _class_code(sc.destination)
            if sc.percent_ppm is not None:
                amount = (2 * call * sc.percent_ppm + 1_000_000) // 2_000_000
            else:
                amount = (2 * billed * sc.price_micros + sc.per_seconds) // (2 * sc.per_seconds)
            tax += np.where(m, amount, 0)

    out = [billed, np.where(s_sec > 0, a.connect[line], 0), call, tax, call + tax,
           a.version_numbers[s_vi]]
    final_ok = error == 0
    if rows is None and final_ok.all():
        return BulkPrices(*out, error)
    full = []
    for x in out:
        y = np.zeros(n, dtype=I64)
        if rows is None:
            y[:] = x
        else:
            y[rows] = x
        y[~final_ok] = 0
        full.append(y)
    return BulkPrices(*full, error)


def _class_code(value: str) -> int:
    for c in CLASS_BY_CODE:
        if c.value == value:
            return c.code
    raise ValueError(value)


def _walk(a: _Arrays, walking: np.ndarray, line0: np.ndarray, end0: np.ndarray, start: np.ndarray,
          billed: np.ndarray, vi0: np.ndarray, kind, number, pay, ndigits, rows, resolved,
          special: _Special | None):
    """Price calls that leave their first slice, slice by slice (step 3 in full). Returns their
    subtotals before the connect fee, and the positions (in ``walking``) of calls that reach an
    instant where no line covers them."""
    g = a.groups
    idx = np.arange(walking.size)               # positions into `walking` still walking
    sub = np.zeros(walking.size, dtype=I64)
    lost = []
    t0 = start[walking]
    b_all = billed[walking]
    line, end = line0[walking], end0[walking]
    pos = np.zeros(walking.size, dtype=I64)
    while idx.size:
        t = t0[idx]
        b = b_all[idx]
        last = np.minimum(-((t - end) // US), b)
        amount = np.zeros(idx.size, dtype=I64)
        for k in range(g):
            j = line * g + k
            lo = np.maximum(a.starts[j], pos)
            hi = np.minimum(a.ends[j], last)
            span = np.maximum(hi - lo, 0)
            u = a.pers[j]
            amount += (2 * span * a.prices[j] + u) // (2 * u)
        sub[idx] += amount
        more = last < b
        idx, pos, line = idx[more], last[more], line[more]
        if not idx.size:
            break
        at = t0[idx] + pos * US
        vi = a.version_of(at)
        if (vi < 0).any():
            raise AssertionError("a call walked back before its first version")
        rows_here = walking[idx] if rows is None else rows[walking[idx]]
        for v in np.unique(vi):
            if int(v) not in resolved:
                resolved[int(v)] = a.resolve(int(v), kind, number, pay, ndigits)
        tid = _gather_by_version(resolved, vi, rows_here)
        bad = tid < 0
        if bad.any():
            lost.append(idx[bad])
            idx, pos, at, vi, tid = idx[~bad], pos[~bad], at[~bad], vi[~bad], tid[~bad]
            line = line[~bad]
            if not idx.size:
                break
        found, end = a.locate(tid, at, vi, special)
        # Billed time that runs into a closed band is priced by the line before it.
        line = np.where(a.closed[found], line, found) if a.any_closed else found
    lost_at = np.concatenate(lost) if lost else np.zeros(0, dtype=I64)
    return sub, walking[lost_at] if lost_at.size else lost_at
