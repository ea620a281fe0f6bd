"""`ics cdr list|export`: call detail records, filtered, on the API's own code (web.cdrs)."""
from __future__ import annotations

import datetime as dt
import json
import sys

from ops.cli import UsageError, count, exports, reads


def register(sub) -> None:
    p = sub.add_parser("cdr", help="call detail records: list and CSV export")
    s = p.add_subparsers(dest="cdr_command", metavar="ACTION", required=True)
    for name, text in (("list", "one page of CDRs, newest first"),
                       ("export", "every matching CDR as CSV (streamed)")):
        a = (reads if name == "list" else exports)(s.add_parser(name, help=text))
        a.add_argument("--facility", help="facility id")
        a.add_argument("--inmate", help="inmate number")
        a.add_argument("--number", help="the number called")
        a.add_argument("--since", help="ended at or after (ISO time with zone)")
        a.add_argument("--until", help="ended before (ISO time with zone)")
        a.add_argument("--disposition", help="e.g. completed, refused, no_answer")
        a.add_argument("--jurisdiction", help="local, intrastate, interstate or international")
        if name == "list":
            a.add_argument("--limit", type=count(1), default=50, metavar="N",
                           help="page size (default 50)")
            a.add_argument("--cursor", help="next_cursor printed by the previous page")
            a.set_defaults(func=_list)
        else:
            a.add_argument("--output", "-o", help="file (default: standard output)")
            a.set_defaults(func=_export)


def _filter(args):
    from pydantic import ValidationError

    from web.cdrs import CdrFilter
    from web.endpoints.cdrs import CdrFilterQuery
    raw = {k: getattr(args, k) for k in ("facility", "inmate", "number", "since", "until",
                                         "disposition", "jurisdiction")
           if getattr(args, k) is not None}
    try:
        q = CdrFilterQuery.model_validate(raw)      # the API's own rules, field by field
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "filters"
        raise UsageError(f"--{field}: {err['msg']}") from None
    number = None
    if q.number is not None:
        from switch.rules.numbers import InvalidNumber, to_e164
        try:
            number = to_e164(q.number)
        except InvalidNumber as e:
            raise UsageError(f"--number: {e}") from None
    return CdrFilter(facilities=None if q.facility is None else [q.facility], inmate=q.inmate,
                     number=number, since=q.since, until=q.until, disposition=q.disposition,
                     jurisdiction=q.jurisdiction)


def _list(args, ctx) -> int:
    from web.cdrs import CursorInvalid, page
    from web.endpoints.cdrs import cdr_out
    from web.endpoints.common import PAGE_SIZE_MAX
    if not 1 <= args.limit <= PAGE_SIZE_MAX:
        raise UsageError(f"--limit must be 1..{PAGE_SIZE_MAX}")
    f = _filter(args)

    async def run(conn):
        try:
            rows, cursor = await page(conn, f, limit=args.limit, cursor=args.cursor)
        except CursorInvalid as e:
            raise UsageError(f"--cursor: {e}") from None
        for r in rows:
            c = cdr_out(r)
            if args.json:
                print(c.model_dump_json())
            else:
                print(f"{c.ended_at:%Y-%m-%d %H:%M:%S} {c.facility:<12} {c.inmate:<10} "
                      f"{c.number:<16} {c.jurisdiction:<13} {c.disposition:<15} "
                      f"{c.billed_seconds:>6}s {c.total_amount:>10} {c.call_id}")
        if cursor:
            print(f"next: --cursor {cursor}", file=sys.stderr)
    return ctx.run_with_connection(run)


def _export(args, ctx) -> int:
    from web.cdrs import export_csv
    f = _filter(args)

    async def run(conn):
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            async def sink(chunk: bytes) -> None:
                out.write(chunk)
            async with conn.transaction(readonly=True, isolation="repeatable_read"):
                await export_csv(conn, f, sink)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
    try:
        return ctx.run_with_connection(run)
    except OSError as e:
        raise UsageError(f"--output: {e}") from None
