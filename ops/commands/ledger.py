"""`ics ledger`: accounts, balances, statements, verify, submitting JSON Lines, sweeping holds, demo."""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from contextlib import asynccontextmanager

from ledger.money import format_amount
from ops.cli import UsageError, changes, count, emit_json, reads, runs


def register(sub) -> None:
    p = sub.add_parser("ledger", help="money: accounts, balances, statements, verify, submit")
    s = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)

    a = reads(s.add_parser("accounts", help="list accounts with their balances"))
    a.add_argument("--kind", help="only accounts of this kind")
    a.set_defaults(func=_accounts)

    b = reads(s.add_parser("balance", help="an account's posted, pending and available balance"))
    b.add_argument("account", help="ledger account id, or a prepaid account's phone number")
    b.set_defaults(func=_balance)

    st = reads(s.add_parser("statement", help="an account's transfers with the running balance"))
    st.add_argument("account", help="ledger account id, or a prepaid account's phone number")
    st.add_argument("--limit", type=count(1), default=50, metavar="N",
                    help="latest N lines (default 50)")
    st.set_defaults(func=_statement)

    v = reads(s.add_parser("verify", help="check every money invariant; exit 0 when all hold, "
                                         "else 1"))
    v.set_defaults(func=_verify)

    su = changes(s.add_parser("submit", help="apply a JSON Lines file of accounts and transfers; prints one "
                                     "result per line (exit 0: all ok or exists, 1: some rejected)"))
    su.add_argument("file", help="the file, or - for standard input")
    su.add_argument("--batch-size", type=count(1), default=None, metavar="N",
                    help="transfers per batch (default: ledger.batch_size_max)")
    su.set_defaults(func=_submit)

    sw = changes(s.add_parser("sweep", help="release holds past their expiry"))
    sw.set_defaults(func=_sweep)

    d = runs(s.add_parser("demo", help="fund a family and bill a 3-minute call as hold/post per "
                                       "minute on the embedded database, then print and verify "
                                       "(rerunnable)"))
    d.set_defaults(func=_demo)


@asynccontextmanager
async def _connection(ctx):
    conn = await ctx.connect()          # a missing schema is ops.cli's exit 5, as for every command
    try:
        yield conn
    finally:
        await conn.close()


async def _account_id(conn, text: str) -> str:
    """A ledger account id as given; a phone number (any spelling) names its prepaid account, as
    in `ics account` and `ics money`."""
    if await conn.fetchval("SELECT true FROM ledger_account WHERE id = $1", text):
        return text
    from web.money import AccountUnknown, resolve
    try:
        return (await resolve(conn, text)).ledger_account
    except AccountUnknown:
        return text                     # the ledger says it does not exist, in its own words


def _run(coro) -> int:
    from ledger.errors import AccountNotFound
    try:
        return asyncio.run(coro)
    except AccountNotFound as e:
        raise UsageError(str(e)) from None


def _accounts(args, ctx) -> int:
    from ledger import balances

    async def run() -> int:
        async with _connection(ctx) as conn:
            rows = await balances(conn, kind=args.kind)
        if args.json:
            for b in rows:
                emit_json(b.as_dict())
            return 0
        print(f"{'account':<24} {'kind':<17} {'posted':>16} {'pending':>14} {'available':>16}")
        for b in rows:
            print(f"{b.account_id:<24} {b.kind:<17} {format_amount(b.posted):>16} "
                  f"{format_amount(b.pending):>14} "
                  f"{format_amount(b.available):>16} {b.currency}")
        return 0
    return _run(run())


def _balance(args, ctx) -> int:
    from ledger import balance

    async def run() -> int:
        async with _connection(ctx) as conn:
            b = await balance(conn, await _account_id(conn, args.account))
        if args.json:
            emit_json(b.as_dict())
        else:
            print(f"{b.account_id} ({b.kind}, {b.currency}"
                  f"{', no overdraft' if b.no_overdraft else ''})")
            print(f"  posted     {format_amount(b.posted, currency=b.currency):>20}")
            print(f"  pending    {format_amount(b.pending, currency=b.currency):>20}")
            print(f"  available  {format_amount(b.available, currency=b.currency):>20}")
        return 0
    return _run(run())


def print_statement(st) -> None:
    cur = st.account.currency
    print(f"Statement of {st.account.account_id} ({st.account.kind}, {cur})")
    if st.earlier:
        print(f"  ... {st.earlier} earlier line(s)")
    print(f"  {'when':<19} {'what':<7} {'code':<13} {'ref':<18} {'with':<10} "
          f"{'posted':>12} {'pending':>12} {'balance':>12} {'available':>12}")
    for ln in st.lines:
        print(f"  {ln.at:%Y-%m-%d %H:%M:%S} {ln.kind.name.lower():<7} {ln.code:<13} "
              f"{ln.ref[:18]:<18} {ln.counterparty[:10]:<10} {format_amount(ln.posted_change):>12} "
              f"{format_amount(ln.pending_change):>12} {format_amount(ln.balance):>12} "
              f"{format_amount(ln.available):>12}")


