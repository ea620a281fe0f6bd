"""`ics kiosk|inmate|contact|block|account|route|schedule`: provisioning of who may call whom."""
from __future__ import annotations

import json

from ops.cli import UsageError
from ledger.money import format_amount, parse_amount


def register(sub) -> None:
    k = _group(sub, "kiosk", "facility phone kiosks")
    p = k.add_parser("add", help="add or update a kiosk")
    p.add_argument("id"), p.add_argument("--facility", required=True)
    p.add_argument("--unit")
    p.add_argument("--source", action="append", default=[], metavar="CIDR",
                   help="a network the kiosk calls from (10.1.2.0/24 or an address); repeat or "
                        "comma-separate for several")
    p.add_argument("--trusted", action="store_true", help="may pre-supply PIN and number")
    p.set_defaults(func=_run(_kiosk_add))
    p = k.add_parser("list")
    p.add_argument("--facility")
    p.set_defaults(func=_run(_kiosk_list))

    i = _group(sub, "inmate", "inmates: PINs, status, quotas")
    p = i.add_parser("add", help="enrol an inmate (creates their debit account)")
    p.add_argument("id", help="inmate number (digits; keyed before the PIN)")
    p.add_argument("--name", required=True), p.add_argument("--facility", required=True)
    p.add_argument("--pin", required=True), p.add_argument("--unit")
    p.add_argument("--language", default="en", choices=["en", "es"])
    for q in ("calls-per-day", "minutes-per-day", "calls-per-month", "minutes-per-month"):
        p.add_argument(f"--{q}", type=int)
    p.set_defaults(func=_run(_inmate_add))
    p = i.add_parser("list")
    p.add_argument("--facility")
    p.set_defaults(func=_run(_inmate_list))
    p = i.add_parser("show")
    p.add_argument("id")
    p.set_defaults(func=_run(_inmate_show))
    p = i.add_parser("update", help="change status, PIN, language or quotas")
    p.add_argument("id")
    p.add_argument("--status", choices=["active", "suspended", "released"])
    p.add_argument("--pin"), p.add_argument("--language", choices=["en", "es"])
    p.set_defaults(func=_run(_inmate_update))
    p = i.add_parser("unlock", help="unlock a PIN locked by failed attempts")
    p.add_argument("id"), p.add_argument("--by", required=True, help="who unlocks (audited)")
    p.set_defaults(func=_run(_inmate_unlock))
    p = i.add_parser("record-name", help="the inmate's recorded name, played to called parties")
    p.add_argument("id"), p.add_argument("wav", help="a PCM WAV file (any rate; made 8 kHz mono)")
    p.set_defaults(func=_run(_inmate_record_name))

    c = _group(sub, "contact", "approved-contact lists")
    p = c.add_parser("add", help="add a contact (status requested unless --approve)")
    p.add_argument("inmate"), p.add_argument("number")
    p.add_argument("--name", default=""), p.add_argument("--relationship", default="")
    p.add_argument("--approve", action="store_true")
    p.add_argument("--privileged", action="store_true", help="attorney: free, never recorded")
    p.add_argument("--passive-accept", action="store_true")
    p.set_defaults(func=_run(_contact_add))
    for status, verb in (("approved", "approve"), ("denied", "deny"), ("removed", "remove")):
        p = c.add_parser(verb)
        p.add_argument("inmate"), p.add_argument("number")
        p.set_defaults(func=_run(_contact_status), status=status)
    p = c.add_parser("list")
    p.add_argument("inmate")
    p.set_defaults(func=_run(_contact_list))

    b = _group(sub, "block", "blocked numbers and prefixes")
    p = b.add_parser("add")
    p.add_argument("number", help="E.164 number, or a +prefix with --prefix")
    p.add_argument("--prefix", action="store_true")
    p.add_argument("--scope", default="global", choices=["global", "facility", "inmate"])
    p.add_argument("--facility"), p.add_argument("--inmate"), p.add_argument("--reason", default="")
    p.set_defaults(func=_run(_block_add))
    p = b.add_parser("list")
    p.set_defaults(func=_run(_block_list))

    a = _group(sub, "account", "prepaid phone accounts of called numbers")
    p = a.add_parser("add")
    p.add_argument("number"), p.add_argument("--owner", required=True)
    p.set_defaults(func=_run(_account_add))
    p = a.add_parser("fund", help="credit an account; idempotent on --ref")
    p.add_argument("number"), p.add_argument("amount", help="e.g. 25.00")
    p.add_argument("--ref", required=True, help="the payment's reference")
    p.set_defaults(func=_run(_account_fund))
    p = a.add_parser("show")
    p.add_argument("number")
    p.set_defaults(func=_run(_account_show))

    r = _group(sub, "route", "outbound trunks by destination prefix")
    p = r.add_parser("add")
    p.add_argument("prefix"), p.add_argument("trunk", help="e.g. sip:{number}@127.0.0.1:5090")
    p.add_argument("--priority", type=int, default=0), p.add_argument("--capacity", type=int, default=0)
    p.set_defaults(func=_run(_route_add))

    s = _group(sub, "schedule", "calling hours")
    p = s.add_parser("add")
    p.add_argument("facility"), p.add_argument("window", help="'mon-fri 08:00-22:00'")
    p.add_argument("--unit")
    p.set_defaults(func=_run(_schedule_add))


