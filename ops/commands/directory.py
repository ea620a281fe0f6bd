"""`ics kiosk|inmate|contact|block|account|route|schedule`: provisioning of who may call whom."""
from __future__ import annotations

import json

from ledger.money import format_amount, parse_amount
from ops.cli import UsageError, changes, count, emit_json, read_secret, reads


def register(sub) -> None:
    k = _group(sub, "kiosk", "facility phone kiosks: where they call from, whether trusted")
    p = changes(k.add_parser("add", help="add or update a kiosk"))
    p.add_argument("id", help="the kiosk's SIP user (From / Authorization user)")
    p.add_argument("--facility", required=True, help="facility id")
    p.add_argument("--unit", help="housing unit (its calling hours apply)")
    p.add_argument("--source", action="append", default=[], metavar="CIDR",
                   help="a network the kiosk calls from (10.1.2.0/24 or an address); repeat or "
                        "comma-separate for several")
    p.add_argument("--trusted", action="store_true", help="may pre-supply PIN and number")
    p.set_defaults(func=_run(_kiosk_add))
    p = reads(k.add_parser("list", help="list kiosks"))
    p.add_argument("--facility", help="only this facility's")
    p.set_defaults(func=_run(_kiosk_list))

    i = _group(sub, "inmate", "inmates: PINs, status, language, quotas")
    p = changes(i.add_parser("add", help="enrol an inmate (creates their debit account); the PIN "
                                         "is prompted for, or read from one line of stdin"))
    p.add_argument("id", help="inmate number (digits; keyed before the PIN)")
    p.add_argument("--name", required=True, help="full name")
    p.add_argument("--facility", required=True, help="facility id")
    p.add_argument("--unit", help="housing unit")
    p.add_argument("--language", default="en", choices=["en", "es"], help="IVR language")
    for q in ("calls-per-day", "minutes-per-day", "calls-per-month", "minutes-per-month"):
        p.add_argument(f"--{q}", type=count(0), metavar="N", help=f"quota: {q.replace('-', ' ')}")
    p.set_defaults(func=_run(_inmate_add), pin=True)    # audited as "pin": true, never the PIN
    p = reads(i.add_parser("list", help="list inmates"))
    p.add_argument("--facility", help="only this facility's")
    p.set_defaults(func=_run(_inmate_list))
    p = reads(i.add_parser("show", help="one inmate's record (never the PIN)"))
    p.add_argument("id", help="inmate number")
    p.set_defaults(func=_run(_inmate_show))
    p = changes(i.add_parser("update", help="change status, PIN or language"))
    p.add_argument("id", help="inmate number")
    p.add_argument("--status", choices=["active", "suspended", "released"], help="new status")
    p.add_argument("--pin", action="store_true",
                   help="set a new PIN, prompted for (or read from one line of stdin)")
    p.add_argument("--language", choices=["en", "es"], help="IVR language")
    p.set_defaults(func=_run(_inmate_update))
    p = changes(i.add_parser("unlock", help="unlock a PIN locked by failed attempts"))
    p.add_argument("id", help="inmate number")
    p.add_argument("--by", required=True, help="who unlocks (audited)")
    p.set_defaults(func=_run(_inmate_unlock))
    p = changes(i.add_parser("record-name", help="the inmate's recorded name, played to called "
                                                 "parties"))
    p.add_argument("id", help="inmate number")
    p.add_argument("wav", help="a PCM WAV file (any rate; made 8 kHz mono)")
    p.set_defaults(func=_run(_inmate_record_name))

    c = _group(sub, "contact", "approved-contact lists: who an inmate may call")
    p = changes(c.add_parser("add", help="add a contact (status requested unless --approve)"))
    p.add_argument("inmate", help="inmate number"), p.add_argument("number", help="phone number")
    p.add_argument("--name", default="", help="the contact's name")
    p.add_argument("--relationship", default="", help="e.g. mother, attorney")
    p.add_argument("--approve", action="store_true", help="approved at once")
    p.add_argument("--privileged", action="store_true", help="attorney: free, never recorded")
    p.add_argument("--passive-accept", action="store_true",
                   help="the call connects without the called party pressing 1")
    p.set_defaults(func=_run(_contact_add))
    for status, verb in (("approved", "approve"), ("denied", "deny"), ("removed", "remove")):
        p = changes(c.add_parser(verb, help=f"{verb} a contact (status {status})"))
        p.add_argument("inmate", help="inmate number"), p.add_argument("number", help="phone number")
        p.set_defaults(func=_run(_contact_status), status=status)
    p = reads(c.add_parser("list", help="an inmate's contacts"))
    p.add_argument("inmate", help="inmate number")
    p.set_defaults(func=_run(_contact_list))

    b = _group(sub, "block", "blocked numbers and prefixes (global, facility or inmate)")
    p = changes(b.add_parser("add", help="block a number or a prefix"))
    p.add_argument("number", help="E.164 number, or a +prefix with --prefix")
    p.add_argument("--prefix", action="store_true", help="block every number under the prefix")
    p.add_argument("--scope", default="global", choices=["global", "facility", "inmate"],
                   help="who the block applies to (default global)")
    p.add_argument("--facility", help="with --scope facility")
    p.add_argument("--inmate", help="with --scope inmate")
    p.add_argument("--reason", default="", help="why (shown to staff)")
    p.set_defaults(func=_run(_block_add))
    p = reads(b.add_parser("list", help="list blocks"))
    p.set_defaults(func=_run(_block_list))

    a = _group(sub, "account", "prepaid phone accounts of called numbers, addressed by phone "
                               "number or account id (prepaid:+E164)")
    p = changes(a.add_parser("add", help="open a prepaid account for a phone number"))
    p.add_argument("account", help="phone number (or prepaid:+E164)")
    p.add_argument("--owner", required=True, help="the account holder's name")
    p.set_defaults(func=_run(_account_add))
    p = changes(a.add_parser("fund", help="credit an account; idempotent on --ref"))
    p.add_argument("account", help="phone number or prepaid:+E164")
    p.add_argument("amount", help="e.g. 25.00")
    p.add_argument("--ref", required=True, help="the payment's reference")
    p.set_defaults(func=_run(_account_fund))
    p = reads(a.add_parser("show", help="an account's owner and balances"))
    p.add_argument("account", help="phone number or prepaid:+E164")
    p.set_defaults(func=_run(_account_show))

    r = _group(sub, "route", "outbound trunks by destination prefix")
    p = changes(r.add_parser("add", help="add or replace the route of a prefix and priority"))
    p.add_argument("prefix", help="'+' followed by digits ('+' alone matches every number)")
    p.add_argument("trunk", help="SIP URI template, e.g. sip:{e164}@10.0.0.5:5060")
    p.add_argument("--priority", type=count(0), default=0, metavar="N",
                   help="failover order among routes of one prefix (0 first)")
    p.add_argument("--capacity", type=count(0), default=0, metavar="N",
                   help="simultaneous calls on the trunk (0: unlimited)")
    p.set_defaults(func=_run(_route_add))
    p = reads(r.add_parser("list", help="list routes"))
    p.set_defaults(func=_run(_route_list))

    s = _group(sub, "schedule", "calling hours of facilities and housing units")
    p = changes(s.add_parser("add", help="add a calling window"))
    p.add_argument("facility", help="facility id")
    p.add_argument("window", help="days and hours, e.g. 'mon-fri 08:00-22:00'")
    p.add_argument("--unit", help="only this housing unit")
    p.set_defaults(func=_run(_schedule_add))
    p = reads(s.add_parser("list", help="list calling windows"))
    p.add_argument("--facility", help="only this facility's")
    p.set_defaults(func=_run(_schedule_list))