def _statement(args, ctx) -> int:
    from ledger import statement

    async def run() -> int:
        async with _connection(ctx) as conn:
            st = await statement(conn, await _account_id(conn, args.account), limit=args.limit)
        if args.json:
            emit_json({"account": st.account.as_dict(), "earlier": st.earlier,
                       "lines": [ln.as_dict() for ln in st.lines]})
        else:
            print_statement(st)
        return 0
    return _run(run())


def _verify(args, ctx) -> int:
    from ledger import INVARIANTS, verify

    async def run() -> int:
        async with _connection(ctx) as conn:
            report = await verify(conn)
        if args.json:
            emit_json(report.as_dict())
        else:
            failed = report.failed()
            for number, text in INVARIANTS.items():
                print(f"{'FAIL' if number in failed else 'ok  '} {number}. {text}")
            for v in report.violations:
                print(f"  invariant {v.invariant}: {v.detail}")
            print(f"{report.counts.get('accounts', 0)} accounts, "
                  f"{report.counts.get('transfers', 0)} transfers, "
                  f"{report.counts.get('open_holds', 0)} open holds: "
                  f"{'every invariant holds' if report.ok else 'INVARIANTS VIOLATED'}")
            if report.counts.get("shortfall_micros"):
                print(f"call charges written off as shortfall: "
                      f"{format_amount(report.counts['shortfall_micros'])} "
                      "(account call_shortfall)")
        return 0 if report.ok else 1
    return _run(run())


def _submit(args, ctx) -> int:
    from ledger.jsonl import MalformedLine, apply, parse

    batch_size = args.batch_size or ctx.cfg.ledger.batch_size_max
    if not 1 <= batch_size <= ctx.cfg.ledger.batch_size_max:
        raise UsageError(f"--batch-size must be 1..{ctx.cfg.ledger.batch_size_max}")
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UsageError(f"{args.file}: {e.strerror}") from None
    try:
        batches = parse(text.splitlines(), batch_size=batch_size)
    except MalformedLine as e:
        raise UsageError(f"{'stdin' if args.file == '-' else args.file}: {e}; nothing applied") from None

    source = "stdin" if args.file == "-" else args.file

    async def run() -> int:
        rejected = False
        async with _connection(ctx) as conn:
            for number, batch in enumerate(batches, start=1):
                results = await _submit_batch(conn, batch, source, number)
                for result in results:
                    rejected |= result["result"] not in ("ok", "exists")
                    print(json.dumps(result), flush=False)
        sys.stdout.flush()
        return 1 if rejected else 0
    return _run(run())


async def _submit_batch(conn, batch, source: str, number: int) -> list[dict]:
    """One batch and its audit row in one transaction. Inside a caller's transaction the ledger
    does not retry a concurrent submission itself, so the whole batch is retried here, once
    (transfer ids are idempotency keys: what did commit answers `exists`)."""
    from collections import Counter

    from ledger import ConcurrentSubmission
    from ledger.jsonl import apply
    from ops.commands.operator import record_cli_change
    for attempt in (1, 2):
        try:
            async with conn.transaction():
                results = [r async for r in apply(conn, [batch])]
                await record_cli_change(
                    conn, "ledger.submit", f"file:{source}",
                    after={"batch": number, "lines": len(results),
                           "results": dict(sorted(Counter(r["result"] for r in results).items())),
                           "first_id": results[0]["id"], "last_id": results[-1]["id"]})
            return results
        except ConcurrentSubmission:
            if attempt == 2:
                raise UsageError(f"{source}: batch {number} collided with another submission "
                                 "twice; batches before it were applied, rerun the file (what "
                                 "was applied answers exists)") from None
    raise AssertionError("unreachable")


def _sweep(args, ctx) -> int:
    from ledger import sweep_expired
    from ledger.sweeper import SWEEP_BATCH_MAX

    from ops.commands.operator import record_cli_change

    async def run() -> int:
        total = 0
        async with _connection(ctx) as conn:
            while (n := await sweep_expired(conn)) > 0:
                total += n
                if n < SWEEP_BATCH_MAX:
                    break
            if total:
                await record_cli_change(conn, "ledger.sweep", "ledger:holds",
                                        after={"expired_holds_released": total})
        print(f"{total} expired hold(s) released")
        return 0
    return _run(run())


# -- `ics ledger demo` ------------------------------------------------------------------------------
CURRENCY = "USD"
FAMILY = "demo-family-0001"
DEPOSIT = 10_000_000             # $10.00
PRICE_PER_MINUTE = 210_000       # $0.21
TAX_PER_MINUTE = 16_800          # 8% of the price
MINUTES = 3
HOLD_SECONDS = 90                # a period's hold outlives the minute by the worker's grace


