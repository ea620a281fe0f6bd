"""Benchmark: the ledger's batch path against pgbench simple-update on the same PostgreSQL.

One run, one server (an embedded one with fsync ON in a temporary directory, or
$ICS_DATABASE_URL). Rounds interleave the reference (pgbench -b simple-update: commits/s) with
the ledger's batch path through asyncpg at batch sizes 1, 100 and 1000 (transfers/s), on traffic
shaped like calls: per call-minute, post the last minute's hold on a prepaid account, pay revenue
and tax out of call clearing, and hold the next minute, as one linked chain (batch size 1 sends
the four transfers one by one). Prints each round, then the medians and ratio per batch size,
then runs `verify`. Target: ratio >= 3.0 at batch >= 100, with verify passing.

    .venv/bin/python bench/ledger.py [--seconds 5] [--rounds 3] [--clients 2] [--families 20000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import (Account, AccountKind, Transfer, TransferCode, TransferKind as K,  # noqa: E402
                    TransferResult as R, create_accounts, submit, verify)
from ops.embedded import EmbeddedServer, _bin_dir  # noqa: E402
from ops.migrate import migrate  # noqa: E402

BATCH_SIZES = (1, 100, 1000)
PRICE = 210_000          # a minute at $0.21
TAX = 16_800
CHARGE = PRICE + TAX
FUNDS = 10**13           # enough for every minute the run can bill


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def pgbench_env(dsn: str) -> dict[str, str]:
    """libpq settings for pgbench from a DSN (it takes host/port/user/dbname from the environment)."""
    parts = urlsplit(dsn)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    env = dict(os.environ, PGUSER=parts.username or "postgres",
               PGDATABASE=parts.path.lstrip("/") or "postgres")
    env["PGHOST"] = query.get("host", parts.hostname or "")
    env["PGPORT"] = query.get("port", str(parts.port or 5432))
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return env


def pgbench(dsn: str, *args: str) -> str:
    r = subprocess.run([str(_bin_dir() / "pgbench"), *args], env=pgbench_env(dsn),
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"pgbench failed: {r.stderr.strip()[-800:]}")
    return r.stdout


def reference_commits_per_second(dsn: str, seconds: float, clients: int) -> float:
    out = pgbench(dsn, "-n", "-b", "simple-update", "-c", str(clients), "-j", str(clients),
                  "-T", str(max(1, round(seconds))))
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if not m:
        raise SystemExit(f"cannot read pgbench's tps from:\n{out}")
    return float(m.group(1))


class Caller:
    """One connection billing calls on its own families: each call-minute posts the last hold,
    pays revenue and tax, and holds the next minute."""

    def __init__(self, conn: asyncpg.Connection, families: list[str]):
        self.conn, self.families = conn, families
        self.holds: dict[str, uuid.UUID] = {}
        self.next = 0

    def first_holds(self) -> list[Transfer]:
        out = []
        for fam in self.families:
            self.holds[fam] = uuid.uuid4()
            out.append(Transfer(self.holds[fam], K.HOLD, fam, "clr", CHARGE, expires_in=3600,
                                code=TransferCode.CALL_CHARGE))
        return out

    def minute(self, linked: bool) -> list[Transfer]:
        fam = self.families[self.next]
        self.next = (self.next + 1) % len(self.families)
        hold, self.holds[fam] = self.holds[fam], uuid.uuid4()
        return [Transfer(uuid.uuid4(), K.POST, hold=hold, linked=linked),
                Transfer(uuid.uuid4(), K.SINGLE, "clr", "rev", PRICE, linked=linked,
                         code=TransferCode.CALL_REVENUE),
                Transfer(uuid.uuid4(), K.SINGLE, "clr", "tax", TAX, linked=linked,
                         code=TransferCode.TAX),
                Transfer(self.holds[fam], K.HOLD, fam, "clr", CHARGE, expires_in=3600,
                         code=TransferCode.CALL_CHARGE)]

    async def run(self, batch_size: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            if batch_size == 1:
                batches = [[t] for t in self.minute(linked=False)]
            else:
                batch: list[Transfer] = []
                while len(batch) + 4 <= batch_size:
                    batch += self.minute(linked=True)
                batches = [batch]
            for batch in batches:
                results = await submit(self.conn, batch)
                bad = [r for r in results if r.result != R.OK]
                if bad:
                    raise SystemExit(f"the ledger refused a benchmark transfer: {bad[0]}")
                done += len(batch)
        return done


async def ledger_transfers_per_second(callers: list[Caller], batch_size: int, seconds: float) -> float:
    started = time.perf_counter()
    deadline = started + seconds
    counts = await asyncio.gather(*(c.run(batch_size, deadline) for c in callers))
    return sum(counts) / (time.perf_counter() - started)


async def setup(admin_dsn: str, families: int, clients: int) -> tuple[str, str, list[Caller]]:
    admin = await asyncpg.connect(admin_dsn)
    try:
        for name in ("ics_bench_ledger", "ics_bench_pgbench"):
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    ledger_dsn = with_database(admin_dsn, "ics_bench_ledger")
    ref_dsn = with_database(admin_dsn, "ics_bench_pgbench")
    pgbench(ref_dsn, "-i", "-q", "-s", "1")

    conn = await asyncpg.connect(ledger_dsn)
    await migrate(conn)
    names = [f"fam{i:06d}" for i in range(families)]
    accounts = [Account("fund", AccountKind.FUNDING_CLEARING), Account("clr", AccountKind.CALL_CLEARING),
                Account("rev", AccountKind.REVENUE), Account("tax", AccountKind.TAX_PAYABLE),
                *[Account(n, AccountKind.PREPAID_PHONE) for n in names]]
    for i in range(0, len(accounts), 5000):
        await create_accounts(conn, accounts[i:i + 5000])
    for i in range(0, families, 1000):
        await submit(conn, [Transfer(uuid.uuid4(), K.SINGLE, "fund", n, FUNDS, code=TransferCode.DEPOSIT)
                            for n in names[i:i + 1000]])
    await conn.close()
    callers = []
    for c in range(clients):
        caller = Caller(await asyncpg.connect(ledger_dsn), names[c::clients])
        first = caller.first_holds()
        for i in range(0, len(first), 1000):
            await submit(caller.conn, first[i:i + 1000])
        callers.append(caller)
    return ledger_dsn, ref_dsn, callers


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, >= 3 (default 3)")
    ap.add_argument("--clients", type=int, default=2,
                    help="connections, the same for pgbench and the ledger (default 2)")
    ap.add_argument("--families", type=int, default=20_000, help="prepaid accounts (default 20000)")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("--rounds must be at least 3")

    server = None
    tmp = None
    admin_dsn = os.environ.get("ICS_DATABASE_URL")
    if admin_dsn:
        where = "ICS_DATABASE_URL"
    else:
        tmp = tempfile.mkdtemp(prefix="ics-bench-ledger-")
        server = EmbeddedServer(Path(tmp), fsync=True)
        admin_dsn = server.start()
        where = f"embedded PostgreSQL, fsync on, in {tmp}"
    try:
        probe = await asyncpg.connect(admin_dsn)
        version = await probe.fetchval("SHOW server_version")
        fsync = await probe.fetchval("SHOW fsync")
        sync_commit = await probe.fetchval("SHOW synchronous_commit")
        await probe.close()
        print(f"server: PostgreSQL {version} ({where}); fsync={fsync}, "
              f"synchronous_commit={sync_commit}; cpus={os.cpu_count()}")
        print(f"setup: {args.families} prepaid accounts, {args.clients} client(s) each side, "
              f"{args.seconds:g}s per measurement, {args.rounds} rounds")
        ledger_dsn, ref_dsn, callers = await setup(admin_dsn, args.families, args.clients)

        reference: list[float] = []
        ledger: dict[int, list[float]] = {b: [] for b in BATCH_SIZES}
        for rnd in range(1, args.rounds + 1):
            reference.append(await asyncio.to_thread(reference_commits_per_second, ref_dsn,
                                                     args.seconds, args.clients))
            line = f"round {rnd}: pgbench simple-update {reference[-1]:9.0f} commits/s"
            for b in BATCH_SIZES:
                ledger[b].append(await ledger_transfers_per_second(callers, b, args.seconds))
                line += f" | batch {b:>4}: {ledger[b][-1]:9.0f} transfers/s"
            print(line, flush=True)

        ref = statistics.median(reference)
        print(f"\nreference (pgbench simple-update, median): {ref:9.0f} commits/s")
        ok_target = True
        for b in BATCH_SIZES:
            med = statistics.median(ledger[b])
            ratio = statistics.median(x / r for x, r in zip(ledger[b], reference))
            target = b >= 100
            ok_target &= (ratio >= 3.0) if target else True
            print(f"ledger batch {b:>4} (median): {med:9.0f} transfers/s   ratio {ratio:6.2f}"
                  + ("   (target >= 3.0)" if target else ""))

        for c in callers:
            await c.conn.close()
        conn = await asyncpg.connect(ledger_dsn)
        started = time.perf_counter()
        report = await verify(conn)
        count = report.counts.get("transfers", 0)
        await conn.close()
        print(f"\nverify: {'every invariant holds' if report.ok else 'INVARIANTS VIOLATED'} "
              f"({count} transfers, {time.perf_counter() - started:.1f}s)")
        for v in report.violations:
            print(f"  invariant {v.invariant}: {v.detail}")
        print("target met" if ok_target and report.ok else "TARGET NOT MET")
        return 0 if ok_target and report.ok else 1
    finally:
        if server is not None:
            server.destroy()
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