def _group(sub, name, text):
    p = sub.add_parser(name, help=text)
    return p.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def _run(fn):
    def wrapper(args, ctx) -> int:
        from switch.provisioning.directory import Invalid, NotFound
        from web.money import AccountUnknown

        try:
            return ctx.run_with_connection(lambda conn: _audited(fn, args, ctx, conn))
        except (Invalid, NotFound, AccountUnknown) as e:
            raise UsageError(str(e)) from None
    return wrapper


_NOT_AUDITED = ("func", "effect", "json")


async def _audited(fn, args, ctx, conn):
    """Run a command; a change commits together with its audit row (who: cli:<os user>)."""
    from ops.commands.operator import cli_actor
    from web import audit
    group, action = next((k[:-len("_command")], v) for k, v in vars(args).items()
                         if k.endswith("_command"))
    if args.effect == "read":
        return await fn(args, ctx, conn)
    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in _NOT_AUDITED and not k.endswith("_command")}
    target = next((str(getattr(args, k)) for k in ("id", "inmate", "number", "account", "prefix",
                                                    "facility") if getattr(args, k, None)),
                  group)
    async with conn.transaction():
        out = await fn(args, ctx, conn)
        await audit.record(conn, actor=cli_actor(), via="cli", action=f"{group}.{action}",
                           target=f"{group}:{target}", after=given)
    return out


