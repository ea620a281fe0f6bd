"""`ics rates import|export|versions|check|quote|rerate`: rate tables, caps, prices and re-rating."""
from __future__ import annotations

import csv
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from ops.cli import UsageError, changes, count, emit_json, exports, progress_wanted, reads

QUOTE_HORIZON_SECONDS = 4 * 3600   # --balance without --seconds: the longest call considered
RERATE_CHUNK_ROWS = 50_000          # rows priced per bulk call (and per progress-bar step)
PROGRESS_WIDTH = 30
_US = timedelta(microseconds=1)


def register(sub) -> None:
    p = sub.add_parser("rates", help="rate tables: import, export, versions, caps, quotes, re-rating")
    s = p.add_subparsers(dest="rates_command", metavar="ACTION", required=True)

    def owner(q, required: bool = False) -> None:
        g = q.add_mutually_exclusive_group(required=required)
        g.add_argument("--facility", metavar="F", help="facility id")
        g.add_argument("--agency", action="store_true",
                       help="the agency-wide default tariff (for facilities without one)")

    i = changes(s.add_parser("import", help="import a rate deck (CSV) as a new version, all or "
                                           "nothing"))
    i.add_argument("file", type=Path, help="the rate deck (CSV; docs/rates.md)")
    owner(i, required=True)
    i.add_argument("--effective", metavar="T", help="ISO instant the version takes effect "
                   "(default: now); a time without zone is UTC")
    i.add_argument("--dry-run", action="store_true", help="validate and check caps only")
    i.add_argument("--accept-violations", action="store_true",
                   help="import even if the deck breaks the facility's rate caps")
    i.set_defaults(func=_run(_import))

    e = exports(s.add_parser("export", help="write a version as a rate deck (CSV)"))
    owner(e)
    e.add_argument("--version", type=count(1), help="version number (default: the latest)")
    e.add_argument("--out", type=Path, help="file to write (default: standard output)")
    e.set_defaults(func=_run(_export))

    v = reads(s.add_parser("versions", help="list the versions of a tariff"))
    owner(v)
    v.set_defaults(func=_run(_versions))

    c = reads(s.add_parser("check", help="check tariffs against their facility's rate-cap "
                                         "profile (exit 1 on a violation)"))
    c.add_argument("--facility", metavar="F", help="one facility (default: all)")
    c.add_argument("--at", metavar="T", help="instant for the 15-minute prices and for which "
                   "versions count (in force then or later); default now")
    c.add_argument("--all-versions", action="store_true", help="check past versions too")
    c.set_defaults(func=_run(_check))

    q = reads(s.add_parser("quote", help="price one call, itemized; or how long a balance lasts"))
    q.add_argument("--facility", required=True, metavar="F", help="facility id")
    q.add_argument("--to", required=True, metavar="NUMBER", help="the number dialled")
    q.add_argument("--at", metavar="ISO", help="start; without zone: the facility's local time "
                   "(default: now)")
    q.add_argument("--seconds", type=count(1), help="talk seconds to price (with --balance: the "
                   f"longest call to consider, default {QUOTE_HORIZON_SECONDS})")
    q.add_argument("--balance", metavar="AMOUNT", help="how long AMOUNT (e.g. 12.50) lasts: "
                   "the longest call it pays for, and what that costs")
    q.add_argument("--from", dest="from_second", type=count(0), metavar="SECONDS",
                   help="price the slice from this call second on (a call in progress: "
                   "no connect fee)")
    q.add_argument("--type", default="debit", choices=["prepaid", "debit", "collect", "any"],
                   help="payment type (default debit)")
    q.set_defaults(func=_run(_quote))

    r = exports(s.add_parser("rerate", help="re-price a CSV of calls (bulk)"))
    r.add_argument("input", type=Path, help="CSV with facility, to, start, seconds, payment "
                   "(and optionally jurisdiction, e164)")
    r.add_argument("--out", required=True, type=Path, help="the priced CSV to write")
    r.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    r.set_defaults(func=_run(_rerate))


