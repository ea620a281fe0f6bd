"""Run simulator seeds from the command line on an embedded PostgreSQL (or ICS_TEST_DATABASE_URL).

    python -m tests.sim --seed 7 --calls 40          # one seed; a failure prints its replay line
    python -m tests.sim --seed 1 --seeds 50 --calls 20   # seeds 1..50

Exit status 1 when any seed breaks a check.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from twisted.internet import asyncioreactor

LOOP = asyncio.new_event_loop()
asyncioreactor.install(LOOP)

import asyncpg  # noqa: E402

from ops.embedded import EmbeddedServer  # noqa: E402
from ops.migrate import migrate  # noqa: E402

from .simulator import replay_line, run_seed  # noqa: E402


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def _fresh_database(admin_dsn: str, template: str) -> tuple[str, str]:
    name = f"ics_sim_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await admin.close()
    return name, _with_database(admin_dsn, name)


async def _drop(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def _template(admin_dsn: str) -> str:
    template = f"ics_sim_template_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {template}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_database(admin_dsn, template))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return template


async def main(args) -> int:
    from twisted.internet import reactor
    if not reactor.running:
        reactor.startRunning(installSignalHandlers=False)
    admin_dsn = os.environ.get("ICS_TEST_DATABASE_URL")
    server = root = None
    if not admin_dsn:
        root = tempfile.mkdtemp(prefix="ics-sim-pg-")
        server = EmbeddedServer(Path(root), fsync=False)
        admin_dsn = server.start()
    failed = 0
    template = await _template(admin_dsn)
    try:
        for seed in range(args.seed, args.seed + args.seeds):
            name, dsn = await _fresh_database(admin_dsn, template)
            started = time.perf_counter()
            try:
                out = await run_seed(seed, args.calls, dsn, reactor, faults=not args.calm,
                                     show=print if args.trace else None)
            finally:
                await _drop(admin_dsn, name)
            took = time.perf_counter() - started
            stats = " ".join(f"{k}={v}" for k, v in out.stats.items() if v)
            print(f"seed {seed}: {'ok' if out.ok else 'FAILED'} in {took:.1f}s "
                  f"({out.calls} calls, {stats}) {out.timing} trace {out.digest}")
            print("  exercised: " + " ".join(f"{k}={v}" for k, v in out.coverage.items()))
            if not out.ok:
                failed += 1
                for v in out.violations:
                    print(f"  {v}")
                print(f"  replay: {replay_line(seed, args.calls, not args.calm)}")
    finally:
        await _drop(admin_dsn, template)
        if server is not None:
            server.destroy()
            shutil.rmtree(root, ignore_errors=True)
    if args.seeds > 1:
        print(f"{args.seeds - failed}/{args.seeds} seeds passed")
    return 1 if failed else 0


def cli(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True, help="the seed (first of --seeds)")
    p.add_argument("--seeds", type=int, default=1, help="how many consecutive seeds to run")
    p.add_argument("--calls", type=int, default=30, help="calls per seed")
    p.add_argument("--calm", action="store_true", help="no faults: a clean network and core")
    p.add_argument("--trace", action="store_true",
                   help="print every message delivered, the core's answer, and every fault")
    args = p.parse_args(argv)
    if args.calls < 1 or args.seeds < 1:
        p.error("--calls and --seeds must be at least 1")
    logging.basicConfig(level=logging.CRITICAL)
    sys.stdout.reconfigure(line_buffering=True)
    from twisted.logger import globalLogBeginner
    globalLogBeginner.beginLoggingTo([], redirectStandardIO=False)   # the checks report, not logs
    return LOOP.run_until_complete(main(args))


if __name__ == "__main__":
    sys.exit(cli())
