"""`ics demo`: the product's main job end to end on the embedded database, in a few seconds.

Starts (or reuses) the embedded PostgreSQL under the data directory, migrates, loads the demo
facility (directory and rate deck), starts the core's AMP service and drives one call through
it exactly as a media worker does: PIN, authorization, accept, a Continue per billing period,
End. The core's clock is simulated, so "a little over a minute" of talk takes no real minute.
It prints the call's timeline, the CDR and the ledger transfers, runs the ledger's verify and
exits 0 when every invariant holds.
"""
from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone

import ledger
from ops.money import format_micros

__all__ = ["run_demo"]

KIOSK = "kiosk-a1"
KEYED_PIN = "100011234"      # inmate 10001, PIN 1234
NUMBER = "(951) 555-0101"    # his mother's number; her prepaid account pays
TALK_SECONDS = 75


class SimulatedClock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


async def load_demo_data(conn, cfg, out=print) -> None:
    from switch.seed import DEMO_DIR, load_directory
    await load_directory(conn, DEMO_DIR / "directory.toml", currency=cfg.ledger.currency,
                         progress=out)
    from rating import store
    if not await conn.fetchval("SELECT true FROM tariff_version WHERE facility_id = 'riverside'"):
        await store.import_deck(conn, (DEMO_DIR / "tariff.csv").read_text(), facility_id="riverside",
                                source="tariff.csv")
        out("loaded the riverside rate deck (config/demo/tariff.csv)")


async def run_demo(cfg, out=print) -> int:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols import amp

    from ops.db import connect
    from ops.migrate import migrate
    from switch import protocol as wire
    from switch.node import start_node
    from switch.tariffs import Pricing

    loop = asyncio.get_running_loop()
    reactor.startRunning(installSignalHandlers=False)
    out("starting the database and applying the schema ...")
    conn = await connect(cfg)
    try:
        await migrate(conn)
        await load_demo_data(conn, cfg, out)
    finally:
        await conn.close()

    node = await start_node(cfg, reactor, workers=0, pricing=Pricing(), amp_port=0, http_port=0)
    clock = SimulatedClock()
    node.core.clock = clock
    link = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", node.amp_port),
                                 amp.AMP()).asFuture(loop)
    timeline: list[str] = []
    t0 = clock.now

    def event(text: str) -> None:
        line = f"  +{int((clock.now - t0).total_seconds()):>4d}s  {text}"
        timeline.append(line)
        out(line)

    async def call(command, **kw):
        return await link.callRemote(command, **kw).asFuture(loop)

    try:
        out(f"\ncall timeline (simulated clock, billing period {cfg.core.period_seconds}s):")
        event(f"kiosk {KIOSK}: inmate keys PIN")
        pin = await call(wire.CheckPin, kiosk=KIOSK, pin=KEYED_PIN)
        if not pin["ok"]:
            out(f"PIN refused: {pin}")
            return 1
        event(f"PIN ok: inmate {pin['inmate_id']} (language {pin['language']})")
        event(f"inmate dials {NUMBER}")
        a = await call(wire.Authorize, kiosk=KIOSK, inmate_id=pin["inmate_id"], number=NUMBER)
        if not a["allow"]:
            out(f"call refused: {a['reason']}")
            return 1
        event(f"authorized: call {a['call_id'][:8]}, {a['e164']}, "
              f"{format_micros(a['rate_micros_per_minute'])}/min, paid by {a['funding']}, "
              f"up to {a['max_seconds']}s, recorded={a['record']}")
        event(f"called party hears: prepaid call from {a['inmate_name']}, an inmate at "
              f"{a['facility_name']}; recorded; {format_micros(a['rate_micros_per_minute'])} "
              "per minute; press 1 to accept")
        clock.advance(8)
        event("called party presses 1")
        g = await call(wire.Accept, call_id=a["call_id"])
        event(f"accepted: first period held, grant until {g['grant_until']}s of talk")
        talk, period, accepted_at = 0, 1, clock.now
        while talk < TALK_SECONDS:
            step = min(g["grant_until"], TALK_SECONDS) - talk
            clock.advance(step)
            talk += step
            if talk >= TALK_SECONDS:
                break
            g = await call(wire.Continue, call_id=a["call_id"], period=period, talk_seconds=talk)
            event(f"period {period} ends at {talk}s: posted; next grant until "
                  f"{g['grant_until']}s{' (last)' if g['last'] else ''}")
            period += 1
        event(f"called party hangs up after {talk}s of talk")
        e = await call(wire.End, call_id=a["call_id"], talk_seconds=talk, disposition="completed")
        event(f"ended: billed {e['billed_seconds']}s, charged {format_micros(e['charged_micros'])}")

        async with node.pool.acquire() as c:
            cdr = await c.fetchrow("SELECT * FROM cdr WHERE call_id = $1::uuid", a["call_id"])
            out("\nCDR:")
            for key in ("call_id", "facility_id", "kiosk_id", "inmate_id", "e164", "jurisdiction",
                        "payment_type", "funding_account", "talk_seconds", "billed_seconds",
                        "disposition", "call_micros", "tax_micros", "total_micros",
                        "tariff_version"):
                out(f"  {key:<16} {cdr[key]}")
            charges = json.loads(cdr["charges"])
            for s in charges.get("spans", []):
                out(f"  span @{s['offset']}s: {s['billed_seconds']}s billed at "
                    f"{format_micros(s['price_micros'])}/{s['per_seconds']}s = "
                    f"{format_micros(s['amount_micros'])} ({s['line']})")
            for s in charges.get("surcharges", []):
                out(f"  {s['kind']} {s['name']}: {format_micros(s['amount_micros'])}")
            out("\nledger transfers of the call:")
            rows = await c.fetch(
                "SELECT t.id, t.kind, t.debit_account_id, t.credit_account_id, t.amount, t.code "
                "FROM ledger_transfer t WHERE t.id = ANY($1::uuid[]) ORDER BY t.seq",
                list(cdr["transfer_ids"]))
            for r in rows:
                out(f"  {str(r['id'])[:8]}  {_kind(r['kind']):<5} {r['debit_account_id']:<22} -> "
                    f"{r['credit_account_id']:<12} {format_micros(r['amount']):>8}  {r['code']}")
            bal = await ledger.balance(c, a["funding"])
            out(f"\nbalance of {a['funding']}: available {format_micros(bal.available)}, "
                f"pending {format_micros(bal.pending)}")
            report = await ledger.verify(c)
        out(f"ledger verify: {'ok, every invariant holds' if report.ok else report}")
        return 0 if report.ok else 1
    finally:
        link.transport.loseConnection()
        await node.stop()


def _kind(value) -> str:
    try:
        return ledger.TransferKind(value).name.lower()
    except ValueError:
        return str(value)