def _group(sub, name, text):
    p = sub.add_parser(name, help=text)
    return p.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def _run(fn):
    def wrapper(args, ctx) -> int:
        from switch.directory import Invalid, NotFound

        try:
            return ctx.run_with_connection(lambda conn: _audited(fn, args, ctx, conn))
        except (Invalid, NotFound) as e:
            raise UsageError(str(e)) from None
    return wrapper


_READS = ("list", "show")
_SECRET_ARGS = ("pin",)


async def _audited(fn, args, ctx, conn):
    """Run a command; a change commits together with its audit row (who: cli:<os user>)."""
    from ops.commands.operator import cli_actor
    from web import audit
    group, action = next((k[:-len("_command")], v) for k, v in vars(args).items()
                         if k.endswith("_command"))
    if action in _READS:
        return await fn(args, ctx, conn)
    given = {k: (True if k in _SECRET_ARGS else v) for k, v in vars(args).items()
             if v is not None and k != "func" and not k.endswith("_command")}
    target = next((str(getattr(args, k)) for k in ("id", "inmate", "number", "prefix",
                                                    "facility") if getattr(args, k, None)),
                  group)
    async with conn.transaction():
        out = await fn(args, ctx, conn)
        await audit.record(conn, actor=cli_actor(), via="cli", action=f"{group}.{action}",
                           target=f"{group}:{target}", after=given)
    return out


async def _kiosk_add(args, ctx, conn):
    from switch.directory import add_kiosk
    await add_kiosk(conn, args.id, args.facility, unit=args.unit, sources=args.source,
                    trusted=args.trusted)
    print(f"kiosk {args.id} at {args.facility}")


async def _kiosk_list(args, ctx, conn):
    rows = await conn.fetch("SELECT * FROM kiosk WHERE $1::text IS NULL OR facility_id = $1 "
                            "ORDER BY id", args.facility)
    for r in rows:
        print(f"{r['id']:<16} {r['facility_id']:<12} unit={r['unit'] or '-'} "
              f"trusted={'yes' if r['trusted'] else 'no'} "
              f"sources={','.join(str(n) for n in r['sources']) or 'any'}")


async def _inmate_add(args, ctx, conn):
    from switch.directory import add_inmate
    quotas = {q: getattr(args, q) for q in ("calls_per_day", "minutes_per_day", "calls_per_month",
                                            "minutes_per_month")}
    await add_inmate(conn, args.id, args.name, args.facility, args.pin, unit=args.unit,
                     language=args.language, quotas=quotas, currency=ctx.cfg.ledger.currency)
    print(f"inmate {args.id} ({args.name}) enrolled at {args.facility}")


async def _inmate_list(args, ctx, conn):
    rows = await conn.fetch("SELECT id, name, facility_id, status FROM inmate "
                            "WHERE $1::text IS NULL OR facility_id = $1 ORDER BY id", args.facility)
    for r in rows:
        print(f"{r['id']:<12} {r['name']:<24} {r['facility_id']:<12} {r['status']}")


async def _inmate_show(args, ctx, conn):
    r = await conn.fetchrow("SELECT to_jsonb(i) - 'pin_hash' AS j FROM inmate i WHERE id = $1",
                            args.id)
    if r is None:
        raise UsageError(f"inmate {args.id!r} does not exist")
    print(json.dumps(json.loads(r["j"]), indent=2, sort_keys=True))


