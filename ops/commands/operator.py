"""`ics operator add|list|token|revoke`: the people who use the HTTP API, and their tokens.

The CLI runs as whoever has a shell on the node; its audit rows name them as ``cli:<os user>``.
A token is printed once and never stored; lose it and issue another.
"""
from __future__ import annotations

import json
import uuid

from ops.cli import UsageError


def cli_actor() -> str:
    import getpass
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def register(sub) -> None:
    p = sub.add_parser("operator", help="API operators, roles and tokens")
    s = p.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    a = s.add_parser("add", help="add an operator")
    a.add_argument("id", help="e.g. alice (lower case)")
    a.add_argument("--role", required=True,
                   choices=["admin", "billing", "facility_staff", "auditor"])
    a.add_argument("--facility", action="append", default=[], dest="facilities",
                   help="facility_staff: a facility they may see (repeat for more)")
    a.add_argument("--token", action="store_true", help="also issue a token and print it once")
    a.set_defaults(func=_run(_add))
    ls = s.add_parser("list", help="list operators")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_run(_list))
    t = s.add_parser("token", help="issue an API token (printed once, stored hashed)")
    t.add_argument("id"), t.add_argument("--label", default="")
    t.set_defaults(func=_run(_token))
    r = s.add_parser("revoke", help="revoke one token (--token-id) or all of an operator's")
    r.add_argument("id"), r.add_argument("--token-id")
    r.set_defaults(func=_run(_revoke))
    pw = s.add_parser("passwd", help="set an operator's console password (prompted, or one line "
                      "on standard input when it is not a terminal)")
    pw.add_argument("id")
    pw.set_defaults(func=_passwd)


def _run(fn):
    def wrapper(args, ctx) -> int:
        from web.operators import OperatorInvalid, OperatorNotFound
        try:
            return ctx.run_with_connection(lambda conn: fn(args, conn))
        except (OperatorInvalid, OperatorNotFound) as e:
            raise UsageError(str(e)) from None
    return wrapper


async def _add(args, conn):
    from web.operators import add_operator, issue_token
    o = await add_operator(conn, args.id, args.role, args.facilities, actor=cli_actor(),
                           via="cli")
    scope = f" ({', '.join(o.facilities)})" if o.facilities else ""
    print(f"operator {o.id}: {o.role.value}{scope}")
    if args.token:
        t = await issue_token(conn, o.id, label="cli", actor=cli_actor(), via="cli")
        print(f"token {t.token_id}: {t.token}")
        print("(shown once; keep it secret)")


async def _list(args, conn):
    from web.operators import list_operators
    for o in await list_operators(conn):
        if args.json:
            print(json.dumps(o.as_dict()))
        else:
            print(f"{o.id:<20} {o.role.value:<15} tokens={o.active_tokens} "
                  f"{','.join(o.facilities)}")


async def _token(args, conn):
    from web.operators import issue_token
    t = await issue_token(conn, args.id, label=args.label, actor=cli_actor(), via="cli")
    print(f"token {t.token_id}: {t.token}")
    print("(shown once; keep it secret)")


async def _revoke(args, conn):
    from web.operators import revoke
    try:
        token_id = uuid.UUID(args.token_id) if args.token_id else None
    except ValueError:
        raise UsageError(f"--token-id: {args.token_id!r} is not a token id") from None
    ids = await revoke(conn, args.id, token_id=token_id, actor=cli_actor(), via="cli")
    print(f"operator {args.id}: {len(ids)} token(s) revoked")


def _read_password() -> str:
    """The new password, never from the command line (it would sit in ps and shell history)."""
    import getpass
    import sys
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New console password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ; nothing was changed")
    return first


def _passwd(args, ctx) -> int:
    from web.console.passwords import PasswordInvalid
    password = _read_password()
    try:
        return _run(lambda a, conn: _set_password(a, conn, password))(args, ctx)
    except PasswordInvalid as e:
        raise UsageError(f"password: {e}") from None


async def _set_password(args, conn, password: str) -> None:
    import datetime as dt
    from web.console.passwords import set_password
    await set_password(conn, args.id, password, actor=cli_actor(), via="cli",
                       now=dt.datetime.now(dt.timezone.utc))
    print(f"operator {args.id}: console password set; their console sessions ended")
