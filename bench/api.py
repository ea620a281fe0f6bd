"""Benchmark: the operations API on 1,000,000 CDRs, next to asyncpg reading the same rows.

One run, one embedded PostgreSQL (fsync off: the figures are reads) or $ICS_DATABASE_URL. The
CDRs (and their calls) are bulk-loaded with COPY; one prepaid account gets a long statement. A
live node (`ics serve --workers 0`, a process of its own) serves the API; this process is the
client. Measured, each over several rounds, medians printed with the reference measured in the
same run and the ratio:

- CDR list pages (limit 100; first pages and deep pages reached by cursor): p50/p99 latency of
  one client, and requests/s of `--clients` concurrent clients; reference: the same keyset
  query through asyncpg directly.
- Statement pages (limit 100) of an account with `--statement-lines` lines: the same.
- CSV export of every CDR: rows/s and the node's peak RSS (sampled from /proc) while it
  streams; reference: asyncpg fetching the same rows with a server-side cursor.

Targets: page p99 <= 50 ms; export >= 100,000 rows/s with the node under 100 MB.

    .venv/bin/python bench/api.py [--cdrs 1000000] [--rounds 3] [--clients 4]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger  # noqa: E402
from ops.embedded import EmbeddedServer  # noqa: E402
from ops.migrate import migrate  # noqa: E402
from switch.provisioning.directory import add_phone_account, ensure_house_accounts  # noqa: E402
from web import cdrs as cdr_query  # noqa: E402
from web import money as money_  # noqa: E402
from web.operators import add_operator, issue_token  # noqa: E402

PAGE = 100
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
FACILITIES = [f"fac{i}" for i in range(10)]
NUMBER = "+12125550100"


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def load(dsn: str, n: int, statement_lines: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await ensure_house_accounts(conn)
        await conn.executemany(
            "INSERT INTO facility (id, name, state, time_zone, adp, kind, profile) "
            "VALUES ($1, $1, 'NY', 'America/New_York', 500, 'jail', 'fcc-2024')",
            [(f,) for f in FACILITIES])
        rnd = random.Random(1)
        chunk = 100_000
        started = time.perf_counter()
        for base in range(0, n, chunk):
            calls, rows = [], []
            for i in range(base, min(n, base + chunk)):
                cid = uuid.UUID(int=rnd.getrandbits(128))
                fac = FACILITIES[i % 10]
                ended = T0 + dt.timedelta(seconds=i * 30 + rnd.randrange(30))
                talk = rnd.randrange(900)
                billed = -(-talk // 60) * 60
                micros = billed // 60 * 210_000
                number = f"+1212555{rnd.randrange(10_000):04d}"
                inmate = f"{1000 + rnd.randrange(5000)}"
                auth = ended - dt.timedelta(seconds=talk + 20)
                calls.append((cid, "ended", fac, "k1", inmate, number, "interstate", False, True,
                              900, "balance", auth, ended, ended))
                rows.append((cid, fac, "k1", inmate, number, "interstate", "prepaid", False,
                             auth, auth, ended, talk, billed, "completed", micros, 0, micros,
                             "{}", []))
            await conn.copy_records_to_table(
                "call", records=calls,
                columns=["id", "state", "facility_id", "kiosk_id", "inmate_id", "e164",
                         "jurisdiction", "privileged", "record", "max_seconds", "limited_by",
                         "authorized_at", "last_seen_at", "ended_at"])
            await conn.copy_records_to_table(
                "cdr", records=rows,
                columns=["call_id", "facility_id", "kiosk_id", "inmate_id", "e164",
                         "jurisdiction", "payment_type", "privileged", "authorized_at",
                         "accepted_at", "ended_at", "talk_seconds", "billed_seconds",
                         "disposition", "call_micros", "tax_micros", "total_micros", "charges",
                         "transfer_ids"])
        print(f"setup: {n} CDRs copied in {time.perf_counter() - started:.1f}s", flush=True)
        # A family account with a long history: deposits through the ledger, in batches.
        await add_phone_account(conn, NUMBER, "Bench Family")
        account = (await money_.resolve(conn, NUMBER)).ledger_account
        started = time.perf_counter()
        batch = ledger.BATCH_SIZE_MAX
        for base in range(0, statement_lines, batch):
            await ledger.submit(conn, [ledger.Transfer(
                id=uuid.uuid5(money_.MONEY_NAMESPACE, f"bench:{i}"),
                kind=ledger.TransferKind.SINGLE, debit="funding_clearing", credit=account,
                amount=1_000_000 + i, code=ledger.TransferCode.DEPOSIT, ref=f"bench-{i}")
                for i in range(base, min(statement_lines, base + batch))])
        print(f"setup: {statement_lines} statement lines in "
              f"{time.perf_counter() - started:.1f}s", flush=True)
        await conn.execute("VACUUM ANALYZE")
        await add_operator(conn, "bench", "admin", actor="cli:bench", via="cli")
    finally:
        await conn.close()


async def token(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return (await issue_token(conn, "bench", actor="cli:bench", via="cli")).token
    finally:
        await conn.close()


def start_node(dsn: str, root: Path) -> tuple[subprocess.Popen, int]:
    config = root / "ics.toml"
    config.write_text(f'[database]\nurl = "{dsn}"\npool_min = 2\npool_max = 8\n'
                      f'[node]\ndata_dir = "{root}"\nlog_level = "warning"\n'
                      '[core]\nhttp_port = 0\n[switch]\ncore_amp_port = 0\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "--config", str(config), "serve",
                             "--workers", "0"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    deadline, buf = time.monotonic() + 60, b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            data = os.read(proc.stderr.fileno(), 65536)
            if not data:
                break
            buf += data
            m = re.search(rb"HTTP :(\d+)", buf)
            if m:
                threading.Thread(target=lambda: [None for _ in iter(
                    lambda: proc.stderr.read(65536), b"")], daemon=True).start()
                return proc, int(m.group(1))
    proc.kill()
    raise SystemExit("the node did not start:\n" + buf.decode(errors="replace")[-3000:])


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get_json(self, path: str, params: dict) -> dict:
        self.conn.request("GET", "/api/v1" + path + "?" + urlencode(params),
                          headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit(f"{path}: {r.status} {body[:300]!r}")
        return json.loads(body)


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def page_cursors(client: Client, path: str, key: str, n: int, first: dict) -> list[dict]:
    """Query strings of `n` pages: the first, then each reached by the previous page's cursor."""
    params, out = dict(first), []
    for _ in range(n):
        out.append(dict(params))
        nxt = client.get_json(path, params)["next_cursor"]
        if nxt is None:
            break
        params = dict(first, cursor=nxt)
    return out


