"""`ics edge render`: Kamailio's config and tables for the production edge, from the node config
and the kiosk table (ops/edge.py renders; docs/security.md says what an operator sets)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from ops.cli import UsageError, count, exports

TEMPLATE = Path(__file__).resolve().parents[2] / "config" / "kamailio" / "kamailio.cfg"
KEY_FILE = "topoh.key"       # kept across renders: masked Record-Routes of live calls stay valid


def register(sub) -> None:
    p = sub.add_parser("edge", help="the production SIP edge (Kamailio)")
    s = p.add_subparsers(dest="edge_command", metavar="ACTION", required=True)
    r = exports(s.add_parser("render", help="write kamailio.cfg, kiosks.list and dispatcher.list "
                                            "from the config and the kiosk table"))
    r.add_argument("--out", required=True, metavar="DIR", help="directory to write the files to")
    r.add_argument("--install-dir", metavar="DIR",
                   help="where Kamailio will read the tables from (default: --out)")
    r.add_argument("--listen", required=True, metavar="IP:PORT", help="kiosk-facing socket")
    r.add_argument("--internal", metavar="IP:PORT",
                   help="socket towards the workers, on a network kiosks cannot reach")
    r.add_argument("--advertise", metavar="IP", help="address in masked headers (default: "
                                                     "the listen address)")
    r.add_argument("--node", action="append", default=[], metavar="IP",
                   help="a node's worker address (repeat per node; default: [switch] sip_host)")
    r.add_argument("--worker-calls", type=count(1), default=2, metavar="N",
                   help="calls one worker holds (its Hello's capacity; 2 with the stock pjsua2)")
    r.add_argument("--rtpengine", metavar="udp:IP:PORT",
                   help="anchor media at rtpengine's ng socket (strict source on kiosk legs)")
    r.add_argument("--pike-requests", type=count(1), default=30, metavar="N",
                   help="requests per source per window before it is ignored as a flood")
    r.add_argument("--pike-window", type=count(1), default=2, metavar="SECONDS",
                   help="the flood window (default 2 s)")
    r.add_argument("--template", default=str(TEMPLATE), metavar="FILE",
                   help="the Kamailio config template (default: config/kamailio/kamailio.cfg)")
    r.set_defaults(func=_render)


def _render(args, ctx) -> int:
    from ops.edge import (EdgeError, EdgeSettings, KioskRow, address_table, dispatcher_table,
                          render_config, workers_of_nodes)
    cfg = ctx.cfg
    out = Path(args.out).resolve()
    install = Path(args.install_dir).resolve() if args.install_dir else out
    try:
        template = Path(args.template).read_text()
    except OSError as e:
        raise UsageError(f"edge: --template {args.template}: {e.strerror}") from None

    async def kiosks(conn):
        return [KioskRow(r["id"], r["source"], r["trusted"], r["active"]) for r in await conn.fetch(
            # One row per registered network (a kiosk may have several); none: one NULL row.
            "SELECT k.id, host(n) || '/' || masklen(n) AS source, k.trusted, k.active "
            "FROM kiosk k LEFT JOIN LATERAL unnest(k.sources) AS n ON true ORDER BY k.id, n")]
    rows: list = []

    async def load(conn):
        rows.extend(await kiosks(conn))
    ctx.run_with_connection(load)

    try:
        table = address_table(rows)
        workers = workers_of_nodes(args.node or [cfg.switch.sip_host], cfg.switch.workers,
                                   cfg.switch.worker_sip_port_base, args.worker_calls)
    except EdgeError as e:
        raise UsageError(f"edge: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    key = _topoh_key(out / KEY_FILE)
    try:
        settings = EdgeSettings(
            listen=args.listen, internal=args.internal, advertised_ip=args.advertise,
            address_list=str(install / "kiosks.list"),
            dispatcher_list=str(install / "dispatcher.list"), topoh_key=key,
            pin_header=cfg.worker.pin_header, pike_requests_per_unit=args.pike_requests,
            pike_unit_seconds=args.pike_window, retry_after_seconds=cfg.switch.retry_after_seconds,
            rtpengine=args.rtpengine)
        files = {"kamailio.cfg": render_config(template, settings),
                 "kiosks.list": table.text, "dispatcher.list": dispatcher_table(workers)}
    except EdgeError as e:
        raise UsageError(f"edge: {e}") from None
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o640)            # the config holds the masking key
        tmp.replace(out / name)
    print(f"edge: {len(table.admitted)} kiosk(s) admitted by source, {len(workers)} worker(s); "
          f"wrote {', '.join(files)} to {out}")
    for kiosk_id in table.unadmitted:
        print(f"edge: kiosk {kiosk_id} has no source address: the edge refuses it "
              f"(ics kiosk add {kiosk_id} --source ...)")
    return 0


def _topoh_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
