"""`ics db`: start, stop and inspect the embedded server; apply migrations."""
from __future__ import annotations

import asyncio
import sys


def register(sub) -> None:
    from ops.cli import changes, reads, runs
    p = sub.add_parser("db", help="database: embedded server and migrations")
    s = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, fn, text, effect in [
            ("start", _start, "start the embedded server (initialising it)", runs),
            ("stop", _stop, "stop the embedded server", runs),
            ("status", _status, "say which database is in use and whether it runs (exit 1: "
                                "the embedded server is not running)", reads),
            ("url", _url, "print the DSN in use", reads),
            ("migrate", _migrate, "apply pending migrations (idempotent)", changes)]:
        sp = effect(s.add_parser(name, help=text))
        sp.set_defaults(func=fn)


def _embedded(ctx):
    from ops.db import embedded_server
    if ctx.cfg.database.url:
        print("ics: database.url is set; the embedded server is not used", file=sys.stderr)
        return None
    return embedded_server(ctx.cfg)


def _start(args, ctx) -> int:
    server = _embedded(ctx)
    if server is None:
        return 1
    print(server.start())
    return 0


def _stop(args, ctx) -> int:
    server = _embedded(ctx)
    if server is None:
        return 1
    server.stop()
    print("stopped")
    return 0


def _status(args, ctx) -> int:
    from ops.cli import ExitCode, emit_json
    if ctx.cfg.database.url:
        if args.json:
            emit_json({"database": "external", "url": ctx.cfg.database.url})
        else:
            print(f"external: {ctx.cfg.database.url}")
        return 0
    server = _embedded(ctx)
    state = "running" if server.running() else ("stopped" if server.initialised() else "absent")
    if args.json:
        emit_json({"database": "embedded", "state": state, "data": str(server.pgdata)})
    else:
        print(f"embedded: {state} at {server.pgdata}")
    return ExitCode.OK if state == "running" else ExitCode.NO


def _url(args, ctx) -> int:
    from ops.cli import emit_json
    from ops.db import resolve_dsn
    url = resolve_dsn(ctx.cfg, start=False)
    if args.json:
        emit_json({"url": url})
    else:
        print(url)
    return 0


def _migrate(args, ctx) -> int:
    from ops.cli import progress_wanted
    from ops.migrate import migrate
    progress = (lambda m: print(m, file=sys.stderr)) if progress_wanted() else None

    async def run() -> int:
        conn = await ctx.connect(migrated=False)
        try:
            done = await migrate(conn, progress=progress)
        finally:
            await conn.close()
        print(f"{len(done)} migration(s) applied")
        return 0
    return asyncio.run(run())
