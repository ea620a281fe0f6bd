"""`ics audit`: the audit trail, newest first (the same query as GET /api/v1/audit)."""
from __future__ import annotations

import datetime as dt
import json

from ops.cli import UsageError, count, emit_json, reads


def register(sub) -> None:
    p = reads(sub.add_parser("audit", help="the audit trail of changes (who, when, what, before, "
                                           "after)"))
    p.add_argument("--actor", help="only this actor's, e.g. cli:alice or api:bob")
    p.add_argument("--action", help="only this action, e.g. facility.update")
    p.add_argument("--target", help="only this target, e.g. facility:north")
    p.add_argument("--since", help="ISO time with zone, e.g. 2026-01-01T00:00:00Z")
    p.add_argument("--until", help="ISO time with zone (exclusive)")
    p.add_argument("--limit", type=count(1), default=50, metavar="N", help="newest N (default 50)")
    p.set_defaults(func=_audit)


def _time(name: str, text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--{name}: {text!r} is not an ISO time") from None
    if t.tzinfo is None:
        raise UsageError(f"--{name}: give a time zone, e.g. {text}Z")
    return t


def _audit(args, ctx) -> int:
    from web.audit import AUDIT_PAGE_MAX, events
    if not 1 <= args.limit <= AUDIT_PAGE_MAX:
        raise UsageError(f"--limit must be 1..{AUDIT_PAGE_MAX}")
    since, until = _time("since", args.since), _time("until", args.until)

    async def run(conn):
        for e in await events(conn, actor=args.actor, action=args.action, target=args.target,
                              since=since, until=until, limit=args.limit):
            if args.json:
                emit_json(e.__dict__)
            else:
                change = json.dumps(e.after, default=str) if e.after is not None else ""
                print(f"{e.seq:>8} {e.at:%Y-%m-%d %H:%M:%S} {e.actor:<16} {e.via:<4} "
                      f"{e.action:<24} {e.target:<24} {change}")
    return ctx.run_with_connection(run)
