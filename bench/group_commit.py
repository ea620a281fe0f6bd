"""Benchmark: one group-commit batch (`call_advance_batch`) in PostgreSQL, against a plain INSERT.

One run, one embedded PostgreSQL (fsync on): seed N talking calls on shared prepaid accounts
(accepted through `call_advance_batch` itself), then time the batch that carries out their
Continues (per call: post call and tax of the open hold, hold call and tax for the next period,
one linked chain, and the call row) for 64, 128 and 256 calls, medians over repeats; then two
batches of the same size at once on two connections: "mixed", each from all calls on its
connection's own shard (as before group commit had lanes: the second waits for rows the first
holds), and "by lane", each from one lane's calls on that lane's shard (as group commit runs
them now); whether either was seen waiting for a row lock is sampled. Reference, same server,
same run: one INSERT of as many rows as the batch moves (four per call) into a plain table,
committed. Prints ms a batch, µs a call, the reference, the ratio; `verify` at the end.
`--explain` prints where the time of one batch of the largest size goes (auto_explain of the
nested statements, slowest first); `--transfer-ids N` measures rows of long calls.

    .venv/bin/python bench/group_commit.py [--calls 2048] [--per-account 2] [--repeats 9]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger  # noqa: E402
from bench.core import provision  # noqa: E402
from ops.embedded import EmbeddedServer  # noqa: E402
from ops.migrate import migrate  # noqa: E402
from switch.control.group_commit import _SQL, GroupCommit, _Entry, _args  # noqa: E402
from switch.rules import session  # noqa: E402
from switch.rules.session import CallState, Charge  # noqa: E402

SIZES = (64, 128, 256)
RATE, TAX = 3_500, 280                  # µ a second: call part and tax part
TERMS = session.Terms(period_seconds=1, warning_seconds=1, hold_slack_seconds=30)
BOOKS = session.Books()


def cum(t: int) -> Charge:
    return Charge(RATE * t, TAX * t)


async def seed(conn, calls: int, per_account: int) -> list[dict]:
    """`calls` authorized calls, `per_account` of them on each funded prepaid account."""
    rows = await provision(conn, 10, max(1, calls // per_account // 10 + 1), calls // per_account + 1)
    accounts = [r["ledger_account"] for r in await conn.fetch(
        "SELECT ledger_account FROM phone_account ORDER BY e164")]
    now = datetime.now(timezone.utc)
    out = []
    for k in range(calls):
        inmate, e164 = rows[k % len(rows)]
        out.append({"id": uuid.uuid4(), "state": "authorized", "period": 0, "grant_until": 0,
                    "posted_until": 0, "max_seconds": 10**6, "privileged": False,
                    "funding_account": accounts[k // per_account], "hold_call": None,
                    "hold_tax": None, "shortfall_micros": 0, "inmate_id": inmate, "e164": e164})
    await conn.executemany(
        "INSERT INTO call (id, state, facility_id, kiosk_id, inmate_id, e164, jurisdiction, "
        "payment_type, funding_account, privileged, record, max_seconds, limited_by, "
        "authorized_at, last_seen_at) VALUES ($1, 'authorized', 'riverside', 'kiosk-a1', $2, $3, "
        "'local', 'prepaid', $4, false, false, $5, 'funds', $6, $6)",
        [(c["id"], c["inmate_id"], c["e164"], c["funding_account"], c["max_seconds"], now)
         for c in out])
    return out


def money(c: dict) -> session.Money:
    return session.Money(c["id"], CallState(c["state"]), c["period"], c["grant_until"],
                         c["posted_until"], c["max_seconds"], c["funding_account"],
                         c["hold_call"], c["hold_tax"], c["shortfall_micros"])


def entries(calls: list[dict]) -> list[_Entry]:
    """Each call's next step (Accept, or Continue at the end of its grant), as the core makes it."""
    now = datetime.now(timezone.utc)
    out = []
    for c in calls:
        if c["state"] == "authorized":
            st = session.accept(money(c), cum, TERMS, BOOKS, available=None, answers={}, tries=0)
            out.append(_Entry(c, st, now, None, now))
        else:
            st = session.advance(money(c), c["period"], c["grant_until"], cum, TERMS, BOOKS,
                                 available=None, answers={}, tries=0)
            out.append(_Entry(c, st, now, None))
    return out


