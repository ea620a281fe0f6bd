"""`ics demo` and `ics demo-data load`: the product's main job on the embedded database."""
from __future__ import annotations

import argparse
import asyncio
import sys


def register(sub) -> None:
    from ops.cli import changes, runs
    p = runs(sub.add_parser("demo", help="place a scripted call end to end and print its money",
                       description="Start the database, the core, a media worker and the SIP "
                       "front door, place one call over real SIP (kiosk keys PIN and number, the "
                       "called party presses 1 and talks), then print the timeline, the CDR, "
                       "the ledger transfers and run ledger verify."))
    p.add_argument("--no-sip", action="store_true",
                   help="no SIP or media: a scripted worker drives the call through the core on "
                   "a simulated clock (for machines where SIP cannot run)")
    p.add_argument("--talk-seconds", type=_seconds, default=None, metavar="N",
                   help="how long the called party talks before hanging up (default 65)")
    p.set_defaults(func=_demo)
    d = sub.add_parser("demo-data", help="the demo facility's data")
    s = d.add_subparsers(dest="demo_data_command", metavar="ACTION", required=True)
    p = changes(s.add_parser("load", help="load config/demo (idempotent)"))
    p.set_defaults(func=_load)


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _demo(args, ctx) -> int:
    from ops.demo import TALK_SECONDS
    talk = TALK_SECONDS if args.talk_seconds is None else args.talk_seconds
    cfg = ctx.cfg
    log_path = cfg.data_dir / "demo" / "node.log"
    _log_to(log_path, cfg)
    from ops.commands.serve import install_reactor
    reactor, loop = install_reactor()
    from ops.demo import run_demo

    def out(line: str) -> None:
        print(line, flush=True)

    async def main() -> int:
        out(f"ics demo: {'scripted, no SIP' if args.no_sip else 'one call over real SIP'}; "
            f"logs in {log_path}")
        await _family(cfg, out)
        try:
            return await run_demo(cfg, out, sip=not args.no_sip, talk_seconds=talk, signals=True)
        except asyncio.CancelledError:
            out("ics demo: interrupted; everything was shut down")
            return 130
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def _family(cfg, out) -> None:
    """The demo's account holder, before the call, so the call lands in their history."""
    from families.demo import DEMO_EMAIL, DEMO_NUMBER, DEMO_PASSWORD, seed_demo_family
    from ops.db import connect
    from ops.migrate import migrate
    from ops.demo import load_demo_data
    conn = await connect(cfg)
    try:
        await migrate(conn)
        await load_demo_data(conn, cfg, lambda _: None)
        await seed_demo_family(conn, currency=cfg.ledger.currency)
    finally:
        await conn.close()
    node = f"http://{cfg.core.http_host}:{cfg.core.http_port}"
    out(f"family login: {DEMO_EMAIL} / {DEMO_PASSWORD} (owns {DEMO_NUMBER}); with `ics serve`, "
        f"the families' portal is at {node}/portal/ (API: POST {node}/api/v1/family/login)")


def _log_to(path, cfg) -> None:
    """Everything the node logs (worker output included) goes to `path`, not the terminal, in
    the node's own format (switch.processes.logs, as `ics serve` writes it: `node.log_format`)."""
    from switch.processes import logs
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("w", encoding="utf-8", buffering=1)     # lives as long as the process
    logs.configure(cfg.node.log_format, cfg.node.log_level, stream=stream)


def _load(args, ctx) -> int:
    async def run():
        from ops.migrate import migrate
        from ops.cli import progress_wanted
        from ops.demo import load_demo_data
        from ops.commands.operator import record_cli_change
        conn = await ctx.connect(migrated=False)
        try:
            await migrate(conn)
            quiet = not progress_wanted()
            async with conn.transaction():     # the data and its audit row, or neither
                await load_demo_data(conn, ctx.cfg,
                                     out=lambda m: None if quiet else print(m, file=sys.stderr))
                await record_cli_change(conn, "demo_data.load", "demo:config/demo")
        finally:
            await conn.close()
        print("demo data loaded")
        return 0
    return asyncio.run(run())