def _run(fn):
    def wrapper(args, ctx) -> int:
        from rating.deck import DeckError
        from rating.errors import RatingRefusal
        from rating.facility import UnknownFacility
        from rating.profiles import ProfileError

        args.currency = ctx.cfg.ledger.currency
        try:
            return ctx.run_with_connection(lambda conn: fn(args, conn))
        except (DeckError, RatingRefusal, UnknownFacility, ProfileError) as e:
            raise UsageError(str(e)) from None
    return wrapper


def _instant(text: str | None, *, local: str | None = None, what: str = "time") -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} {text!r}: not an ISO time such as 2024-06-01T12:00:00Z") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(local) if local else timezone.utc)
    return t.astimezone(timezone.utc)


def _owner(args) -> str | None:
    return None if getattr(args, "agency", False) else args.facility


async def _import(args, conn) -> int:
    from rating import store
    try:
        data = args.file.read_bytes()          # any bytes: what is not UTF-8 is named by line
    except OSError as e:
        raise UsageError(f"{args.file}: {e.strerror}") from None
    from ops.commands.operator import record_cli_change
    effective = _instant(args.effective, what="--effective")
    async with conn.transaction():         # the version and its audit row, or neither
        done = await store.import_deck(conn, data, facility_id=_owner(args),
                                       effective_from=effective, source=args.file.name,
                                       accept_violations=args.accept_violations,
                                       dry_run=args.dry_run)
        if not args.dry_run and not done.unchanged:
            v = done.version
            await record_cli_change(
                conn, "tariff.import", f"tariff:{_owner(args) or 'agency'}",
                after={"version": v.number, "effective_from": v.effective_from.isoformat(),
                       "file": args.file.name, "lines": len(v.lines),
                       "violations_accepted": [str(x) for x in done.violations]})
    for v in done.violations:
        print(f"warning: {v}", file=sys.stderr)
    who = _owner(args) or "agency"
    v = done.version
    if done.unchanged:
        print(f"unchanged: the deck is identical to {who} version {v.number}, in force since "
              f"{v.effective_from.isoformat()}; nothing was imported")
        return 0
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb} {who} version {v.number}: {len(v.lines)} lines, {len(v.surcharges)} taxes and "
          f"fees, effective {v.effective_from.isoformat()}")
    return 0


async def _export(args, conn) -> int:
    from rating import deck, store
    owner = _owner(args)
    if owner is None and not args.agency:
        raise UsageError("rates export: give --facility F or --agency")
    versions = await store.load_versions(conn, owner, args.version)
    if not versions:
        raise UsageError(f"{owner or 'agency'}: no tariff version"
                         + (f" {args.version}" if args.version else ""))
    v = max(versions, key=lambda x: x.number)
    text = deck.write(v.lines, v.surcharges, v.holidays, v.parent)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {owner or 'agency'} version {v.number} to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def _versions(args, conn) -> int:
    from rating import store
    owner = _owner(args)
    if owner is None and not args.agency:
        raise UsageError("rates versions: give --facility F or --agency")
    infos = await store.list_versions(conn, owner)
    now = datetime.now(timezone.utc)
    current = max((i for i in infos if i.effective_from <= now),
                  key=lambda i: (i.effective_from, i.number), default=None)
    if args.json:
        for i in infos:
            emit_json({"version": i.number, "effective_from": i.effective_from, "lines": i.lines,
                       "taxes": i.surcharges, "imported_at": i.imported_at, "source": i.source,
                       "in_force": i is current})
        return 0
    print(f"{'version':>7}  {'effective from (UTC)':<25} {'lines':>5} {'taxes':>5}  "
          f"{'imported':<20} source")
    for i in infos:
        mark = " (in force)" if i is current else ""
        print(f"{i.number:>7}  {i.effective_from.isoformat():<25} {i.lines:>5} {i.surcharges:>5}  "
              f"{i.imported_at.strftime('%Y-%m-%d %H:%M'):<20} {i.source}{mark}")
    if not infos:
        print("(no versions)")
    return 0