async def _kiosk_add(args, ctx, conn):
    from switch.provisioning.directory import add_kiosk
    await add_kiosk(conn, args.id, args.facility, unit=args.unit, sources=args.source,
                    trusted=args.trusted)
    print(f"kiosk {args.id} at {args.facility}")


async def _kiosk_list(args, ctx, conn):
    rows = await conn.fetch("SELECT * FROM kiosk WHERE $1::text IS NULL OR facility_id = $1 "
                            "ORDER BY id", args.facility)
    for r in rows:
        sources = [str(n) for n in r["sources"]]
        if args.json:
            emit_json({"id": r["id"], "facility": r["facility_id"], "unit": r["unit"],
                       "trusted": r["trusted"], "active": r["active"], "sources": sources})
            continue
        print(f"{r['id']:<16} {r['facility_id']:<12} unit={r['unit'] or '-'} "
              f"trusted={'yes' if r['trusted'] else 'no'} sources={','.join(sources) or 'any'}")


async def _inmate_add(args, ctx, conn):
    from switch.provisioning.directory import add_inmate
    quotas = {q: getattr(args, q) for q in ("calls_per_day", "minutes_per_day", "calls_per_month",
                                            "minutes_per_month")}
    pin = read_secret(f"PIN for inmate {args.id}", confirm=True)
    await add_inmate(conn, args.id, args.name, args.facility, pin, unit=args.unit,
                     language=args.language, quotas=quotas, currency=ctx.cfg.ledger.currency)
    print(f"inmate {args.id} ({args.name}) enrolled at {args.facility}")


async def _inmate_list(args, ctx, conn):
    rows = await conn.fetch("SELECT id, name, facility_id, unit, status, language FROM inmate "
                            "WHERE $1::text IS NULL OR facility_id = $1 ORDER BY id", args.facility)
    for r in rows:
        if args.json:
            emit_json({"id": r["id"], "name": r["name"], "facility": r["facility_id"],
                       "unit": r["unit"], "status": r["status"], "language": r["language"]})
        else:
            print(f"{r['id']:<12} {r['name']:<24} {r['facility_id']:<12} {r['status']}")


async def _inmate_show(args, ctx, conn):
    r = await conn.fetchrow("SELECT to_jsonb(i) - 'pin_hash' AS j FROM inmate i WHERE id = $1",
                            args.id)
    if r is None:
        raise UsageError(f"inmate {args.id!r} does not exist")
    record = json.loads(r["j"])
    if args.json:
        emit_json(record)
    else:
        for key in sorted(record):
            print(f"{key:<20} {'-' if record[key] is None else record[key]}")


async def _inmate_update(args, ctx, conn):
    from switch.provisioning.directory import NotFound, set_pin
    if not (args.pin or args.status or args.language):
        raise UsageError("nothing to update: give --status, --pin or --language")
    if args.pin:
        await set_pin(conn, args.id, read_secret(f"new PIN for inmate {args.id}", confirm=True))
    for col in ("status", "language"):
        value = getattr(args, col)
        if value and await conn.execute(f"UPDATE inmate SET {col} = $2 WHERE id = $1", args.id,
                                        value) == "UPDATE 0":
            raise NotFound(f"inmate {args.id!r} does not exist")
    print(f"inmate {args.id} updated")


async def _inmate_unlock(args, ctx, conn):
    from switch.provisioning.directory import unlock_pin
    await unlock_pin(conn, args.id, args.by)
    print(f"inmate {args.id}: PIN unlocked by {args.by}")


async def _inmate_record_name(args, ctx, conn):
    from switch.provisioning.directory import record_name
    path = await record_name(conn, args.id, args.wav, ctx.cfg.data_dir)
    print(f"inmate {args.id}: recorded name stored at {path}")


async def _contact_add(args, ctx, conn):
    from switch.provisioning.directory import add_contact
    e164 = await add_contact(conn, args.inmate, args.number, name=args.name,
                             relationship=args.relationship,
                             status="approved" if args.approve else "requested",
                             privileged=args.privileged, passive_accept=args.passive_accept)
    print(f"contact {e164} for inmate {args.inmate}")


async def _contact_status(args, ctx, conn):
    from switch.provisioning.directory import set_contact_status
    await set_contact_status(conn, args.inmate, args.number, args.status)
    print(f"contact {args.number} of inmate {args.inmate}: {args.status}")


