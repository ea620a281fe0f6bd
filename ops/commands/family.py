"""`ics family`: operators' side of account holders: prove a number, settle pending payments,
see and resend refunds the payment provider has not taken."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Callable

import asyncpg

from ledger.money import format_amount
from ops.cli import Context, UsageError, changes, emit_json, reads
from ops.commands.operator import cli_actor


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("family", help="account holders: prove a number, settle payments")
    s = p.add_subparsers(dest="family_command", metavar="ACTION", required=True)
    q = changes(s.add_parser("prove", help="prove that the holder with EMAIL owns NUMBER (opens "
                             "its prepaid account)"))
    q.add_argument("email", help="the account holder's email address")
    q.add_argument("number", help="the phone number they own (E.164 or national)")
    q.set_defaults(func=_prove)
    q = changes(s.add_parser("reconcile", help="settle pending payments from the provider's "
                             "books (a running node does this every 30 s)"))
    q.set_defaults(func=_reconcile)
    q = reads(s.add_parser("refunds", help="refund lines the payment provider has not taken yet "
                           "(pending: retried with back-off; held: waiting for `refunds-retry`)"))
    q.add_argument("--limit", type=int, default=100, help="at most this many lines (1..1000)")
    q.set_defaults(func=_refunds)
    q = changes(s.add_parser("refunds-retry", help="send refund lines to the provider again now "
                             "(held ones too), under their first idempotency key"))
    q.add_argument("ids", nargs="*", metavar="ID", help="only these refund lines (default: every "
                   "line not taken yet)")
    q.set_defaults(func=_refunds_retry)


def _prove(args: argparse.Namespace, ctx: Context) -> int:
    from families import numbers
    from families.errors import FamilyError

    async def run(conn: asyncpg.Connection) -> None:
        holder = await conn.fetchval("SELECT id FROM family_holder WHERE email = $1",
                                     args.email.strip().lower())
        if holder is None:
            raise UsageError(f"no account holder with email {args.email!r}")
        try:
            n = await numbers.prove(conn, holder, args.number, by=cli_actor(),
                                    now=dt.datetime.now(dt.timezone.utc),
                                    currency=ctx.cfg.ledger.currency)
        except FamilyError as e:
            raise UsageError(f"{e.field}: {e.message}") from None
        print(f"{n.e164} is proven for {args.email}; prepaid account {n.account}")
    return ctx.run_with_connection(run)


def _reconcile(args: argparse.Namespace, ctx: Context) -> int:
    from families.payments import reconcile
    from families.providers import TestProvider

    async def run() -> int:
        pool = await ctx.pool(min_size=1, max_size=2)
        try:
            clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
            done = await reconcile(pool, TestProvider(pool, clock), now=clock())
        finally:
            await pool.close()
        for p in done:
            print(f"{p.id} {p.state} {format_amount(p.amount)} to {p.account}")
        print(f"{len(done)} payment(s) settled")
        return 0
    return asyncio.run(run())


def _refunds(args: argparse.Namespace, ctx: Context) -> int:
    from families.refund_delivery import undelivered
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be 1..1000")

    async def run(conn: asyncpg.Connection) -> None:
        lines = await undelivered(conn, limit=args.limit)
        if args.json:
            for ln in lines:
                emit_json({"id": ln.id, "payment": ln.payment_id, "provider_ref": ln.provider_ref,
                           "amount": ln.amount, "currency": ctx.cfg.ledger.currency,
                           "state": ln.state, "attempts": ln.attempts,
                           "next_attempt_at": ln.next_attempt_at, "last_error": ln.last_error,
                           "created_at": ln.created_at})
            return
        if not lines:
            print("every refund was taken by the provider")
        for ln in lines:
            nxt = f"next {ln.next_attempt_at:%Y-%m-%d %H:%M:%S}" if ln.next_attempt_at else \
                "held for an operator"
            print(f"{ln.id} {ln.state:<7} {format_amount(ln.amount):>10} to {ln.provider_ref} "
                  f"attempts {ln.attempts} {nxt}: {ln.last_error}")
    return ctx.run_with_connection(run)


def _refunds_retry(args: argparse.Namespace, ctx: Context) -> int:
    import uuid

    from families.providers import TestProvider
    from families.refund_delivery import deliver, release_held
    try:
        ids = [uuid.UUID(x) for x in args.ids] or None
    except ValueError:
        raise UsageError("each ID must be a refund line's id (a UUID, as `ics family refunds` "
                         "shows)") from None

    async def run() -> int:
        pool = await ctx.pool(min_size=1, max_size=2)
        try:
            clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
            async with pool.acquire() as conn:
                released = await release_held(conn, ids, now=clock(), actor=cli_actor())
            if ids and released < len(ids):
                print(f"{len(ids) - released} of the named lines were already taken or unknown")
            async with pool.acquire() as conn:
                due = [r["id"] for r in await conn.fetch(
                    "SELECT id FROM family_refund WHERE state = 'pending' AND "
                    "($1::uuid[] IS NULL OR id = ANY($1))", ids)]
            done = await deliver(pool, TestProvider(pool, clock), now=clock(), ids=due)
        finally:
            await pool.close()
        for line_id, outcome in done.items():
            print(f"{line_id} {outcome}")
        sent = sum(1 for o in done.values() if o == "sent")
        print(f"{sent} of {len(done)} refund line(s) taken by the provider")
        return 0 if sent == len(done) else 1
    return asyncio.run(run())