async def _check(args, conn) -> int:
    """Text for people; with --json one object {at, currency, facilities: [{facility, profile,
    tier, tariff, versions_checked, violations, fifteen_minutes}], violations}: prices and caps
    in micro-units, a violation's value and cap as the deck wrote them."""
    from ledger.money import format_amount
    from rating import facility as facilities
    from rating import store
    from rating.errors import RatingRefusal
    from rating.profiles import check, fifteen_minute_prices, load_profiles
    at = _instant(args.at, what="--at")
    profiles = load_profiles()
    targets = ([await facilities.load(conn, args.facility)] if args.facility
               else await facilities.load_all(conn))
    say = (lambda text: None) if args.json else print
    report = {"at": at, "currency": args.currency, "facilities": [], "violations": 0}
    if not targets:
        say("no facilities")
    failed = 0
    for f in targets:
        entry = {"facility": f.id, "profile": f.profile, "tier": None, "tariff": None,
                 "versions_checked": [], "violations": [], "fifteen_minutes": {}}
        report["facilities"].append(entry)
        profile = profiles.get(f.profile)
        say(f"== {f.id} ({f.name}), {f.kind} ADP {f.adp}, profile {f.profile}")
        if profile is None:
            say(f"   VIOLATION: unknown profile {f.profile!r}")
            entry["violations"].append({"field": "profile", "value": f.profile,
                                        "message": "unknown profile"})
            failed += 1
            continue
        tier = profile.tier_for(f)
        entry["tier"] = {"name": tier.name,
                         "cap_per_minute": {p.value: tier.cap(p) for p in tier.per_minute}}
        say(f"   tier {tier.name}: " + ", ".join(
            f"{p} {format_amount(c)}/min" for p, c in
            ((p.value, tier.cap(p)) for p in tier.per_minute)))
        tariff = await store.load_tariff(conn, f.id)
        if not tariff.versions:
            say("   no tariff (no version of its own nor an agency default)")
            continue
        in_force = tariff.version_at(at)
        counted = [v for v in tariff.versions if args.all_versions or v is in_force
                   or v.effective_from > at]
        found = [x for v in counted for x in check(profile, f, tariff, v)]
        source = "agency default" if tariff.facility_id is None else "own"
        entry["tariff"] = "agency" if tariff.facility_id is None else "own"
        entry["versions_checked"] = [v.number for v in counted]
        say(f"   {source} tariff, versions checked: {', '.join(str(v.number) for v in counted)}")
        for x in found:
            entry["violations"].append({"version": x.version, "line": x.line, "field": x.field,
                                        "value": x.value, "cap": x.cap, "profile": x.profile,
                                        "message": x.message})
            say(f"   VIOLATION v{x.version} line {x.line!r} {x.field}: {x.value} > cap {x.cap} "
                f"({x.profile}): {x.message}")
        failed += len(found)
        say(f"   15-minute call starting {at.isoformat()} (call charge, then with taxes):")
        table = fifteen_minute_prices(tariff, at)
        pays = sorted({p for _, p in table}, key=lambda p: p.code)
        say("   " + f"{'':<14}" + "".join(f"{p.value:>20}" for p in pays))
        for klass in sorted({k for k, _ in table}, key=lambda k: k.code):
            cells = []
            for p in pays:
                r = table[(klass, p)]
                entry["fifteen_minutes"].setdefault(klass.value, {})[p.value] = (
                    None if isinstance(r, RatingRefusal) else
                    {"call": r.call_micros, "total": r.total_micros})
                cells.append("refused" if isinstance(r, RatingRefusal) else
                             f"{format_amount(r.call_micros)} / {format_amount(r.total_micros)}")
            say("   " + f"{klass.value:<14}" + "".join(f"{c:>20}" for c in cells))
    report["violations"] = failed
    if args.json:
        emit_json(report)
    else:
        print(f"{failed} violation(s)")
    return 1 if failed else 0