async def _contact_list(args, ctx, conn):
    for r in await conn.fetch("SELECT * FROM contact WHERE inmate_id = $1 ORDER BY e164",
                              args.inmate):
        if args.json:
            emit_json({"inmate": r["inmate_id"], "number": r["e164"], "status": r["status"],
                       "name": r["name"], "relationship": r["relationship"],
                       "privileged": r["privileged"], "passive_accept": r["passive_accept"],
                       "updated_at": r["updated_at"]})
            continue
        flags = ",".join(f for f, on in (("privileged", r["privileged"]),
                                          ("passive", r["passive_accept"])) if on)
        print(f"{r['e164']:<16} {r['status']:<10} {r['name']:<20} {flags}")


async def _block_add(args, ctx, conn):
    from switch.provisioning.directory import add_block
    await add_block(conn, args.number, scope=args.scope, facility_id=args.facility,
                    inmate_id=args.inmate, prefix=args.prefix, reason=args.reason)
    print(f"blocked {args.number} ({args.scope})")


async def _block_list(args, ctx, conn):
    for r in await conn.fetch("SELECT * FROM block ORDER BY id"):
        if args.json:
            emit_json({"id": r["id"], "pattern": r["pattern"], "prefix": r["is_prefix"],
                       "scope": r["scope"], "facility": r["facility_id"], "inmate": r["inmate_id"],
                       "requested_by": r["requested_by"], "reason": r["reason"],
                       "created_at": r["created_at"]})
            continue
        print(f"{r['pattern']}{'*' if r['is_prefix'] else '':<2} {r['scope']:<9} "
              f"{r['facility_id'] or r['inmate_id'] or '':<12} {r['requested_by']:<12} {r['reason']}")


def _account_number(text: str) -> str:
    """A prepaid account given as a phone number or as its id (prepaid:+E164): the number."""
    from web.money import PREPAID_PREFIX
    return text[len(PREPAID_PREFIX):] if text.startswith(PREPAID_PREFIX) else text


async def _account_add(args, ctx, conn):
    from switch.provisioning.directory import add_phone_account
    e164 = await add_phone_account(conn, _account_number(args.account), args.owner,
                                   currency=ctx.cfg.ledger.currency)
    print(f"prepaid account for {e164}")


async def _account_fund(args, ctx, conn):
    from switch.provisioning.directory import fund_phone_account
    from web.money import resolve
    try:
        micros = parse_amount(args.amount)
    except ValueError as e:
        raise UsageError(f"amount: {e}") from None
    acct = await resolve(conn, args.account)
    r = await fund_phone_account(conn, acct.e164, micros, args.ref)
    word = "funded" if r.result == "ok" else "already funded (same reference)"
    print(f"{r.e164} {word}: {format_amount(r.amount)} ref={args.ref}")


async def _account_show(args, ctx, conn):
    import ledger
    from web.money import resolve
    acct = await resolve(conn, args.account)
    b = await ledger.balance(conn, acct.ledger_account)
    if args.json:
        emit_json({"account": acct.ledger_account, "number": acct.e164, "owner": acct.owner,
                   "currency": b.currency, "posted": b.posted, "pending": b.pending,
                   "available": b.available})
        return
    print(f"{acct.e164} owner={acct.owner} available={format_amount(b.available)} "
          f"posted={format_amount(b.posted)} pending={format_amount(b.pending)}")


async def _route_add(args, ctx, conn):
    from switch.provisioning.directory import add_route
    await add_route(conn, args.prefix, args.trunk, priority=args.priority, capacity=args.capacity)
    print(f"route {args.prefix} -> {args.trunk}")


async def _route_list(args, ctx, conn):
    for r in await conn.fetch("SELECT * FROM route ORDER BY prefix, priority"):
        if args.json:
            emit_json({"prefix": r["prefix"], "priority": r["priority"], "trunk": r["trunk"],
                       "capacity": r["capacity"]})
        else:
            print(f"{r['prefix']:<16} {r['priority']:>3} {r['trunk']:<48} "
                  f"capacity={r['capacity'] or 'unlimited'}")


async def _schedule_add(args, ctx, conn):
    from switch.provisioning.directory import add_window
    await add_window(conn, args.facility, args.window, unit=args.unit)
    print(f"{args.facility}{'/' + args.unit if args.unit else ''}: {args.window}")


async def _schedule_list(args, ctx, conn):
    for r in await conn.fetch("SELECT * FROM calling_window WHERE $1::text IS NULL OR "
                              "facility_id = $1 ORDER BY facility_id, unit NULLS FIRST, id",
                              args.facility):
        if args.json:
            emit_json({"facility": r["facility_id"], "unit": r["unit"], "window": r["spec"]})
        else:
            print(f"{r['facility_id']:<16} {r['unit'] or '*':<8} {r['spec']}")
