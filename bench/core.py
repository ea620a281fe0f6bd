"""Benchmark of the call-control core over AMP (not a test).

In one run, on one embedded PostgreSQL (fsync on): provision 1,000 inmates and 10,000 contacts,
then (1) authorizations/s and latency percentiles over AMP, (2) N concurrent simulated calls with
short billing periods sending Continue for D seconds: Continue latency percentiles and late grants
(an answer that arrives after the grant it extends had run out). Reference, same server, same run:
pgbench simple-update commits/s. Prints figures, reference and ratios; runs ledger verify at the end.

    .venv/bin/python bench/core.py [--calls 2000] [--seconds 60] [--period 1] [--group-window 0.003] [--group-size N]

`--group-window 0` turns group commit off (each fast Continue commits alone), for comparison.
`--no-collector-tuning` keeps CPython's garbage-collector defaults (`ics serve` tunes them once the
node is up: switch.control.collector), for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def install_reactor():
    from twisted.internet import asyncioreactor
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    return loop


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def pgbench(server, seconds: int) -> float:
    from ops.embedded import _bin_dir
    exe = str(_bin_dir() / "pgbench")
    env = dict(os.environ, PGHOST=str(server.socket_dir), PGPORT=str(server.port), PGUSER="postgres")
    subprocess.run([exe, "-i", "-q", "-s", "1", "postgres"], env=env, check=True,
                   capture_output=True)
    r = subprocess.run([exe, "-b", "simple-update", "-c", "8", "-j", "2", "-T", str(seconds),
                        "postgres"], env=env, check=True, capture_output=True, text=True)
    return float(re.search(r"tps = ([0-9.]+)", r.stdout).group(1))


def _cpu_of(pids) -> float:
    """User + system CPU seconds of these processes (those gone count as 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


async def provision(conn, inmates: int, contacts_each: int, funded: int):
    import ledger
    from switch.rules.pin import hash_secret
    from ops.seed import DEMO_DIR, load_directory
    await load_directory(conn, DEMO_DIR / "directory.toml")
    pin = hash_secret("1234")
    ids = [str(200000 + i) for i in range(inmates)]
    await ledger.create_accounts(conn, [ledger.Account(f"inmate:{i}", "inmate_debit")
                                        for i in ids])
    await conn.executemany(
        "INSERT INTO inmate (id, name, facility_id, unit, pin_hash, debit_account, contacts_max) "
        "VALUES ($1, $2, 'riverside', 'A', $3, $4, 50)",
        [(i, f"Inmate {i}", pin, f"inmate:{i}") for i in ids])
    rows, numbers = [], []
    for n, i in enumerate(ids):
        for c in range(contacts_each):
            k = n * contacts_each + c
            e164 = f"+1951{200 + k // 10_000:03d}{k % 10_000:04d}"
            rows.append((i, e164))
            numbers.append(e164)
    await conn.executemany("INSERT INTO contact (inmate_id, e164, status) VALUES ($1, $2, 'approved')",
                           rows)
    funded_numbers = sorted(set(numbers))[:funded]
    await ledger.create_accounts(conn, [ledger.Account(f"prepaid:{e}", "prepaid_phone")
                                        for e in funded_numbers])
    await conn.executemany("INSERT INTO phone_account (e164, owner, ledger_account) VALUES ($1, 'x', $2)",
                           [(e, f"prepaid:{e}") for e in funded_numbers])
    import uuid
    transfers = [ledger.Transfer(uuid.uuid4(), ledger.TransferKind.SINGLE, "funding_clearing",
                                 account, 100_000_000, code=ledger.TransferCode.DEPOSIT)
                 for account in [f"prepaid:{e}" for e in funded_numbers] + [f"inmate:{i}" for i in ids]]
    for k in range(0, len(transfers), 1000):
        await ledger.submit(conn, transfers[k:k + 1000])
    return rows


async def main(args) -> int:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    import ledger
    from ops.embedded import EmbeddedServer
    from ops.migrate import migrate
    from switch.control.core import Core
    from switch.settings import CoreSettings
    from switch.control.service import WorkerLinkFactory, WorkerRegistry
    from switch.control.tariffs import Pricing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "switch"))
    from rig import flat_tariff

    import asyncpg
    reactor.startRunning(installSignalHandlers=False)
    loop = asyncio.get_running_loop()
    tmp = Path(tempfile.mkdtemp(prefix="ics-bench-core-"))
    server = EmbeddedServer(tmp, fsync=True)
    dsn = server.start()
    try:
        admin = await asyncpg.connect(dsn)
        await admin.execute("CREATE DATABASE bench")
        await admin.close()
        bench_dsn = dsn.replace("/postgres?", "/bench?")
        conn = await asyncpg.connect(bench_dsn)
        await migrate(conn)
        t = time.perf_counter()
        contacts = await provision(conn, args.inmates, args.contacts // args.inmates, args.calls + 100)
        await conn.close()
        print(f"provisioned {args.inmates} inmates, {len(contacts)} contacts in "
              f"{time.perf_counter() - t:.1f}s", flush=True)

        pool = await asyncpg.create_pool(bench_dsn, min_size=args.pool, max_size=args.pool)
        # Billed by the second: every Continue posts the talk of its period and holds the next
        # (by the minute, a 1 s period posts nothing after the first, and the ledger idles).
        tariff = flat_tariff(increment=1)

        async def load_tariff(c, fid):
            return tariff
        settings = CoreSettings(period_seconds=args.period, hold_slack_seconds=30,
                                warning_seconds=1, min_call_seconds=1,
                                group_commit_window_seconds=args.group_window,
                                group_commit_size_max=args.group_size,
                                group_commit_lanes=args.group_lanes)
        seen = {"batches": [], "careful": 0}

        def observe(what, outcome, **kw):
            if what == "group_commit" and outcome == "batch":
                seen["batches"].append((kw["size"], kw["seconds"]))
            elif what == "ledger" and outcome == "submit":
                seen["careful"] += 1              # every ledger submit, batches included
        core = Core(pool, Pricing(load_tariff), settings, observer=observe)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            WorkerLinkFactory(core, registry := WorkerRegistry())).asFuture(loop)
        if args.collector:
            from switch.control import collector
            collector.tune()        # as `ics serve` does once its node is up
        async with pool.acquire() as c:
            pairs = [tuple(r) for r in await c.fetch(
                "SELECT c.inmate_id, c.e164 FROM contact c JOIN phone_account p USING (e164) "
                "LIMIT $1", args.calls)]
        job = Path(tmp) / "load.json"
        job.write_text(json.dumps({"port": port.getHost().port, "contacts": contacts,
                                   "pairs": pairs, "args": vars(args),
                                   "secret": registry.secret.hex()}))
        # The load generator runs in its own process, so the core's figures are the core's.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", str(job), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        cpu0 = time.process_time()
        phase = {}

        async def watch_phase():
            """CPU seconds of the core, of PostgreSQL and of the load generator from the start
            of the Continue phase (the client says when on stderr)."""
            async for line in proc.stderr:
                sys.stderr.write(line.decode())
                if b"continue phase" in line and not phase:
                    async with pool.acquire() as c:
                        phase["pg_pids"] = [r[0] for r in await c.fetch(
                            "SELECT pid FROM pg_stat_activity WHERE datname = 'bench'")]
                    phase.update(core=time.process_time(), pg=_cpu_of(phase["pg_pids"]),
                                 at=time.perf_counter())
                    if args.profile:
                        import cProfile
                        phase["prof"] = cProfile.Profile()
                        phase["prof"].enable()
        watcher = asyncio.ensure_future(watch_phase())
        out = await proc.stdout.read()
        if "at" in phase:
            phase.update(core=time.process_time() - phase["core"],
                         pg=_cpu_of(phase["pg_pids"]) - phase["pg"],
                         wall=time.perf_counter() - phase["at"])
        await proc.wait()
        await watcher
        core_cpu = time.process_time() - cpu0
        if args.profile and "prof" in phase:
            import pstats
            phase["prof"].disable()
            pstats.Stats(phase["prof"]).sort_stats("tottime").print_stats(25)
        r = json.loads(out.decode().strip().splitlines()[-1])
        lat, cont_lat = r["auth_latencies"], r["continue_latencies"]
        phase["client"] = r["cpu"]
        auth_rate, allowed, cont_rate = r["auth_rate"], r["allowed"], r["continue_rate"]
        late, errors, elapsed, n_calls = r["late"], r["errors"], r["elapsed"], r["calls"]
        async with pool.acquire() as c:
            report = await ledger.verify(c)
        await pool.close()
        ref = pgbench(server, args.pgbench_seconds)
        print()
        print(f"authorizations: {auth_rate:,.0f}/s over AMP ({allowed}/{args.authorizations} allowed), "
              f"p50 {pct(lat, 50) * 1e3:.1f} ms, p99 {pct(lat, 99) * 1e3:.1f} ms "
              f"(target >= 1,000/s)")
        print(f"continue: {n_calls} concurrent calls, {args.period}s periods, {elapsed:.0f}s: "
              f"{cont_rate:,.0f} Continue/s, p50 {pct(cont_lat, 50) * 1e3:.1f} ms, "
              f"p99 {pct(cont_lat, 99) * 1e3:.1f} ms (target <= 50 ms), late grants {late} "
              f"({100 * late / max(1, len(cont_lat)):.2f}%, target <= 1%), errors {errors}, "
              f"group commit window {args.group_window * 1e3:g} ms")
        print(f"core process CPU: {core_cpu:.1f} s over the run")
        if "wall" in phase:
            done = len(cont_lat) + 2 * n_calls          # Continues, and each call's Accept and End
            print(f"Continue phase CPU ({phase['wall']:.0f} s): core {phase['core']:.1f} s "
                  f"({100 * phase['core'] / phase['wall']:.0f}% of a core, "
                  f"{1e3 * phase['core'] / max(1, done):.2f} ms a request), PostgreSQL "
                  f"{phase['pg']:.1f} s ({1e3 * phase['pg'] / max(1, done):.2f} ms a request), "
                  f"load generator {phase['client']:.1f} s; the machine has {os.cpu_count()} "
                  f"cores and others' work on it")
        if seen["batches"]:
            sizes = [n for n, _ in seen["batches"]]
            secs = [t for _, t in seen["batches"]]
            print(f"group commit: {len(sizes)} batches, {statistics.mean(sizes):.1f} steps a "
                  f"batch (max {max(sizes)}), batch p50 {pct(secs, 50) * 1e3:.1f} ms, p99 "
                  f"{pct(secs, 99) * 1e3:.1f} ms; {seen['careful'] - len(sizes)} ledger "
                  "submits by careful steps")
        print(f"reference: pgbench simple-update {ref:,.0f} commits/s on the same server")
        print(f"ratios: authorizations/pgbench {auth_rate / ref:.2f}, Continue/pgbench "
              f"{cont_rate / ref:.2f}")
        print(f"ledger verify: {'ok' if report.ok else report}")
        return 0 if report.ok else 1
    finally:
        server.destroy()


