"""`ics demo` and `ics demo-data load`: the product's main job on the embedded database."""
from __future__ import annotations

import asyncio
import sys


def register(sub) -> None:
    p = sub.add_parser("demo", help="run a scripted call end to end and print its money")
    p.set_defaults(func=_demo)
    d = sub.add_parser("demo-data", help="the demo facility's data")
    s = d.add_subparsers(dest="demo_data_command", metavar="ACTION", required=True)
    p = s.add_parser("load", help="load config/demo (idempotent)")
    p.set_defaults(func=_load)


def _demo(args, ctx) -> int:
    from ops.commands.serve import install_reactor
    reactor, loop = install_reactor()
    from switch.demo import run_demo
    try:
        return loop.run_until_complete(run_demo(ctx.cfg))
    finally:
        loop.close()


def _load(args, ctx) -> int:
    async def run():
        from ops.migrate import migrate
        from switch.demo import load_demo_data
        conn = await ctx.connect()
        try:
            await migrate(conn)
            await load_demo_data(conn, ctx.cfg, out=lambda m: print(m, file=sys.stderr))
        finally:
            await conn.close()
        print("demo data loaded")
        return 0
    return asyncio.run(run())
