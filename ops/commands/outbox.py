"""`ics outbox`: mail to account holders (email codes, notices), newest first, sent or not."""
from __future__ import annotations

import argparse

import asyncpg

from ops.cli import Context, UsageError, emit_json, reads


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = reads(sub.add_parser("outbox", help="mail to account holders (codes and notices), newest "
                             "first"))
    p.add_argument("--to", metavar="EMAIL", help="only mail to this address")
    p.add_argument("--kind", help="only this kind (verify, reset, contact_decision, low_balance, "
                   "inactivity_refund, register_taken)")
    p.add_argument("--limit", type=int, default=20, help="at most this many messages (1..1000)")
    p.add_argument("--body", action="store_true", help="print each message's text too")
    p.set_defaults(func=_outbox)


def _outbox(args: argparse.Namespace, ctx: Context) -> int:
    from families.outbox import messages
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be 1..1000")

    async def run(conn: asyncpg.Connection) -> None:
        mails = await messages(conn, recipient=args.to.strip().lower() if args.to else None,
                               kind=args.kind, limit=args.limit)
        if args.json:
            for m in mails:
                emit_json({"id": m.id, "created_at": m.created_at, "recipient": m.recipient,
                           "kind": m.kind, "subject": m.subject, "body": m.body,
                           "sent_at": m.sent_at})
            return
        if not mails:
            print("the outbox is empty" + (" for that filter" if args.to or args.kind else ""))
        for m in mails:
            sent = f"sent {m.sent_at:%Y-%m-%d %H:%M}" if m.sent_at else "unsent"
            print(f"{m.id:>6} {m.created_at:%Y-%m-%d %H:%M:%S} {m.recipient:<28} {m.kind:<18} "
                  f"{sent:<18} {m.subject}")
            if args.body:
                print("       " + m.body.replace("\n", "\n       ") + "\n")
    return ctx.run_with_connection(run)
