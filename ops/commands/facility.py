"""`ics facility add|list|show`: the sites whose calls are rated (state, clock, size, profile)."""
from __future__ import annotations


from ops.cli import UsageError, changes, count, emit_json, reads


def register(sub) -> None:
    p = sub.add_parser("facility", help="facilities: state, time zone, size, rate-cap profile")
    s = p.add_subparsers(dest="facility_command", metavar="ACTION", required=True)
    a = changes(s.add_parser("add", help="add a facility"))
    a.add_argument("id", help="the operator's id, e.g. riverside")
    a.add_argument("--name", required=True, help="the facility's name")
    a.add_argument("--state", required=True, help="USPS code of a US state, DC or territory, e.g. CA")
    a.add_argument("--time-zone", required=True, help="IANA name, e.g. America/Los_Angeles")
    a.add_argument("--adp", required=True, type=count(0), metavar="N",
                   help="average daily population")
    a.add_argument("--kind", required=True, choices=["prison", "jail"], help="prison or jail")
    a.add_argument("--profile", required=True, help="regulatory profile, e.g. fcc-2024")
    a.add_argument("--exchange", action="append", default=[], metavar="NPA-NXX",
                   help="a local exchange (repeat for more), e.g. 951-555")
    a.set_defaults(func=_run(_add))
    ls = reads(s.add_parser("list", help="list facilities"))
    ls.set_defaults(func=_run(_list))
    sh = reads(s.add_parser("show", help="one facility, its rate-cap tier and its tariff versions"))
    sh.add_argument("id", help="facility id")
    sh.set_defaults(func=_run(_show))
    up = changes(s.add_parser("update", help="call-control settings of a facility"))
    up.add_argument("id", help="facility id")
    up.add_argument("--max-call-minutes", type=count(1, 24 * 60), metavar="N",
                    help="longest call (1..1440 minutes)")
    up.add_argument("--recording", choices=["on", "off"], help="record non-privileged calls")
    up.add_argument("--language", choices=["en", "es"], help="default IVR language")
    up.add_argument("--trunk", help="default trunk URI template when no route matches")
    up.add_argument("--adp", type=count(0), metavar="N",
                    help="average daily population (rate-cap tier)")
    up.set_defaults(func=_run(_update))


def _run(fn):
    def wrapper(args, ctx) -> int:
        args.currency = ctx.cfg.ledger.currency     # caps are money: --json shows the currency
        return ctx.run_with_connection(lambda conn: _audited(fn, args, conn))
    return wrapper


async def _audited(fn, args, conn):
    """add and update commit together with their audit row (who: cli:<os user>)."""
    if args.facility_command not in ("add", "update"):
        return await fn(args, conn)
    from ops.commands.operator import cli_actor
    from web import audit
    snap = "SELECT to_jsonb(f)::text FROM facility f WHERE id = $1"
    async with conn.transaction():
        before = await conn.fetchval(snap, args.id)
        out = await fn(args, conn)
        after = await conn.fetchval(snap, args.id)
        import json
        await audit.record(conn, actor=cli_actor(), via="cli",
                           action=f"facility.{args.facility_command}", target=f"facility:{args.id}",
                           before=None if before is None else json.loads(before),
                           after=None if after is None else json.loads(after))
    return out


async def _add(args, conn) -> int:
    from rating import facility as facilities
    from rating.profiles import load_profiles
    try:
        f = facilities.Facility(id=args.id, name=args.name, state=args.state.upper(),
                                time_zone=args.time_zone, adp=args.adp, kind=args.kind,
                                profile=args.profile, local_exchanges=tuple(args.exchange))
    except facilities.FacilityError as e:
        raise UsageError(f"facility: {e}") from None
    profiles = load_profiles()
    if f.profile not in profiles:
        raise UsageError(f"facility: profile={f.profile!r}: unknown profile (known: "
                         f"{', '.join(sorted(profiles))})")
    try:
        await facilities.add(conn, f)
    except facilities.FacilityError as e:
        raise UsageError(f"facility: {e}") from None
    tier = profiles[f.profile].tier_for(f)
    print(f"facility {f.id} ({f.name}), {f.state}, {f.time_zone}, {f.kind} ADP {f.adp}: "
          f"{f.profile} tier {tier.name!r}")
    return 0


