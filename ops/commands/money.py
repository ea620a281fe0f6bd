"""`ics money refund|adjust|adjustments|approve|reject`: refunds and adjustments of prepaid
accounts from a shell, on the API's own code (web.money), audited as cli:<os user>."""
from __future__ import annotations

import uuid

from ops.cli import UsageError, changes, emit_json, reads
from ops.commands.operator import cli_actor
from ledger.money import AmountInvalid, format_amount, parse_amount


def register(sub) -> None:
    p = sub.add_parser("money", help="refunds and adjustments of prepaid accounts")
    s = p.add_subparsers(dest="money_command", metavar="ACTION", required=True)
    r = changes(s.add_parser("refund", help="refund unused balance to a deposit (once per "
                                           "deposit)"))
    r.add_argument("account", help="phone number or prepaid:+E164")
    r.add_argument("--funding-ref", required=True, help="the deposit's reference")
    r.add_argument("--amount", help="default: as much as may be refunded")
    r.set_defaults(func=_run(_refund))
    a = changes(s.add_parser("adjust", help="adjust a balance with a reason (large ones need "
                                           "approval)"))
    a.add_argument("account", help="phone number or prepaid:+E164")
    a.add_argument("amount", help="signed, e.g. -2.50")
    a.add_argument("--reason", required=True, help="why (audited)")
    a.add_argument("--ref", required=True, help="your reference; the same one is applied once")
    a.set_defaults(func=_run(_adjust))
    ls = reads(s.add_parser("adjustments", help="adjustments, newest first"))
    ls.add_argument("--pending", action="store_true", help="only those awaiting approval")
    ls.set_defaults(func=_run(_list))
    for verb in ("approve", "reject"):
        d = changes(s.add_parser(verb, help=f"{verb} another operator's pending adjustment"))
        d.add_argument("id", help="the adjustment's id")
        d.set_defaults(func=_run(_decide), approve=verb == "approve")


def _run(fn):
    def wrapper(args, ctx) -> int:
        from web.money import AccountUnknown, MoneyRefused
        try:
            return ctx.run_with_connection(lambda conn: fn(args, ctx, conn))
        except AccountUnknown as e:
            raise UsageError(str(e)) from None
        except MoneyRefused as e:
            raise UsageError(f"{e.field}: {e}") from None
    return wrapper


def _amount(text: str, *, positive: bool) -> int:
    try:
        m = parse_amount(text, allow_negative=not positive, allow_zero=not positive)
    except AmountInvalid as e:
        raise UsageError(f"amount: {e}") from None
    if m == 0:
        raise UsageError(f"amount: {text!r} must not be 0")
    return m


async def _refund(args, ctx, conn):
    from web.money import refund, resolve
    amount = None if args.amount is None else _amount(args.amount, positive=True)
    acct = await resolve(conn, args.account)
    r = await refund(conn, acct, funding_ref=args.funding_ref, amount=amount, actor=cli_actor(),
                     via="cli")
    word = "refunded" if r.result == "ok" else "already refunded"
    print(f"{r.account} {word}: {format_amount(r.amount)} to deposit {r.funding_ref} "
          f"(transfer {r.transfer_id})")


async def _adjust(args, ctx, conn):
    from web.money import request_adjustment, resolve
    acct = await resolve(conn, args.account)
    a = await request_adjustment(conn, acct, amount=_amount(args.amount, positive=False),
                                 reason=args.reason, ref=args.ref, actor=cli_actor(), via="cli",
                                 approval_above=ctx.cfg.api.adjustment_approval_micros)
    print(f"adjustment {a.id}: {format_amount(a.amount)} to {a.account}: {a.state}")


async def _list(args, ctx, conn):
    from web.money import _adjustment
    rows = await conn.fetch("SELECT * FROM adjustment WHERE NOT $1 OR state = 'pending' "
                            "ORDER BY requested_at DESC, id LIMIT 1000", args.pending)
    for r in rows:
        a = _adjustment(r)
        if args.json:
            emit_json({**a.as_dict(), "currency": ctx.cfg.ledger.currency})
        else:
            print(f"{a.id} {a.state:<9} {format_amount(a.amount):>12} {a.account:<22} "
                  f"{a.requested_by:<16} {a.reason}")


async def _decide(args, ctx, conn):
    from web.money import decide_adjustment
    try:
        adj_id = uuid.UUID(args.id)
    except ValueError:
        raise UsageError(f"id: {args.id!r} is not an adjustment id") from None
    a = await decide_adjustment(conn, adj_id, approve=args.approve, actor=cli_actor(), via="cli")
    print(f"adjustment {a.id}: {a.state} by {a.decided_by}")