async def _inmate_update(args, ctx, conn):
    from switch.directory import NotFound, set_pin
    if args.pin:
        await set_pin(conn, args.id, args.pin)
    for col in ("status", "language"):
        value = getattr(args, col)
        if value and await conn.execute(f"UPDATE inmate SET {col} = $2 WHERE id = $1", args.id,
                                        value) == "UPDATE 0":
            raise NotFound(f"inmate {args.id!r} does not exist")
    print(f"inmate {args.id} updated")


async def _inmate_unlock(args, ctx, conn):
    from switch.directory import unlock_pin
    await unlock_pin(conn, args.id, args.by)
    print(f"inmate {args.id}: PIN unlocked by {args.by}")


async def _inmate_record_name(args, ctx, conn):
    from switch.directory import record_name
    path = await record_name(conn, args.id, args.wav, ctx.cfg.data_dir)
    print(f"inmate {args.id}: recorded name stored at {path}")


async def _contact_add(args, ctx, conn):
    from switch.directory import add_contact
    e164 = await add_contact(conn, args.inmate, args.number, name=args.name,
                             relationship=args.relationship,
                             status="approved" if args.approve else "requested",
                             privileged=args.privileged, passive_accept=args.passive_accept)
    print(f"contact {e164} for inmate {args.inmate}")


async def _contact_status(args, ctx, conn):
    from switch.directory import set_contact_status
    await set_contact_status(conn, args.inmate, args.number, args.status)
    print(f"contact {args.number} of inmate {args.inmate}: {args.status}")


async def _contact_list(args, ctx, conn):
    for r in await conn.fetch("SELECT * FROM contact WHERE inmate_id = $1 ORDER BY e164",
                              args.inmate):
        flags = ",".join(f for f, on in (("privileged", r["privileged"]),
                                          ("passive", r["passive_accept"])) if on)
        print(f"{r['e164']:<16} {r['status']:<10} {r['name']:<20} {flags}")


async def _block_add(args, ctx, conn):
    from switch.directory import add_block
    await add_block(conn, args.number, scope=args.scope, facility_id=args.facility,
                    inmate_id=args.inmate, prefix=args.prefix, reason=args.reason)
    print(f"blocked {args.number} ({args.scope})")


async def _block_list(args, ctx, conn):
    for r in await conn.fetch("SELECT * FROM block ORDER BY id"):
        print(f"{r['pattern']}{'*' if r['is_prefix'] else '':<2} {r['scope']:<9} "
              f"{r['facility_id'] or r['inmate_id'] or '':<12} {r['requested_by']:<12} {r['reason']}")


async def _account_add(args, ctx, conn):
    from switch.directory import add_phone_account
    e164 = await add_phone_account(conn, args.number, args.owner, currency=ctx.cfg.ledger.currency)
    print(f"prepaid account for {e164}")


async def _account_fund(args, ctx, conn):
    from switch.directory import fund_phone_account
    try:
        micros = parse_amount(args.amount)
    except ValueError as e:
        raise UsageError(f"amount: {e}") from None
    r = await fund_phone_account(conn, args.number, micros, args.ref)
    word = "funded" if r.result == "ok" else "already funded (same reference)"
    print(f"{r.e164} {word}: {format_amount(r.amount)} ref={args.ref}")


async def _account_show(args, ctx, conn):
    import ledger
    from switch.directory import _e164
    e164 = _e164("number", args.number)
    row = await conn.fetchrow("SELECT * FROM phone_account WHERE e164 = $1", e164)
    if row is None:
        raise UsageError(f"no prepaid account for {e164}")
    b = await ledger.balance(conn, row["ledger_account"])
    print(f"{e164} owner={row['owner']} available={format_amount(b.available)} "
          f"posted={format_amount(b.posted)} pending={format_amount(b.pending)}")


async def _route_add(args, ctx, conn):
    from switch.directory import add_route
    await add_route(conn, args.prefix, args.trunk, priority=args.priority, capacity=args.capacity)
    print(f"route {args.prefix} -> {args.trunk}")


async def _schedule_add(args, ctx, conn):
    from switch.directory import add_window
    await add_window(conn, args.facility, args.window, unit=args.unit)
    print(f"{args.facility}{'/' + args.unit if args.unit else ''}: {args.window}")