def _facility_json(f) -> dict:
    return {"id": f.id, "name": f.name, "state": f.state, "time_zone": f.time_zone,
            "kind": f.kind, "adp": f.adp, "profile": f.profile,
            "local_exchanges": list(f.local_exchanges)}


async def _list(args, conn) -> int:
    from rating import facility as facilities
    for f in await facilities.load_all(conn):
        if args.json:
            emit_json(_facility_json(f))
            continue
        print(f"{f.id:<16} {f.state}  {f.kind:<6} ADP {f.adp:>6}  {f.profile:<10} {f.time_zone:<22}"
              f" {f.name}")
    return 0


async def _show(args, conn) -> int:
    from ledger.money import format_amount
    from rating import facility as facilities
    from rating import store
    from rating.profiles import ProfileError, load_profiles
    from rating.tariff import PaymentType
    try:
        f = await facilities.load(conn, args.id)
    except facilities.UnknownFacility as e:
        raise UsageError(str(e)) from None
    shown = _facility_json(f)
    tier_line = "- (unknown profile)"
    shown["tier"] = None
    profile = load_profiles().get(f.profile)
    if profile is not None:
        try:
            tier = profile.tier_for(f)
            pays = (PaymentType.PREPAID, PaymentType.DEBIT, PaymentType.COLLECT)
            shown["tier"] = {"name": tier.name, "currency": args.currency,
                             "cap_per_minute": {p.value: tier.cap(p) for p in pays}}
            caps = ", ".join(f"{p.value} {format_amount(tier.cap(p))}" for p in pays)
            tier_line = f"{tier.name} (per minute: {caps})"
        except ProfileError as e:
            tier_line = f"- ({e})"
    own = await store.list_versions(conn, f.id)
    shown["tariff_versions"] = len(own)
    if args.json:
        emit_json(shown)
        return 0
    print(f"id              {f.id}\nname            {f.name}\nstate           {f.state}\n"
          f"time zone       {f.time_zone}\nkind            {f.kind}\nADP             {f.adp}\n"
          f"local exchanges {', '.join(f.local_exchanges) or '-'}\nprofile         {f.profile}")
    print(f"tier            {tier_line}")
    print(f"tariff versions {len(own) if own else 'none (the agency default applies)'}")
    return 0


async def _update(args, conn) -> int:
    changes = {}
    if args.max_call_minutes is not None:
        if not 1 <= args.max_call_minutes <= 24 * 60:
            raise UsageError(f"--max-call-minutes must be 1..1440, got {args.max_call_minutes}")
        changes["max_call_seconds"] = args.max_call_minutes * 60
    if args.recording is not None:
        changes["recording"] = args.recording == "on"
    if args.language is not None:
        changes["default_language"] = args.language
    if args.trunk is not None:
        if not args.trunk.startswith("sip:"):
            raise UsageError(f"--trunk must be a sip: URI template, got {args.trunk!r}")
        changes["trunk"] = args.trunk
    if args.adp is not None:
        if args.adp < 0:
            raise UsageError(f"--adp must be >= 0, got {args.adp}")
        changes["adp"] = args.adp
    if not changes:
        raise UsageError("nothing to update: give at least one option")
    sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, 2))
    status = await conn.execute(f"UPDATE facility SET {sets} WHERE id = $1", args.id,
                                *changes.values())
    if status == "UPDATE 0":
        raise UsageError(f"unknown facility {args.id!r}")
    print(f"facility {args.id} updated: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
    return 0
