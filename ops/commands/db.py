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


async def _record(ctx, dsn: str, action: str, after: dict) -> bool:
    """The audit row of a server start or stop, when the database has the audit trail yet (a
    fresh cluster is not migrated: then there is nowhere to write it, and nothing to audit)."""
    from ops.commands.operator import record_cli_change
    from ops.db import connect
    conn = await connect(ctx.cfg, dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('audit_event') IS NOT NULL"):
            return False
        await record_cli_change(conn, action, "db:embedded", after=after)
        return True
    finally:
        await conn.close()


def _start(args, ctx) -> int:
    server = _embedded(ctx)
    if server is None:
        return 1
    was_running = server.running()
    dsn = server.start()
    if not was_running:
        asyncio.run(_record(ctx, dsn, "db.start", {"pgdata": str(server.pgdata)}))
    print(dsn)
    return 0


def _stop(args, ctx) -> int:
    server = _embedded(ctx)
    if server is None:
        return 1
    if server.running():                # recorded while the server can still take the row
        asyncio.run(_record(ctx, server.url, "db.stop", {"pgdata": str(server.pgdata)}))
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

    from ops.commands.operator import record_cli_change

    async def run() -> int:
        conn = await ctx.connect(migrated=False)
        try:
            done = await migrate(conn, progress=progress)
            if done:            # the audit trail exists once the migrations have run
                await record_cli_change(conn, "db.migrate", "db:schema",
                                        after={"applied": [f"{m.package}/{m.name}"
                                                           for m in done]})
        finally:
            await conn.close()
        print(f"{len(done)} migration(s) applied")
        return 0
    return asyncio.run(run())