async def client_main(job_path: str) -> int:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols import amp

    from switch.wire import protocol as wire
    reactor.startRunning(installSignalHandlers=False)
    loop = asyncio.get_running_loop()
    job = json.loads(Path(job_path).read_text())
    args = argparse.Namespace(**job["args"])
    contacts = [tuple(c) for c in job["contacts"]]
    pairs = [tuple(p) for p in job["pairs"]]
    clients = [await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", job["port"]),
                                     amp.AMP()).asFuture(loop) for _ in range(args.links)]
    from switch.wire import amp_auth
    secret = bytes.fromhex(job["secret"])
    for n, c in enumerate(clients):        # each link is a worker the core can authenticate
        await amp_auth.say_hello(c.callRemote, amp_auth.derived_key(secret, f"b{n}"),
                                 worker_id=f"b{n}", capacity=2, sip_port=5070 + n,
                                 pid=os.getpid()).asFuture(loop)

    async def call(i, command, **kw):
        return await clients[i % len(clients)].callRemote(command, **kw).asFuture(loop)

    async def keyed(i, inmate):
        """A worker keys the PIN before it authorizes (not timed: scrypt is the PIN's cost)."""
        pin = await call(i, wire.CheckPin, kiosk="kiosk-a1", pin=inmate + "1234")
        return pin.get("pin_session")

    lat = []
    sem = asyncio.Semaphore(args.concurrency)

    picks = [random.choice(contacts) for _ in range(args.authorizations)]

    async def one_pin(i):
        async with sem:
            return await keyed(i, picks[i][0])
    sessions = await asyncio.gather(*(one_pin(i) for i in range(args.authorizations)))

    async def one_auth(i):
        inmate, number = picks[i]
        async with sem:
            t0 = time.perf_counter()
            a = await call(i, wire.Authorize, kiosk="kiosk-a1", inmate_id=inmate, number=number,
                           pin_session=sessions[i])
            lat.append(time.perf_counter() - t0)
            return a
    t0 = time.perf_counter()
    answers = await asyncio.gather(*(one_auth(i) for i in range(args.authorizations)))
    auth_rate = args.authorizations / (time.perf_counter() - t0)
    allowed = sum(1 for a in answers if a["allow"])
    await asyncio.gather(*(call(i, wire.End, call_id=a["call_id"], talk_seconds=0,
                                disposition="abandoned")
                           for i, a in enumerate(answers) if a["allow"]))

    async def set_up(i, inmate, number):      # not timed: the calls the Continue phase runs
        async with sem:
            return await call(i, wire.Authorize, kiosk="kiosk-a1", inmate_id=inmate,
                              number=number, pin_session=await keyed(i, inmate))
    set_up_answers = await asyncio.gather(*(set_up(i, inmate, number)
                                            for i, (inmate, number) in enumerate(pairs)))
    calls = [a["call_id"] for a in set_up_answers if a["allow"]]
    cont_lat, late, errors = [], 0, 0

    async def raw(i, command: bytes, **kw):
        """The Continue phase's requests as raw AMP boxes: the same bytes on the wire as
        callRemote, without its per-argument codec, so the load generator stays cheap beside
        the core it measures (both share the machine's cores)."""
        box = await clients[i % len(clients)].callRemoteString(command, **kw).asFuture(loop)
        return int(box[b"grant_until"]), box[b"last"] == b"True"

    async def run_call(i, call_id):
        nonlocal late, errors
        await asyncio.sleep(random.random() * args.period)     # spread the period ends
        cid = call_id.encode()
        grant_until, last = await raw(i, b"Accept", call_id=cid)
        started = time.perf_counter()
        period = 1
        while not last and time.perf_counter() - started < args.seconds:
            due = started + grant_until - args.lead
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            t = time.perf_counter()
            try:
                previous = grant_until
                grant_until, last = await raw(i, b"Continue", call_id=cid,
                                              period=str(period).encode(),
                                              talk_seconds=str(previous).encode())
            except Exception:
                errors += 1
                break
            now = time.perf_counter()
            cont_lat.append(now - t)
            if now > started + previous:                           # that grant had run out
                late += 1
            period += 1
        await call(i, wire.End, call_id=call_id,
                   talk_seconds=int(time.perf_counter() - started), disposition="completed")
    print(f"continue phase: {len(calls)} calls", file=sys.stderr, flush=True)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(run_call(i, c) for i, c in enumerate(calls)))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"auth_latencies": lat, "auth_rate": auth_rate, "allowed": allowed,
                      "continue_latencies": cont_lat, "continue_rate": len(cont_lat) / elapsed,
                      "late": late, "errors": errors, "elapsed": elapsed, "calls": len(calls),
                      "cpu": time.process_time() - cpu0}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        loop = install_reactor()
        sys.exit(loop.run_until_complete(client_main(sys.argv[2])))
    from switch.settings import CoreSettings
    CORE_DEFAULTS = CoreSettings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inmates", type=int, default=1000)
    ap.add_argument("--contacts", type=int, default=10_000)
    ap.add_argument("--authorizations", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--period", type=int, default=1)
    ap.add_argument("--lead", type=float, default=0.5, help="Continue this early before grant end")
    ap.add_argument("--links", type=int, default=8, help="AMP connections (workers)")
    ap.add_argument("--pool", type=int, default=16)
    ap.add_argument("--group-window", type=float, default=0.003,
                    help="group commit window in seconds (0: off)")
    ap.add_argument("--group-size", type=int, default=CORE_DEFAULTS.group_commit_size_max,
                    help="most calls in one group-commit batch")
    ap.add_argument("--group-lanes", type=int, default=CORE_DEFAULTS.group_commit_lanes,
                    help="group-commit batches running at once")
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--profile", action="store_true", help="cProfile the core while loaded")
    ap.add_argument("--no-collector-tuning", dest="collector", action="store_false",
                    help="keep CPython's collector defaults (ics serve tunes them)")
    args = ap.parse_args()
    loop = install_reactor()
    sys.exit(loop.run_until_complete(main(args)))