def _demo(args, ctx) -> int:
    """Fund a family, bill a 3-minute call as hold/post per minute, print, verify (rerunnable:
    accounts answer `exists`, transfers get fresh ids)."""
    cfg = ctx.cfg
    started_here = None
    if not cfg.database.url:
        from ops.db import embedded_server
        server = embedded_server(cfg)
        if not server.running():
            started_here = server
        print(f"embedded PostgreSQL in {server.pgdata}")
        server.start()
    try:
        return asyncio.run(_demo_run(ctx))
    finally:
        if started_here is not None:
            started_here.stop()


def _show_step(step: str, transfers, results) -> None:
    print(f"{step}")
    for t, r in zip(transfers, results):
        what = t.kind.name.lower()
        route = f"{t.debit} -> {t.credit}" if t.debit else f"hold {str(t.hold)[:8]}"
        amount = format_amount(t.amount) if t.amount else "(whole hold)"
        print(f"  {what:<6} {route:<28} {amount:>14}  {r.result.name.lower()}")


async def _demo_run(ctx) -> int:
    from ledger import (Account, AccountKind, Transfer, TransferCode, TransferKind as K, balance,
                        balances, create_accounts, statement, submit, verify)
    from ops.migrate import migrate

    conn = await ctx.connect(migrated=False)
    try:
        applied = await migrate(conn)
        if applied:
            print(f"schema: {len(applied)} migration(s) applied")
        accounts = [Account("demo-funding", AccountKind.FUNDING_CLEARING, CURRENCY),
                    Account("demo-calls", AccountKind.CALL_CLEARING, CURRENCY),
                    Account("demo-revenue", AccountKind.REVENUE, CURRENCY),
                    Account("demo-tax", AccountKind.TAX_PAYABLE, CURRENCY),
                    Account(FAMILY, AccountKind.PREPAID_PHONE, CURRENCY)]
        results = await create_accounts(conn, accounts,
                                        default_shards=ctx.cfg.ledger.revenue_shards)
        print("accounts: " + ", ".join(f"{a.id} {r.name.lower()}" for a, r in zip(accounts, results)))
        if not all(r.succeeded for r in results):
            print("demo: the demo accounts exist with other settings; use another data directory")
            return 1

        call = f"call-{uuid.uuid4().hex[:8]}"
        deposit = [Transfer(uuid.uuid4(), K.SINGLE, "demo-funding", FAMILY, DEPOSIT,
                            code=TransferCode.DEPOSIT, ref="card payment")]
        _show_step(f"family deposits {format_amount(DEPOSIT, currency=CURRENCY)}", deposit,
                   await submit(conn, deposit))

        charge = PRICE_PER_MINUTE + TAX_PER_MINUTE

        def hold() -> Transfer:
            return Transfer(uuid.uuid4(), K.HOLD, FAMILY, "demo-calls", charge, expires_in=HOLD_SECONDS,
                            code=TransferCode.CALL_CHARGE, ref=call)

        current = hold()
        _show_step(f"{call} answered: hold minute 1", [current], await submit(conn, [current]))
        for minute in range(1, MINUTES + 1):
            last = minute == MINUTES
            # Post the finished minute, split it into revenue and tax, and (unless the call has
            # ended) hold the next one: all or nothing, as one linked chain.
            period = [Transfer(uuid.uuid4(), K.POST, hold=current.id, linked=True, ref=call),
                      Transfer(uuid.uuid4(), K.SINGLE, "demo-calls", "demo-revenue", PRICE_PER_MINUTE,
                               linked=True, code=TransferCode.CALL_REVENUE, ref=call),
                      Transfer(uuid.uuid4(), K.SINGLE, "demo-calls", "demo-tax", TAX_PER_MINUTE,
                               linked=not last, code=TransferCode.TAX, ref=call)]
            if not last:
                current = hold()
                period.append(current)
            step = f"minute {minute} ends: post it" + ("" if last else f", hold minute {minute + 1}")
            results = await submit(conn, period)
            _show_step(step + (" (call ends)" if last else ""), period, results)
            if not all(r.succeeded for r in results):
                print("demo: the family ran out of funds; the call ends here")
                break

        b = await balance(conn, FAMILY)
        print(f"\n{FAMILY}: posted {format_amount(b.posted, currency=CURRENCY)}, "
              f"pending {format_amount(b.pending, currency=CURRENCY)},"
              f" available {format_amount(b.available, currency=CURRENCY)}")
        for other in await balances(conn):
            if other.account_id in ("demo-revenue", "demo-tax"):
                print(f"{other.account_id}: posted "
                      f"{format_amount(other.posted, currency=CURRENCY)}")
        print()
        print_statement(await statement(conn, FAMILY, limit=12))
        from ops.commands.operator import record_cli_change
        await record_cli_change(conn, "ledger.demo", f"account:{FAMILY}",
                                after={"call": call, "minutes": MINUTES})
        report = await verify(conn)
        print(f"\nverify: {'every invariant holds' if report.ok else 'INVARIANTS VIOLATED'} "
              f"({report.counts['transfers']} transfers, {report.counts['open_holds']} open holds)")
        for v in report.violations:
            print(f"  invariant {v.invariant}: {v.detail}")
        return 0 if report.ok else 1
    finally:
        await conn.close()
