"""The one pricing definition: (tariff, destination, payment type, start, duration) -> Price.

How a call of ``d`` seconds starting at ``t0`` is priced (docs/rates.md says the same for people):

1. Call second ``k`` (the interval [k, k+1) s after t0) is priced by the version and line in force
   at instant t0 + k. The *governing line* is the one in force at second 0.
2. The governing line measures the call. A call of 0 s costs nothing (it is still refused if no
   line covers it). Otherwise d' = max(d, minimum_seconds); in the rate group g where
   from_second(g) < d' <= from_second(g+1), the billed duration is
   B = from_second(g) + ceil((d' - from_second(g)) / increment(g)) * increment(g).
3. [0, B) is cut into spans wherever the line in force changes (band change, version), at local
   midnight, where the facility's UTC offset changes, and at the rate-group starts of the line in
   force. A span of b seconds at price P per U seconds costs round_half_up(b * P / U) micro-units:
   the only rounding of a rate, done once per span, in exact integer arithmetic.
4. call = min(round(connect fee + sum of spans), cost cap), with the governing line's connect fee,
   total rounding (up, half-up, down to N decimals) and cap.
5. Taxes and fees of the version in force at second 0 (of the fallback plan's version when the
   destination is priced by a fallback), every one that matches: a percent of
   ``call``, or P per U seconds of B, each round_half_up to the micro-unit. total = call + those.

Every step is non-decreasing in ``d``, so ``total`` is too, and the live charge of any stretch of a
call is a difference of totals (`period_micros`). `rating.bulk` prices arrays of calls by the same
steps and must agree to the micro-unit (a property test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from rating.clock import US, from_micros, to_micros
from rating.compiled import CompiledTariff, CompiledVersion, LineRates, compiled
from rating.errors import DestinationClosed, NoTariffInForce, UnauthorizedDestination
from rating.jurisdiction import Jurisdiction, JurisdictionClass
from rating.tariff import CapAction, Line, PaymentType, Rounding, Surcharge, Tariff

__all__ = [
    "Span",
    "SurchargeItem",
    "Price",
    "Rate",
    "price",
    "total_micros",
    "period_micros",
    "totals",
    "affordable_seconds",
    "select_line",
    "rate_at",
    "round_total",
    "half_up",
    "ceiling_seconds",
    "callable_seconds",
    "longest_call",
    "Longest",
]


# Span, SurchargeItem and Price are named tuples: immutable like frozen dataclasses, and built
# several times faster, which is most of the cost of a real-time quote.
class Span(NamedTuple):
    """One itemized stretch of billed time at one rate."""

    offset: int  # call second where it starts
    seconds: int  # talk seconds in it (billed time past the end of the call has none)
    billed_seconds: int
    version: int
    line: str
    from_second: int  # the rate group
    price_micros: int  # per `per_seconds`
    per_seconds: int
    amount_micros: int


class SurchargeItem(NamedTuple):
    kind: str  # tax | fee
    name: str
    amount_micros: int


class Price(NamedTuple):
    seconds: int
    billed_seconds: int
    version: int  # the version in force at second 0
    line: str  # the governing line
    spans: tuple[Span, ...]
    connect_micros: int
    adjustment_micros: int  # total rounding and cost cap: call - (connect + spans), <= 0 for a cap
    call_micros: int
    surcharges: tuple[SurchargeItem, ...]
    tax_micros: int  # taxes and fees
    total_micros: int


@dataclass(frozen=True, slots=True)
class Rate:
    """What the IVR announces: the line in force now and its per-minute price per rate group."""

    line: str
    version: int
    connect_micros: int
    per_minute_micros: tuple[tuple[int, int], ...]  # (from_second, micro-units per minute)

    @property
    def first_minute_micros(self) -> int:
        return self.per_minute_micros[0][1]


def half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves up; both non-negative, exact."""
    return (2 * numerator + denominator) // (2 * denominator)