def _price_json(p) -> dict:
    return {"seconds": p.seconds, "billed_seconds": p.billed_seconds, "version": p.version,
            "line": p.line,
            "spans": [{"offset": s.offset, "seconds": s.seconds, "billed_seconds": s.billed_seconds,
                       "version": s.version, "line": s.line, "from_second": s.from_second,
                       "price_micros": s.price_micros, "per_seconds": s.per_seconds,
                       "amount_micros": s.amount_micros} for s in p.spans],
            "connect_micros": p.connect_micros, "adjustment_micros": p.adjustment_micros,
            "call_micros": p.call_micros,
            "surcharges": [{"kind": i.kind, "name": i.name, "amount_micros": i.amount_micros}
                           for i in p.surcharges],
            "tax_micros": p.tax_micros, "total_micros": p.total_micros}


def _called(text: str, f):
    """The dialled number classified; an invalid or unknown one keeps its digits, so a deck's
    catch-all prefix line can price it."""
    from rating.jurisdiction import Jurisdiction, JurisdictionClass, classify, dialled_e164
    j = classify(text, f.state, f.local_exchanges)
    if j.kind in (JurisdictionClass.INVALID, JurisdictionClass.UNKNOWN) and not j.e164:
        digits = dialled_e164(text)
        if digits:
            j = Jurisdiction(j.kind, digits)
    return j


async def _quote(args, conn) -> int:
    from ledger.money import AmountInvalid, format_amount, parse_amount
    from rating import facility as facilities
    from rating import store
    from rating.pricing import longest_call, price
    from rating.tariff import PaymentType
    if args.balance is None and args.seconds is None:
        raise UsageError("rates quote: give --seconds N (the call to price) or --balance AMOUNT")
    if args.seconds is not None and args.seconds < 0:
        raise UsageError(f"--seconds {args.seconds}: a call lasts 0 seconds or more")
    if args.from_second is not None and args.from_second < 0:
        raise UsageError(f"--from {args.from_second}: a call second is 0 or more")
    if args.balance is not None and args.from_second is not None:
        raise UsageError("rates quote: --balance prices a new call; --from a call in progress")
    available = None
    if args.balance is not None:
        try:
            available = parse_amount(args.balance, allow_zero=True)
        except AmountInvalid as e:
            raise UsageError(f"--balance {e}") from None
    f = await facilities.load(conn, args.facility)
    at = _instant(args.at, local=f.time_zone, what="--at")
    j = _called(args.to, f)
    tariff = await store.load_tariff(conn, f.id)
    pay = PaymentType(args.type)
    head = {"facility": f.id, "to": args.to, "e164": j.e164, "jurisdiction": j.kind.value,
            "payment_type": args.type, "at": at.isoformat(), "currency": args.currency}
    zone = ZoneInfo(f.time_zone)
    if available is not None:
        horizon = QUOTE_HORIZON_SECONDS if args.seconds is None else args.seconds
        best = longest_call(tariff, j, pay, at, available, horizon)
        if args.json:
            print(json.dumps({**head, "balance_micros": available, "max_seconds": best.seconds,
                              "total_micros": best.total_micros, "limited_by": best.limited_by,
                              "horizon_seconds": horizon}, indent=2))
            return 0
        m, sec = divmod(best.seconds, 60)
        print(f"{args.to} -> {j.e164 or '-'} {j.kind.value}, {args.type}, from "
              f"{at.astimezone(zone).isoformat()}")
        print(f"  a balance of {format_amount(available)} lasts {best.seconds} s ({m}:{sec:02d}), "
              f"which costs {format_amount(best.total_micros)}; limited by {best.limited_by}")
        print(f"max_seconds {best.seconds}")
        return 0
    first = args.from_second or 0
    p = price(tariff, j, pay, at, first + args.seconds)
    if args.from_second is not None:
        before = price(tariff, j, pay, at, first)
        call, tax = p.call_micros - before.call_micros, p.tax_micros - before.tax_micros
        if args.json:
            print(json.dumps({**head, "from": first, "to_second": first + args.seconds,
                              "call_micros": call, "tax_micros": tax, "total_micros": call + tax,
                              "whole_call": _price_json(p)}, indent=2))
            return 0
        print(f"{args.to} -> {j.e164 or '-'} {j.kind.value}, {args.type}, call from "
              f"{at.astimezone(zone).isoformat()}: talk seconds {first} to {first + args.seconds}"
              f" (a continuation: no connect fee)")
        print(f"  {'call charge':<58} {format_amount(call):>12}")
        print(f"  {'taxes and fees':<58} {format_amount(tax):>12}")
        print(f"  {'total':<58} {format_amount(call + tax):>12}")
        return 0
    if args.json:
        print(json.dumps({**head, **_price_json(p)}, indent=2))
        return 0
    print(f"{args.to} -> {j.e164 or '-'} {j.kind.value}, {args.type}, from "
          f"{at.astimezone(zone).isoformat()} for {args.seconds} s (billed {p.billed_seconds} s)")
    print(f"  {'from':>6} {'talk':>6} {'billed':>6}  {'line':<20} {'v':>3} {'rate':>18} "
          f"{'amount':>12}")
    for s in p.spans:
        rate = f"{format_amount(s.price_micros)}/{s.per_seconds}s"
        print(f"  {s.offset:>6} {s.seconds:>6} {s.billed_seconds:>6}  {s.line:<20} {s.version:>3} "
              f"{rate:>18} {format_amount(s.amount_micros):>12}")
    if p.connect_micros:
        print(f"  {'connect fee':<58} {format_amount(p.connect_micros):>12}")
    if p.adjustment_micros:
        print(f"  {'rounding and cap':<58} {format_amount(p.adjustment_micros):>12}")
    print(f"  {'call charge':<58} {format_amount(p.call_micros):>12}")
    for i in p.surcharges:
        print(f"  {i.kind + ' ' + i.name:<58} {format_amount(i.amount_micros):>12}")
    print(f"  {'total':<58} {format_amount(p.total_micros):>12}")
    print(f"total_micros {p.total_micros}")
    return 0


