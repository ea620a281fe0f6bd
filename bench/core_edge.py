"""Benchmark of what the edge's checks cost a call's set-up (not a test).

A call's set-up at the core is CheckPin then Authorize, over AMP. The edge adds to them: the
kiosk's source networks matched against the address the worker saw, PIN throttles counted per
kiosk and source under advisory locks, a PIN session issued and redeemed, and AMP authentication
(once per connection, not per call). Figure: median Authorize and CheckPin + Authorize latency with
every check on (a kiosk with 8 registered networks). Reference, same machine, same run: the same
measurement on a checkout of the code before the edge checks (`--reference DIR`), rounds
alternating between the two. Each side runs in its own process on its own embedded PostgreSQL.

    git worktree add --detach /tmp/ics-ref <commit before the edge checks>
    .venv/bin/python bench/core_edge.py --reference /tmp/ics-ref [--calls 300] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
KIOSK_NETWORKS = ["10.1.2.0/24", "10.1.3.0/24", "10.1.4.0/24", "10.1.5.0/24", "10.2.0.0/16",
                  "192.0.2.0/28", "198.51.100.7", "2001:db8:1::/48"]
SOURCE_IP = "10.2.77.9"
MOM = "+19515550101"


async def measure(calls: int) -> dict:
    """One side's figures, with the code in the working directory (bench/ holds a switch.py)."""
    sys.path.insert(0, str(Path.cwd()))
    from twisted.internet import asyncioreactor
    asyncioreactor.install(asyncio.get_running_loop())
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
    from twisted.protocols import amp

    import asyncpg
    from ops.embedded import EmbeddedServer
    from ops.migrate import migrate
    from switch import protocol as wire
    from switch.core import Core, CoreSettings
    from switch.seed import DEMO_DIR, load_directory
    from switch.service import WorkerLinkFactory, WorkerRegistry
    from switch.tariffs import Pricing
    sys.path.insert(0, str(Path.cwd() / "tests" / "switch"))     # this side's test tariff
    from rig import flat_tariff

    edge = hasattr(wire, "Challenge")
    reactor.startRunning(installSignalHandlers=False)
    loop = asyncio.get_running_loop()
    tmp = Path(tempfile.mkdtemp(prefix="ics-bench-edge-"))
    server = EmbeddedServer(tmp, fsync=True)
    dsn = server.start()
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await load_directory(conn, DEMO_DIR / "directory.toml")
        if edge:
            from switch.directory import add_kiosk
            await add_kiosk(conn, "kiosk-a1", "riverside", unit="A", sources=KIOSK_NETWORKS,
                            trusted=True)
        await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4)
        tariff = flat_tariff()

        async def load_tariff(c, fid):
            return tariff
        # Limits high enough that the bench's own PIN checks never throttle.
        core = Core(pool, Pricing(load_tariff), CoreSettings(min_call_seconds=1))
        registry = WorkerRegistry()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            WorkerLinkFactory(core, registry)).asFuture(loop)
        client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1",
                                                          port.getHost().port),
                                       amp.AMP()).asFuture(loop)
        if edge:
            from switch import amp_auth
            await amp_auth.say_hello(client.callRemote, registry.key_for("w1"), worker_id="w1",
                                     capacity=2, sip_port=5070, pid=os.getpid()).asFuture(loop)

        async def call(command, **kw):
            return await client.callRemote(command, **kw).asFuture(loop)
        auth, setup = [], []
        extra = {"source_ip": SOURCE_IP} if edge else {}
        for i in range(calls + 10):                  # the first 10 warm up
            t0 = time.perf_counter()
            pin = await call(wire.CheckPin, kiosk="kiosk-a1", pin="100011234", **extra)
            t1 = time.perf_counter()
            session = {"pin_session": pin["pin_session"]} if edge else {}
            a = await call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=MOM,
                           **extra, **session)
            t2 = time.perf_counter()
            assert pin["ok"] and a["allow"], (pin, a)
            await call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="abandoned")
            if i >= 10:
                auth.append(t2 - t1)
                setup.append(t2 - t0)
        client.transport.loseConnection()
        await pool.close()
        return {"edge": edge, "authorize_ms": statistics.median(auth) * 1e3,
                "setup_ms": statistics.median(setup) * 1e3}
    finally:
        server.destroy()


def side(code_dir: Path, calls: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["PYTHONPATH"] = str(code_dir)
    r = subprocess.run([sys.executable, __file__, "--measure", str(calls)], cwd=code_dir, env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"measurement in {code_dir} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path,
                    help="a checkout of the code before the edge checks")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    mine, ref = [], []
    for n in range(args.rounds):
        ref.append(side(args.reference, args.calls))
        mine.append(side(HERE, args.calls))
        print(f"round {n + 1}: edge authorize {mine[-1]['authorize_ms']:.2f} ms, set-up "
              f"{mine[-1]['setup_ms']:.2f} ms; reference authorize {ref[-1]['authorize_ms']:.2f} ms,"
              f" set-up {ref[-1]['setup_ms']:.2f} ms", flush=True)
    assert all(m["edge"] for m in mine) and not any(r["edge"] for r in ref), \
        "the reference must be code without the edge checks"
    for key, name in (("authorize_ms", "Authorize"), ("setup_ms", "CheckPin + Authorize")):
        a = statistics.median(m[key] for m in mine)
        b = statistics.median(r[key] for r in ref)
        print(f"{name}: {a:.2f} ms with the edge checks; reference {b:.2f} ms before them; "
              f"ratio {a / b:.3f} (medians of {args.rounds} rounds x {args.calls} calls)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(asyncio.run(measure(int(sys.argv[2])))))
        sys.exit(0)
    sys.exit(main())