def round_total(micros: int, method: Rounding, decimals: int) -> int:
    if method is Rounding.NONE or decimals >= 6:
        return micros
    q: int = 10 ** (6 - decimals)
    if method is Rounding.UP:
        return -(-micros // q) * q
    if method is Rounding.DOWN:
        return micros // q * q
    return half_up(micros, q) * q


def _destination(jurisdiction: Jurisdiction | JurisdictionClass) -> tuple[JurisdictionClass, str]:
    if isinstance(jurisdiction, JurisdictionClass):
        return jurisdiction, ""
    return jurisdiction.kind, jurisdiction.digits


def _start(start_utc: datetime | int) -> int:
    return start_utc if isinstance(start_utc, int) else to_micros(start_utc)


def _locate(
    ct: CompiledTariff, kind: JurisdictionClass, digits: str, pay: PaymentType, us: int
) -> tuple[CompiledVersion, int, int]:
    """(version, line id, instant the answer may next change) at instant ``us``."""
    vi = ct.version_index(us)
    if vi < 0:
        raise NoTariffInForce(ct.tariff.facility_id, from_micros(us).isoformat())
    cv = ct.versions[vi]
    tid = cv.resolve(kind, digits, pay)
    if tid < 0:
        raise UnauthorizedDestination(
            kind.value + (f" +{digits}" if digits else ""), pay.value, from_micros(us).isoformat()
        )
    lid, end_us = ct.locate(tid, us)
    return cv, lid, min(end_us, cv.next_start_us)


def billed_seconds(rates: LineRates, seconds: int) -> int:
    """Step 2: the billed duration of a call of ``seconds`` measured by its governing line."""
    if seconds <= 0:
        return 0
    d = max(seconds, rates.line.minimum_seconds)
    g = 0
    for i, s in enumerate(rates.starts):
        if s < d:
            g = i
    s, inc = rates.starts[g], rates.increments[g]
    return s + -(-(d - s) // inc) * inc


def _run(
    ct: CompiledTariff,
    kind: JurisdictionClass,
    digits: str,
    pay: PaymentType,
    t0: int,
    seconds: int,
    spans: list[Span] | None,
) -> tuple[CompiledVersion, LineRates, int, int, int, int]:
    """Steps 1-4: (governing version, governing line, billed seconds, connect, call micro-units).
    Appends a Span per span to ``spans`` when it is a list."""
    if seconds < 0:
        raise ValueError(f"a call lasts 0 seconds or more, not {seconds}")
    cv0, lid, end_us = _locate(ct, kind, digits, pay, t0)
    gov = ct.lines[lid]
    if gov.closed:
        raise DestinationClosed(
            kind.value + (f" +{digits}" if digits else ""),
            pay.value,
            from_micros(t0).isoformat(),
            gov.line.name,
        )
    billed = billed_seconds(gov, seconds)
    subtotal = connect = gov.line.connect_micros if seconds > 0 else 0
    pos = 0
    rates = gov
    while pos < billed:
        end = -((t0 - end_us) // US)  # first call second at or after end_us
        if end > billed:
            end = billed
        for s, e, p, u in zip(rates.starts, rates.ends, rates.prices, rates.pers, strict=True):
            lo = s if s > pos else pos
            hi = e if e < end else end
            if hi > lo:
                amount = (2 * (hi - lo) * p + u) // (2 * u)
                subtotal += amount
                if spans is not None:
                    talk = (hi if hi < seconds else seconds) - lo
                    spans.append(
                        Span(
                            lo,
                            talk if talk > 0 else 0,
                            hi - lo,
                            rates.version,
                            rates.line.name,
                            s,
                            p,
                            u,
                            amount,
                        )
                    )
        pos = end
        if pos < billed:
            _, lid, end_us = _locate(ct, kind, digits, pay, t0 + pos * US)
            if not ct.lines[lid].closed:  # billed time into a closed band: the line before
                rates = ct.lines[lid]
    line = gov.line
    call = round_total(subtotal, line.rounding, line.decimals)
    if line.cost_cap_micros is not None and call > line.cost_cap_micros:
        call = line.cost_cap_micros
    return cv0, gov, billed, connect, subtotal, call


def _surcharge_amount(s: Surcharge, call: int, billed: int) -> int:
    if s.percent_ppm is not None:
        return half_up(call * s.percent_ppm, 1_000_000)
    assert s.price_micros is not None and s.per_seconds is not None  # validated: one or other
    return half_up(billed * s.price_micros, s.per_seconds)


def price(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    seconds: int,
) -> Price:
    """The itemized price of a call of ``seconds`` starting at ``start_utc`` (an aware datetime,
    or microseconds since the epoch). Raises UnauthorizedDestination or NoTariffInForce."""
    ct = compiled(tariff)
    kind, digits = _destination(jurisdiction)
    spans: list[Span] = []
    cv0, gov, billed, connect, subtotal, call = _run(
        ct, kind, digits, payment_type, _start(start_utc), seconds, spans
    )
    items = tuple(
        SurchargeItem(s.kind.value, s.name, _surcharge_amount(s, call, billed))
        for s in ct.surcharges_of(gov, kind, digits, payment_type)
    )
    tax = 0
    for i in items:
        tax += i.amount_micros
    return Price(
        seconds,
        billed,
        cv0.version.number,
        gov.line.name,
        tuple(spans),
        connect,
        call - subtotal,
        call,
        items,
        tax,
        call + tax,
    )


def total_micros(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    seconds: int,
) -> int:
    """`price(...).total_micros` without building the itemization."""
    ct = compiled(tariff)
    kind, digits = _destination(jurisdiction)
    _, gov, billed, _, _, call = _run(
        ct, kind, digits, payment_type, _start(start_utc), seconds, None
    )
    tax = 0
    for s in ct.surcharges_of(gov, kind, digits, payment_type):
        tax += _surcharge_amount(s, call, billed)
    return call + tax


def totals(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    first_seconds: int,
    last_seconds: int,
) -> list[tuple[int, int]]:
    """(call_micros, tax_micros) of `price` for every duration first_seconds..last_seconds, in
    one walk: the spans of a call of ``last_seconds`` cut, up to its billed duration, every
    shorter call of the same start (steps 1 and 3 depend on the start and the instant, never on
    the duration), so each shorter one takes its spans up to its own billed duration, the last
    one cut short and rated by step 3's rule. A live call's price totals are read a period's
    seconds at a time. Raises as `price(..., last_seconds)` does."""
    if not 0 <= first_seconds <= last_seconds:
        raise ValueError(f"durations run forward from 0: {first_seconds} -> {last_seconds}")
    ct = compiled(tariff)
    kind, digits = _destination(jurisdiction)
    spans: list[Span] = []
    _, gov, _, _, _, _ = _run(
        ct, kind, digits, payment_type, _start(start_utc), last_seconds, spans
    )
    surcharges = ct.surcharges_of(gov, kind, digits, payment_type)
    line = gov.line
    connect, cap = line.connect_micros, line.cost_cap_micros
    rounding, decimals = line.rounding, line.decimals
    out: list[tuple[int, int]] = []
    k, whole = 0, 0  # spans[:k] end at or before the billed duration; `whole` is their sum
    for d in range(first_seconds, last_seconds + 1):
        billed = billed_seconds(gov, d)
        while k < len(spans) and spans[k].offset + spans[k].billed_seconds <= billed:
            whole += spans[k].amount_micros
            k += 1
        subtotal = whole + (connect if d > 0 else 0)
        if k < len(spans) and spans[k].offset < billed:
            cut = spans[k]
            subtotal += half_up((billed - cut.offset) * cut.price_micros, cut.per_seconds)
        call = round_total(subtotal, rounding, decimals)
        if cap is not None and call > cap:
            call = cap
        tax = 0
        for sc in surcharges:
            tax += _surcharge_amount(sc, call, billed)
        out.append((call, tax))
    return out


def period_micros(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    from_seconds: int,
    to_seconds: int,
) -> int:
    """The charge of talk seconds (from_seconds, to_seconds] of a live call: a difference of
    totals, so the periods of a call add up exactly to the price of the whole call."""
    if not 0 <= from_seconds <= to_seconds:
        raise ValueError(f"a billing period runs forward: {from_seconds} -> {to_seconds}")
    start = _start(start_utc)
    return total_micros(tariff, jurisdiction, payment_type, start, to_seconds) - total_micros(
        tariff, jurisdiction, payment_type, start, from_seconds
    )


def affordable_seconds(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    available_micros: int,
    seconds_max: int,
) -> int:
    """The longest duration in [0, seconds_max] whose total (connect fee, increments, minimum,
    taxes included) is at most ``available_micros``: a dry run of the debit. Totals never
    decrease with duration, so a binary search over them is exact."""
    if seconds_max < 0:
        raise ValueError(f"seconds_max must be >= 0, not {seconds_max}")
    start = _start(start_utc)

    def total(d: int) -> int:
        return total_micros(tariff, jurisdiction, payment_type, start, d)

    if available_micros < 0 or total(0) > available_micros:
        return 0
    if total(seconds_max) <= available_micros:
        return seconds_max
    lo, hi = 0, seconds_max  # total(lo) <= available < total(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if total(mid) <= available_micros:
            lo = mid
        else:
            hi = mid
    return lo


def ceiling_seconds(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    seconds_max: int,
) -> int:
    """The longest duration in [0, seconds_max] before the governing line's spending ceiling
    stops the call: with ``cap_action`` stop, the call charge before the cap (connect fee and total
    rounding included) must not exceed ``cost_cap``. Without one, ``seconds_max``."""
    if seconds_max < 0:
        raise ValueError(f"seconds_max must be >= 0, not {seconds_max}")
    ct = compiled(tariff)
    kind, digits = _destination(jurisdiction)
    start = _start(start_utc)
    _, lid, _ = _locate(ct, kind, digits, payment_type, start)
    line = ct.lines[lid].line
    if line.cap_action is not CapAction.STOP or line.cost_cap_micros is None:
        return seconds_max
    cap = line.cost_cap_micros

    def charge(d: int) -> int:
        _, _, _, _, subtotal, _ = _run(ct, kind, digits, payment_type, start, d, None)
        return round_total(subtotal, line.rounding, line.decimals)

    if charge(seconds_max) <= cap:
        return seconds_max
    lo, hi = 0, seconds_max  # charge(lo) <= cap < charge(hi); charge(0) = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if charge(mid) <= cap:
            lo = mid
        else:
            hi = mid
    return lo


def callable_seconds(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    seconds_max: int,
) -> int:
    """Seconds from the start until the destination's next closed band (or a version that does
    not cover it), at most ``seconds_max``. Raises DestinationClosed if it is closed at the start
    (and UnauthorizedDestination or NoTariffInForce as `price` does)."""
    ct = compiled(tariff)
    kind, digits = _destination(jurisdiction)
    start = _start(start_utc)
    _, lid, end_us = _locate(ct, kind, digits, payment_type, start)
    if ct.lines[lid].closed:
        raise DestinationClosed(
            kind.value + (f" +{digits}" if digits else ""),
            payment_type.value,
            from_micros(start).isoformat(),
            ct.lines[lid].line.name,
        )
    limit = start + seconds_max * US
    while end_us < limit:
        try:
            _, lid, nxt = _locate(ct, kind, digits, payment_type, end_us)
        except (UnauthorizedDestination, NoTariffInForce):
            break
        if ct.lines[lid].closed:
            break
        end_us = nxt
    return min(seconds_max, (end_us - start) // US) if end_us < limit else seconds_max


@dataclass(frozen=True, slots=True)
class Longest:
    """The longest call a balance and the tariff allow now, and why it is not longer."""

    seconds: int
    total_micros: int  # what those seconds cost, taxes included
    limited_by: str  # balance | ceiling | closure | horizon


def longest_call(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    start_utc: datetime | int,
    available_micros: int,
    seconds_max: int,
) -> Longest:
    """How long ``available_micros`` lets a call to this destination last from ``start_utc``:
    the least of what the balance pays for, the spending ceiling, the next closed band and
    ``seconds_max``. Raises as `price` does (DestinationClosed when it is closed now)."""
    start = _start(start_utc)
    limits = {
        "closure": callable_seconds(tariff, jurisdiction, payment_type, start, seconds_max),
        "ceiling": ceiling_seconds(tariff, jurisdiction, payment_type, start, seconds_max),
        "balance": affordable_seconds(
            tariff, jurisdiction, payment_type, start, available_micros, seconds_max
        ),
    }
    why = min(limits, key=limits.__getitem__)
    seconds = limits[why]
    return Longest(
        seconds,
        total_micros(tariff, jurisdiction, payment_type, start, seconds),
        why if seconds < seconds_max else "horizon",
    )


def select_line(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    at_utc: datetime | int,
) -> Line:
    """The line in force for this destination and payment type at ``at_utc``."""
    kind, digits = _destination(jurisdiction)
    _, lid, _ = _locate(compiled(tariff), kind, digits, payment_type, _start(at_utc))
    return compiled(tariff).lines[lid].line


def rate_at(
    tariff: Tariff,
    jurisdiction: Jurisdiction | JurisdictionClass,
    payment_type: PaymentType,
    at_utc: datetime | int,
) -> Rate:
    """Per-minute prices of the line in force, for "this call costs N cents per minute"."""
    kind, digits = _destination(jurisdiction)
    ct = compiled(tariff)
    _, lid, _ = _locate(ct, kind, digits, payment_type, _start(at_utc))
    r = ct.lines[lid]
    return Rate(
        r.line.name,
        r.version,
        r.line.connect_micros,
        tuple((s, half_up(60 * p, u)) for s, p, u in zip(r.starts, r.prices, r.pers, strict=True)),
    )