async def run_batch(conn, batch: list[_Entry], shard: int | None = None) -> float:
    """Carry out a batch as group commit does, on `shard` (None: the connection's own, as
    before lanes)."""
    shard = conn.get_server_pid() if shard is None else shard
    started = time.perf_counter()
    codes = await conn.fetchval(_SQL, *_args(batch), str(shard))
    took = time.perf_counter() - started
    bad = [k for k, r in enumerate(codes) if r != 0]
    if bad:
        raise SystemExit(f"a batch did not apply {len(bad)} of its calls (first: code {codes[bad[0]]})")
    for e in batch:
        r = e.step.row
        e.call.update(state=r.state.value, period=r.period, grant_until=r.grant_until,
                      posted_until=r.posted_until, hold_call=r.hold_call, hold_tax=r.hold_tax,
                      shortfall_micros=r.shortfall_micros)
    return took


async def pair(watch, conn, a: list[_Entry], a_shard, other, b: list[_Entry], b_shard
               ) -> tuple[float, bool]:
    """Two batches at once on two connections: (seconds, whether one was seen waiting for a
    row lock, sampled from `watch` every millisecond)."""
    waited = False

    async def sample():
        nonlocal waited
        while True:
            waited |= bool(await watch.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND pid = ANY ($1::int[])", [conn.get_server_pid(), other.get_server_pid()]))
            await asyncio.sleep(0.001)
    sampler = asyncio.ensure_future(sample())
    started = time.perf_counter()
    await asyncio.gather(run_batch(conn, a, a_shard), run_batch(other, b, b_shard))
    took = time.perf_counter() - started
    sampler.cancel()
    try:
        await sampler
    except asyncio.CancelledError:
        pass
    return took, waited


def backend_cpu(conn) -> float:
    """CPU seconds the connection's backend has used (less noisy than wall time on a busy box)."""
    fields = Path(f"/proc/{conn.get_server_pid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Calls:
    """Hands out calls round robin, so each call's hold is posted well before it expires."""

    def __init__(self, calls: list[dict]) -> None:
        self.calls, self.next = calls, 0

    def take(self, n: int) -> list[dict]:
        out = [self.calls[(self.next + k) % len(self.calls)] for k in range(n)]
        self.next = (self.next + n) % len(self.calls)
        return out


async def reference(conn, rows: int) -> float:
    """One INSERT of `rows` transfer-shaped rows into a plain table, committed."""
    ids = [uuid.uuid4() for _ in range(rows)]
    started = time.perf_counter()
    await conn.execute("INSERT INTO bench_ref (id, account, amount) "
                       "SELECT id, 'acct', 1000 FROM unnest($1::uuid[]) id", ids)
    return time.perf_counter() - started


async def explain(conn, batch: list[_Entry], verbose: bool) -> None:
    """Where a batch's time goes: auto_explain of every nested statement (durations; plans without
    per-node timing, which would slow it), as notices."""
    notes: list[str] = []
    conn.add_log_listener(lambda c, m: notes.append(m.message))
    await conn.execute("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
                       "SET auto_explain.log_analyze = off; SET auto_explain.log_nested_statements = on; "
                       "SET auto_explain.log_level = notice; SET client_min_messages = notice")
    await run_batch(conn, batch, 0)
    await conn.execute("SET auto_explain.log_min_duration = -1")
    await asyncio.sleep(0.1)
    timed = []
    for m in notes:
        d = re.search(r"duration: ([\d.]+) ms", m)
        q = re.search(r"Query Text: (.*)", m)
        if d:
            timed.append((float(d.group(1)), (q.group(1) if q else m)[:110].replace("\n", " "), m))
    timed.sort(reverse=True)
    print(f"\nwhere a batch of {len(batch)} calls goes (auto_explain, nested statements; "
          f"{len(timed) - 1} statements under the batch take {sum(t[0] for t in timed[1:]):.1f} ms "
          f"of its {timed[0][0]:.1f} ms):")
    for ms, text, _ in timed[:12]:
        print(f"  {ms:8.2f} ms  {text}")
    if verbose:
        for _, _, plan in timed[1:4]:
            print("\n" + plan)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2048, help="talking calls (default 2048)")
    ap.add_argument("--per-account", type=int, default=2,
                    help="calls on each prepaid account (default 2)")
    ap.add_argument("--repeats", type=int, default=9, help="batches per size (default 9)")
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="calls a batch")
    ap.add_argument("--explain", action="store_true", help="auto_explain one batch of the largest size")
    ap.add_argument("--analyze", action="store_true",
                    help="ANALYZE after seeding (by default the statistics are those autovacuum "
                         "left, as early in a busy run)")
    ap.add_argument("--transfer-ids", type=int, default=0,
                    help="ids already listed on each call row (4 a period; default 0)")
    ap.add_argument("--plans", action="store_true", help="with --explain: the slowest three plans")
    args = ap.parse_args()
    if args.calls < 4 * max(args.sizes):
        ap.error(f"--calls must be at least {4 * max(args.sizes)}")

    tmp = tempfile.mkdtemp(prefix="ics-bench-group-commit-")
    server = EmbeddedServer(Path(tmp), fsync=True)
    dsn = server.start()
    try:
        admin = await asyncpg.connect(dsn)
        await admin.execute("CREATE DATABASE bench")
        print(f"server: PostgreSQL {await admin.fetchval('SHOW server_version')} (embedded, "
              f"fsync={await admin.fetchval('SHOW fsync')}, in {tmp})")
        await admin.close()
        bench_dsn = dsn.replace("/postgres?", "/bench?")
        conn = await asyncpg.connect(bench_dsn)
        other = await asyncpg.connect(bench_dsn)
        watch = await asyncpg.connect(bench_dsn)
        await migrate(conn)
        await conn.execute("CREATE TABLE bench_ref (id uuid PRIMARY KEY, account text, amount bigint)")
        calls = await seed(conn, args.calls, args.per_account)
        # The calls of each of group commit's two lanes (by funding account), lane k on shard k.
        group = GroupCommit(None, inflight_max=2)
        lanes = [Calls([c for c in calls if group._lane(c).first == k]) for k in range(2)]
        for k in range(0, len(calls), max(args.sizes)):         # Accept every call
            await run_batch(conn, entries(calls[k:k + max(args.sizes)]))
        for _ in range(2):                                   # warm up: every call talking
            for lane in (0, 1):
                for k in range(0, len(lanes[lane].calls), max(args.sizes)):
                    await run_batch(conn, entries(lanes[lane].take(max(args.sizes))), lane)
        if args.transfer_ids:       # as after many periods: the row's list of ids is long
            await conn.execute("UPDATE call SET transfer_ids = transfer_ids || ARRAY(SELECT "
                               "gen_random_uuid() FROM generate_series(1, $1))", args.transfer_ids)
        if args.analyze:
            await conn.execute("ANALYZE")
        print(f"seeded {len(calls)} talking calls, {args.per_account} on each prepaid account; "
              f"{args.repeats} batches per size, medians\n")

        for size in args.sizes:
            alone, mixed, laned, ref, waits = [], [], [], [], [0, 0]
            cpu = 0.0
            for _ in range(args.repeats):
                ref.append(await reference(conn, 4 * size))
                batch = entries(lanes[0].take(size))
                cpu -= backend_cpu(conn)
                alone.append(await run_batch(conn, batch, 0))
                cpu += backend_cpu(conn)
                # Two at once, each batch from both lanes' calls on its connection's own shard
                # (as before lanes) ...
                half = size // 2
                a = entries(lanes[0].take(half) + lanes[1].take(size - half))
                b = entries(lanes[0].take(half) + lanes[1].take(size - half))
                took, waited = await pair(watch, conn, a, None, other, b, None)
                mixed.append(took)
                waits[0] += waited
                # ... then each lane's batch on its own shard (as group commit now runs them).
                for lane in (0, 1):    # the holds the mixed batches made, back on their lanes
                    await run_batch(conn, entries([e.call for e in a + b
                                                   if group._lane(e.call).first == lane]), lane)
                a, b = entries(lanes[0].take(size)), entries(lanes[1].take(size))
                took, waited = await pair(watch, conn, a, 0, other, b, 1)
                laned.append(took)
                waits[1] += waited
            one, two_mixed, two_laned, r = (statistics.median(x) for x in (alone, mixed, laned, ref))
            ratio = statistics.median(x / y for x, y in zip(alone, ref))
            print(f"batch {size:>3} calls: one {one * 1e3:6.1f} ms ({one / size * 1e6:4.0f} µs a call, "
                  f"PostgreSQL CPU {cpu / args.repeats / size * 1e6:4.0f} µs a call) | "
                  f"two at once, mixed: {two_mixed * 1e3:6.1f} ms ({two_mixed / one:4.2f}x one, "
                  f"{waits[0]}/{args.repeats} waited on a row lock), by lane: {two_laned * 1e3:6.1f} ms "
                  f"({two_laned / one:4.2f}x one, {waits[1]}/{args.repeats} waited) | reference "
                  f"INSERT of {4 * size} rows {r * 1e3:5.1f} ms | ratio one/reference {ratio:5.1f}")
        if args.explain:
            await explain(conn, entries(lanes[0].take(max(args.sizes))), args.plans)
        report = await ledger.verify(conn)
        print(f"\nledger verify: {'ok' if report.ok else report}")
        await conn.close()
        await other.close()
        await watch.close()
        return 0 if report.ok else 1
    finally:
        server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