# -- re-rating ----------------------------------------------------------------------------------
RERATE_OUT = ("jurisdiction", "e164", "billed_seconds", "call_micros", "tax_micros",
              "total_micros", "version", "error")


class _Progress:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.started = max(total, 1), quiet, time.monotonic()

    def show(self, done: int) -> None:
        if self.quiet:
            return
        filled = PROGRESS_WIDTH * done // self.total
        rate = done / max(time.monotonic() - self.started, 1e-9)
        print(f"\r[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {100 * done // self.total:3d}% "
              f"{done}/{self.total} calls, {rate:,.0f}/s", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if not self.quiet:
            print(file=sys.stderr)


async def _rerate(args, conn) -> int:
    import numpy as np

    from rating import facility as facilities
    from rating import store
    from rating.bulk import BulkError, price_many
    from rating.jurisdiction import JurisdictionClass, classify
    from rating.tariff import PaymentType
    try:
        with open(args.input, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except OSError as e:
        raise UsageError(f"{args.input}: {e.strerror}") from None
    need = {"facility", "to", "start", "seconds"}
    missing = need - set(header)
    if missing:
        raise UsageError(f"{args.input}: line 1: missing column(s) {', '.join(sorted(missing))}")
    pay_column = "payment" if "payment" in header else ("payment_type" if "payment_type" in header
                                                         else None)
    n = len(rows)
    kind = np.zeros(n, dtype=np.int8)
    number = np.zeros(n, dtype=np.int64)
    pay = np.zeros(n, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    seconds = np.zeros(n, dtype=np.int64)
    e164s: list[str] = [""] * n
    by_facility: dict[str, list[int]] = {}
    known: dict[str, object] = {}
    classified: dict[tuple[str, str], tuple[JurisdictionClass, str | None]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for i, r in enumerate(rows):
        line = i + 2
        fid = (r.get("facility") or "").strip()
        if fid not in known:
            try:
                known[fid] = await facilities.load(conn, fid)
            except facilities.UnknownFacility:
                raise UsageError(f"{args.input}: line {line}, column facility, value {fid!r}: "
                                 "unknown facility") from None
        f = known[fid]
        try:
            t = datetime.fromisoformat(r["start"].strip().replace("Z", "+00:00"))
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
            start[i] = (t - epoch) // _US
        except ValueError:
            raise UsageError(f"{args.input}: line {line}, column start, value {r['start']!r}: "
                             "not an ISO time") from None
        try:
            seconds[i] = int(r["seconds"])
            if seconds[i] < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"{args.input}: line {line}, column seconds, value "
                             f"{r['seconds']!r}: a whole number of seconds >= 0") from None
        text = pay_column and (r.get(pay_column) or "").strip() or "debit"
        try:
            pay[i] = PaymentType(text).code
        except ValueError:
            raise UsageError(f"{args.input}: line {line}, column {pay_column}, value {text!r}: "
                             "prepaid, debit, collect or any") from None
        given = (r.get("jurisdiction") or "").strip()
        if given:
            try:
                klass, e164 = JurisdictionClass(given), (r.get("e164") or "").strip() or None
            except ValueError:
                raise UsageError(f"{args.input}: line {line}, column jurisdiction, value "
                                 f"{given!r}: not a jurisdiction class") from None
        else:
            key = (fid, r["to"])
            hit = classified.get(key)
            if hit is None:
                j = classify(r["to"], f.state, f.local_exchanges)
                hit = classified[key] = (j.kind, j.e164)
            klass, e164 = hit
        kind[i] = klass.code
        number[i] = int(e164[1:]) if e164 else 0
        e164s[i] = e164 or ""
        by_facility.setdefault(fid, []).append(i)

    out = {k: np.zeros(n, dtype=np.int64) for k in RERATE_OUT if k not in ("jurisdiction", "e164")}
    progress = _Progress(n, args.quiet or not progress_wanted())
    done = 0
    progress.show(0)
    for fid, idx in by_facility.items():
        tariff = await store.load_tariff(conn, fid)
        ids = np.array(idx, dtype=np.int64)
        for a in range(0, len(ids), RERATE_CHUNK_ROWS):
            part = ids[a:a + RERATE_CHUNK_ROWS]
            if tariff.versions:
                got = price_many(tariff, kind[part], number[part], pay[part], start[part],
                                 seconds[part])
                for k in ("billed_seconds", "call_micros", "tax_micros", "total_micros",
                          "version", "error"):
                    out[k][part] = getattr(got, k)
            else:
                out["error"][part] = BulkError.NO_TARIFF_IN_FORCE
            done += len(part)
            progress.show(done)
    progress.end()
    names = {e.value: e.name.lower() for e in BulkError}
    classes = {c.code: c.value for c in JurisdictionClass}
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header + [c for c in RERATE_OUT if c not in header])
        extra = [c for c in RERATE_OUT if c not in header]
        for i, r in enumerate(rows):
            computed = {"jurisdiction": classes[int(kind[i])], "e164": e164s[i],
                        "error": "" if out["error"][i] == 0 else names[int(out["error"][i])]}
            for k in ("billed_seconds", "call_micros", "tax_micros", "total_micros", "version"):
                computed[k] = int(out[k][i])
            values = [computed[h] if h in computed else r.get(h, "") for h in header]
            w.writerow(values + [computed[c] for c in extra])
    failed = int((out["error"] != 0).sum())
    print(f"re-rated {n} calls into {args.out}: {n - failed} priced, {failed} refused",
          file=sys.stderr)
    return 0

