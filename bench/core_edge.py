"""Benchmark of what the edge's checks cost a call's set-up (not a test).

A call's set-up at the core is CheckPin then Authorize, over AMP. The edge adds to them: the
kiosk's source networks matched against the address the worker saw, PIN throttles counted per
kiosk and source under advisory locks, a PIN session issued and redeemed, and AMP authentication
(once per connection, not per call). Figure: median Authorize and CheckPin + Authorize latency with
every check on (a kiosk with 8 registered networks). Reference, same machine, same run: the same
measurement on a checkout of the code before the edge checks (`--reference DIR`). Each side runs
in its own process on its own embedded PostgreSQL, both up at once; blocks of calls alternate
between them, so a change in the machine's load hits both alike. Reported: the medians over all
calls, and the median over blocks of the ratio of the two sides' block medians.

    git worktree add --detach /tmp/ics-ref <commit before the edge checks>
    .venv/bin/python bench/core_edge.py --reference /tmp/ics-ref [--blocks 20] [--block-calls 20]
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


async def measure() -> None:
    """One side, with the code in the working directory (bench/ holds a switch.py): set up, warm
    up, then answer each stdin line N with the latencies of N calls; an empty line ends it."""
    sys.path.insert(0, str(Path.cwd()))
    from twisted.internet import asyncioreactor
    asyncioreactor.install(asyncio.get_running_loop())
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
    from twisted.protocols import amp

    import asyncpg
    from ops.embedded import EmbeddedServer
    from ops.migrate import migrate
    from switch.wire import protocol as wire
    from switch.control.core import Core
    from switch.settings import CoreSettings
    from ops.seed import DEMO_DIR, load_directory
    from switch.control.service import WorkerLinkFactory, WorkerRegistry
    from switch.control.tariffs import Pricing
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
            from switch.provisioning.directory import add_kiosk
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
            from switch.wire import amp_auth
            await amp_auth.say_hello(client.callRemote, registry.key_for("w1"), worker_id="w1",
                                     capacity=2, sip_port=5070, pid=os.getpid()).asFuture(loop)

        async def call(command, **kw):
            return await client.callRemote(command, **kw).asFuture(loop)
        extra = {"source_ip": SOURCE_IP} if edge else {}

        async def one():
            t0 = time.perf_counter()
            pin = await call(wire.CheckPin, kiosk="kiosk-a1", pin="100011234", **extra)
            t1 = time.perf_counter()
            session = {"pin_session": pin["pin_session"]} if edge else {}
            a = await call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=MOM,
                           **extra, **session)
            t2 = time.perf_counter()
            assert pin["ok"] and a["allow"], (pin, a)
            await call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="abandoned")
            return t2 - t1, t2 - t0
        for _ in range(10):                          # warm up
            await one()
        print(json.dumps({"edge": edge}), flush=True)
        # Serve blocks on request: a line with N runs N calls and answers their latencies.
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while (line := (await reader.readline()).strip()):
            out = [await one() for _ in range(int(line))]
            print(json.dumps(out), flush=True)
        client.transport.loseConnection()
        await pool.close()
    finally:
        server.destroy()


class Side:
    """One side's measuring process (the code in `code_dir`), asked for blocks of calls."""

    def __init__(self, code_dir: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
        env["PYTHONPATH"] = str(code_dir)
        self.proc = subprocess.Popen([sys.executable, __file__, "--measure"], cwd=code_dir,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.edge = json.loads(self._line())["edge"]

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a measuring process ended (exit {self.proc.wait()})")
        return line

    def block(self, n: int) -> list[tuple[float, float]]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return [tuple(x) for x in json.loads(self._line())]

    def close(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=Path,
                    help="a checkout of the code before the edge checks")
    ap.add_argument("--ablation", action="store_true",
                    help="the reference has the edge with a part switched off (to cost that part)")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--block-calls", type=int, default=20)
    args = ap.parse_args()
    mine, ref = Side(HERE), Side(args.reference)
    try:
        assert mine.edge and (not ref.edge or args.ablation), \
            "the reference must be code without the edge checks (or pass --ablation)"
        ours, theirs, ratios = [], [], {0: [], 1: []}
        for n in range(args.blocks):
            if n % 2:                                # who goes first alternates too
                pair = [ref.block(args.block_calls), mine.block(args.block_calls)]
            else:
                m = mine.block(args.block_calls)
                pair = [ref.block(args.block_calls), m]
            theirs += pair[0]
            ours += pair[1]
            for k in (0, 1):
                ratios[k].append(statistics.median(x[k] for x in pair[1])
                                 / statistics.median(x[k] for x in pair[0]))
    finally:
        mine.close()
        ref.close()
    for k, name in ((0, "Authorize"), (1, "CheckPin + Authorize (a call's set-up at the core)")):
        a = statistics.median(x[k] for x in ours) * 1e3
        b = statistics.median(x[k] for x in theirs) * 1e3
        print(f"{name}: {a:.2f} ms with the edge checks; reference {b:.2f} ms before them; "
              f"ratio {a / b:.3f}; median of block ratios {statistics.median(ratios[k]):.3f} "
              f"({args.blocks} blocks x {args.block_calls} calls a side)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--measure":
        asyncio.run(measure())
        sys.exit(0)
    sys.exit(main())