def http_latencies(client: Client, path: str, pages: list[dict]) -> list[float]:
    out = []
    for p in pages:
        t = time.perf_counter()
        client.get_json(path, p)
        out.append(time.perf_counter() - t)
    return out


def http_rate(port: int, tok: str, path: str, pages: list[dict], clients: int,
              seconds: float) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def run(i):
        c = Client(port, tok)
        k = i
        while time.perf_counter() < stop:
            c.get_json(path, pages[k % len(pages)])
            k += clients
            done[i] += 1
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.perf_counter() - t)


async def direct_cdr_latencies(dsn: str, pages: list[dict]) -> list[float]:
    conn = await asyncpg.connect(dsn)
    out = []
    try:
        for p in pages:
            t = time.perf_counter()
            await cdr_query.page(conn, cdr_query.CdrFilter(
                facilities=[p["facility"]] if "facility" in p else None),
                limit=PAGE, cursor=p.get("cursor"))
            out.append(time.perf_counter() - t)
    finally:
        await conn.close()
    return out


async def direct_statement_latencies(dsn: str, account: str, pages: list[dict],
                                     key: bytes) -> list[float]:
    """The same pages (range and continuation) through web.money directly on asyncpg."""
    from web import cursors
    conn = await asyncpg.connect(dsn)
    out = []
    try:
        for p in pages:
            since = dt.datetime.fromisoformat(p["since"]) if "since" in p else None
            after = (cursors.unseal(key, ">qqq", p["cursor"]) if "cursor" in p else None)
            t = time.perf_counter()
            await money_.statement_page(conn, account, since=since, until=None, after=after,
                                        limit=PAGE)
            out.append(time.perf_counter() - t)
    finally:
        await conn.close()
    return out


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_export(port: int, tok: str, pid: int) -> tuple[int, float, int, int]:
    """Rows, seconds, the node's RSS before and its peak during the export (kB)."""
    before = rss_kb(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            stop.wait(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t = time.perf_counter()
    conn.request("GET", "/api/v1/cdrs.csv", headers={"Authorization": f"Bearer {tok}"})
    r = conn.getresponse()
    lines = 0
    while True:
        chunk = r.read(1 << 16)
        if not chunk:
            break
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - t
    stop.set()
    sampler.join()
    if r.status != 200:
        raise SystemExit(f"export: {r.status}")
    return lines - 1, elapsed, before, peak[0]


async def direct_export(dsn: str) -> tuple[int, float]:
    """asyncpg reading every CDR (same columns, same order) through a server-side cursor."""
    conn = await asyncpg.connect(dsn)
    try:
        t = time.perf_counter()
        rows = 0
        async with conn.transaction(readonly=True):
            cur = await conn.cursor(f"SELECT {cdr_query._COLUMNS} FROM cdr "
                                    "ORDER BY ended_at DESC, call_id DESC")
            while True:
                batch = await cur.fetch(10_000)
                if not batch:
                    break
                rows += len(batch)
        return rows, time.perf_counter() - t
    finally:
        await conn.close()


def line(name: str, value: float, ref: float, unit: str, note: str = "") -> None:
    print(f"{name:<44} {value:>12,.1f} {unit:<8} reference {ref:>12,.1f} {unit:<8} "
          f"ratio {value / ref:>6.2f}{note}", flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cdrs", type=int, default=1_000_000)
    ap.add_argument("--statement-lines", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pages", type=int, default=200, help="pages per latency round")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ics-bench-api-"))
    server = None
    if os.environ.get("ICS_DATABASE_URL"):
        admin_dsn = os.environ["ICS_DATABASE_URL"]
    else:
        server = EmbeddedServer(tmp / "pg", fsync=False)
        admin_dsn = server.start()
    name = f"ics_bench_api_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    dsn = with_database(admin_dsn, name)
    proc = None
    try:
        version = await (await asyncpg.connect(dsn)).fetchval("SHOW server_version")
        print(f"server: PostgreSQL {version}; cpus={os.cpu_count()}; page size {PAGE}; "
              f"{args.rounds} rounds; medians", flush=True)
        await load(dsn, args.cdrs, args.statement_lines)
        proc, port = start_node(dsn, tmp)
        tok = await token(dsn)
        client = Client(port, tok)
        account = f"prepaid:{NUMBER}"
        key_conn = await asyncpg.connect(dsn)
        client.get_json(f"/accounts/{NUMBER}/statement", {"limit": 1})   # makes the key
        key = bytes(await key_conn.fetchval("SELECT key FROM api_secret WHERE name = 'cursor'"))
        await key_conn.close()

        cdr_pages = (page_cursors(client, "/cdrs", "cdrs", args.pages // 2, {"limit": PAGE})
                     + page_cursors(client, "/cdrs", "cdrs", args.pages // 2,
                                    {"limit": PAGE, "facility": "fac3"}))
        st_pages = page_cursors(client, f"/accounts/{NUMBER}/statement", "lines",
                               args.pages // 2, {"limit": PAGE})
        # Deep pages too: a range starting near the end of the history (its first page sums
        # everything before it, once), then the pages after it by cursor.
        conn = await asyncpg.connect(dsn)
        late = await conn.fetchval(
            "SELECT created_at FROM ledger_transfer WHERE credit_account_id = $1 ORDER BY seq "
            "OFFSET $2 LIMIT 1", account, max(0, args.statement_lines - 5 * PAGE))
        await conn.close()
        st_pages += page_cursors(client, f"/accounts/{NUMBER}/statement", "lines",
                                 args.pages // 2, {"limit": PAGE, "since": late.isoformat()})
        results: dict[str, list[float]] = {}

        def add(key, v):
            results.setdefault(key, []).append(v)
        for rnd in range(args.rounds):
            lat = http_latencies(client, "/cdrs", cdr_pages)
            ref = await direct_cdr_latencies(dsn, cdr_pages)
            add("cdr_p50", percentile(lat, 50)), add("cdr_p99", percentile(lat, 99))
            add("cdr_ref_p50", percentile(ref, 50)), add("cdr_ref_p99", percentile(ref, 99))
            add("cdr_rps", http_rate(port, tok, "/cdrs", cdr_pages, args.clients, args.seconds))
            add("cdr_ref_rps", 1 / statistics.mean(ref))
            lat = http_latencies(client, f"/accounts/{NUMBER}/statement", st_pages)
            ref = await direct_statement_latencies(dsn, account, st_pages, key)
            add("st_p50", percentile(lat, 50)), add("st_p99", percentile(lat, 99))
            add("st_ref_p50", percentile(ref, 50)), add("st_ref_p99", percentile(ref, 99))
            add("st_rps", http_rate(port, tok, f"/accounts/{NUMBER}/statement", st_pages,
                                    args.clients, args.seconds))
            add("st_ref_rps", 1 / statistics.mean(ref))
            rows, secs, before, peak = http_export(port, tok, proc.pid)
            if rows != args.cdrs:
                raise SystemExit(f"export gave {rows} rows, expected {args.cdrs}")
            add("exp_rps", rows / secs), add("exp_peak_mb", peak / 1024)
            add("exp_growth_mb", (peak - before) / 1024)
            rrows, rsecs = await direct_export(dsn)
            add("exp_ref_rps", rrows / rsecs)
            print(f"round {rnd + 1}: cdr p99 {results['cdr_p99'][-1] * 1e3:.1f} ms, statement "
                  f"p99 {results['st_p99'][-1] * 1e3:.1f} ms, export {rows / secs:,.0f} rows/s "
                  f"peak RSS {peak / 1024:.0f} MB (+{(peak - before) / 1024:.0f})", flush=True)

        m = {k: statistics.median(v) for k, v in results.items()}
        print()
        print(f"CDR list pages ({len(cdr_pages)} pages per round, first to deep, all and one "
              f"facility):")
        line("  p50 latency, API over HTTP", m["cdr_p50"] * 1e3, m["cdr_ref_p50"] * 1e3, "ms")
        line("  p99 latency, API over HTTP", m["cdr_p99"] * 1e3, m["cdr_ref_p99"] * 1e3, "ms",
             f"   target p99 <= 50 ms: {'met' if m['cdr_p99'] <= 0.05 else 'MISSED'}")
        line(f"  requests/s, {args.clients} clients", m["cdr_rps"], m["cdr_ref_rps"], "req/s",
             "   (reference: one asyncpg connection, sequential)")
        print(f"Statement pages ({len(st_pages)} pages per round, account of "
              f"{args.statement_lines} lines):")
        line("  p50 latency, API over HTTP", m["st_p50"] * 1e3, m["st_ref_p50"] * 1e3, "ms")
        line("  p99 latency, API over HTTP", m["st_p99"] * 1e3, m["st_ref_p99"] * 1e3, "ms",
             f"   target p99 <= 50 ms: {'met' if m['st_p99'] <= 0.05 else 'MISSED'}")
        line(f"  requests/s, {args.clients} clients", m["st_rps"], m["st_ref_rps"], "req/s",
             "   (reference: one asyncpg connection, sequential)")
        print(f"CSV export of {args.cdrs:,} CDRs:")
        line("  rows/s, API over HTTP", m["exp_rps"], m["exp_ref_rps"], "rows/s",
             f"   target >= 100,000: {'met' if m['exp_rps'] >= 100_000 else 'MISSED'}")
        print(f"  node peak RSS during export: {m['exp_peak_mb']:.0f} MB (growth "
              f"{m['exp_growth_mb']:.0f} MB over the idle node); target < 100 MB: "
              f"{'met' if m['exp_peak_mb'] < 100 else 'MISSED'}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.destroy()
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()


if __name__ == "__main__":
    # A TERM (e.g. from `timeout`) unwinds like Ctrl-C, so the node and the server are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())
