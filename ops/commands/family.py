"""`ics family`: operators' side of account holders: prove a number, settle pending payments."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Callable

import asyncpg

from ledger.money import format_amount
from ops.cli import Context, UsageError, changes
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
