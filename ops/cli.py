"""The `ics` command line: one parser, with a subcommand group per module in `ops.commands`.

Each module in `ops/commands/` defines ``register(subparsers)``. Every leaf command says what it
does to the node with one of `reads`, `changes`, `exports` or `runs` (a test walks the whole tree
and fails on a command that says none, or has no help): a command that `reads` gains ``--json``.
Its ``func(args, ctx)`` returns the exit code.

`main` is the one place where failures become exit codes (`ExitCode`, printed in ``ics --help``
and docs/operations.md): each prints one line on stderr, never a traceback. Commands raise
`UsageError` for bad input or a refused operation (a families or directory refusal escaping a
command is one too: exit 2, one line naming the field); the database, the config, a busy port
and a closed pipe are recognised here, so a new command inherits all of it by being registered.
"""
from __future__ import annotations

import argparse
import enum
import errno
import importlib
import json
import os
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any

from ops import commands
from ops.config import Config, ConfigError, load
from switch.settings import SettingsError
from ops.errors import OpsError

__all__ = ["main", "build_parser", "Context", "ExitCode", "UsageError", "DatabaseUnreachable",
           "DatabaseNotMigrated", "reads", "changes", "exports", "runs", "emit_json",
           "count", "read_secret"]


class ExitCode(enum.IntEnum):
    """What `ics` tells the shell; never renumbered (scripts and unit files depend on them)."""
    OK = 0
    NO = 1                      # ran, and the answer is no: verify failed, violations, not running
    USAGE = 2                   # bad arguments or input, or a refused operation: nothing changed
    CONFIG = 3                  # the config file or a setting is unusable
    DATABASE_UNREACHABLE = 4    # cannot connect to (or start) the database, or lost it midway
    DATABASE_NOT_MIGRATED = 5   # the schema is missing or behind: run `ics db migrate`
    PORT_IN_USE = 6             # a port the node listens on is taken (or not ours to bind)
    INTERNAL = 70               # a bug in ics (EX_SOFTWARE); ICS_TRACEBACK=1 shows where
    INTERRUPTED = 130           # Ctrl-C / SIGINT
    PIPE_CLOSED = 141           # the reader of stdout went away (`ics ... | head`): silent


EXIT_CODE_TEXT = {
    ExitCode.OK: "success",
    ExitCode.NO: "the command ran and its answer is no (ledger verify found a violation, "
                 "rates check found one, the embedded database is not running, a demo step failed)",
    ExitCode.USAGE: "bad arguments or input, or a refused operation (a families or directory "
                    "refusal included); nothing was changed",
    ExitCode.CONFIG: "the config file or a setting is unusable",
    ExitCode.DATABASE_UNREACHABLE: "the database cannot be reached or started",
    ExitCode.DATABASE_NOT_MIGRATED: "the database schema is missing or behind: run `ics db migrate`",
    ExitCode.PORT_IN_USE: "a port the node must listen on is in use",
    ExitCode.INTERNAL: "an internal error (a bug); run again with ICS_TRACEBACK=1 and report it",
    ExitCode.INTERRUPTED: "interrupted (SIGINT)",
    ExitCode.PIPE_CLOSED: "standard output was closed by its reader (nothing is printed)",
}


def exit_code_table(width: int = 96) -> str:
    import textwrap
    return "\n".join(textwrap.fill(EXIT_CODE_TEXT[code], width, initial_indent=f"  {int(code):>3}  ",
                                   subsequent_indent=" " * 7) for code in ExitCode)


class UsageError(OpsError):
    """The command was given something it cannot use; the message says what and where."""


class DatabaseUnreachable(OpsError):
    """The database could not be reached, started or kept; the message names which and why."""


class DatabaseNotMigrated(OpsError):
    """The database's schema is missing or behind this version of ics."""


# -- what a command does: declared on each leaf parser --------------------------------------------

EFFECTS = ("read", "change", "export", "run")


def reads(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A command that only reads: it gains ``--json`` (see `emit_json` for the shape)."""
    p.add_argument("--json", action="store_true",
                   help="machine-readable output: one JSON object (lists: one per line); money as "
                        "integer micro-units beside its currency")
    p.set_defaults(effect="read")
    return p


def changes(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A command that changes the database (audited by the command)."""
    p.set_defaults(effect="change")
    return p


def exports(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A command that reads and writes a file in a fixed format (CSV): no ``--json``."""
    p.set_defaults(effect="export")
    return p


def runs(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A command that runs something (the node, the demo, a database server)."""
    p.set_defaults(effect="run")
    return p


def _json_default(value):
    import datetime as dt
    import decimal
    import ipaddress
    import uuid
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal, ipaddress._BaseNetwork,
                          ipaddress._BaseAddress)):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def emit_json(obj, *, indent: int | None = None) -> None:
    """One JSON value on one line of stdout: keys sorted, times ISO 8601, ids as strings, money as
    integers (micro-units) left as they are."""
    print(json.dumps(obj, default=_json_default, sort_keys=True, indent=indent))


def count(minimum: int = 0, maximum: int | None = None):
    """An argparse type for a whole number in [minimum, maximum]: negative limits are refused."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    parse.__name__ = "count"
    return parse


def read_secret(what: str, *, confirm: bool = False, stdin=None) -> str:
    """A secret (a PIN, a password) from a prompt on a terminal, else one line of stdin: never
    from the command line, where `ps` and shell history would keep it."""
    stdin = sys.stdin if stdin is None else stdin
    if stdin.isatty():
        import getpass
        first = getpass.getpass(f"{what}: ")
        if confirm and getpass.getpass(f"{what} again: ") != first:
            raise UsageError(f"{what}: the two entries differ")
        return first
    line = stdin.readline()
    if not line:
        raise UsageError(f"{what}: expected on standard input (one line), got nothing")
    return line.rstrip("\r\n")


def progress_wanted() -> bool:
    """Progress lines and bars only for a person watching a terminal, never into a log or pipe."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# -- the context commands run in ------------------------------------------------------------------

@dataclass
class Context:
    config_path: str | None
    _cfg: Config | None = field(default=None, repr=False)

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            self._cfg = load(self.config_path)
        return self._cfg

    async def connect(self, *, migrated: bool = True):
        """A connection to the configured database; with `migrated`, one whose schema is this
        version's (else DatabaseNotMigrated). Failing to connect is DatabaseUnreachable."""
        from ops.db import connect
        conn = await _reach(lambda: connect(self.cfg), self.cfg)
        if migrated:
            try:
                await require_schema(conn)
            except BaseException:
                await conn.close()
                raise
        return conn

    def run_with_connection(self, fn, *, migrated: bool = True) -> int:
        """Run ``await fn(conn)`` on one connection of its own; returns its exit code (None: 0)."""
        import asyncio

        async def go():
            conn = await self.connect(migrated=migrated)
            try:
                return await fn(conn)
            finally:
                await conn.close()
        return asyncio.run(go()) or 0

    async def pool(self, **kwargs: Any) -> Any:
        from ops.db import create_pool
        return await _reach(lambda: create_pool(self.cfg, **kwargs), self.cfg)


def _where(cfg: Config) -> str:
    """The database in words, without its password."""
    from urllib.parse import urlsplit
    if not cfg.database.url:
        return f"the embedded database in {cfg.data_dir}"
    parts = urlsplit(cfg.database.url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


async def _reach(open_, cfg: Config):
    import asyncpg

    from ops.embedded import EmbeddedError
    try:
        return await open_()
    except EmbeddedError as e:
        raise DatabaseUnreachable(f"cannot start {_where(cfg)}: {e}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise DatabaseUnreachable(f"cannot connect to {_where(cfg)}: {reason}") from None


async def require_schema(conn) -> None:
    """Refuse a database that lacks a migration of this code (read-only: creates nothing). One
    with migrations newer than this code is accepted, as `ics serve` accepts it: migrations only
    add, so a node one release behind keeps working during a rolling upgrade."""
    from ops.migrate import discover
    if not await conn.fetchval("SELECT to_regclass('schema_migration') IS NOT NULL"):
        raise DatabaseNotMigrated("the database has no ics schema: run `ics db migrate`")
    done = {(r["package"], r["name"]) for r in
            await conn.fetch("SELECT package, name FROM schema_migration")}
    known = {(m.package, m.name) for m in discover()}
    missing = sorted(known - done)
    if missing:
        raise DatabaseNotMigrated(f"the database schema is behind ({len(missing)} migration(s) "
                                  f"pending, first {'/'.join(missing[0])}): run `ics db migrate`")


# -- the parser -----------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """argparse with one-line errors naming the command, and the exit code for bad usage."""

    def error(self, message: str):
        self.exit(ExitCode.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ics-engine")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ics", description="Inmate calling switch and prepaid billing engine.",
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="exit codes:\n" + exit_code_table() + "\n\nenvironment: ICS_CONFIG "
                           "(config file), ICS_DATABASE_URL (overrides database.url), ICS_DATA_DIR"
                           " (overrides node.data_dir).\nSee docs/operations.md.")
    parser.add_argument("--config", metavar="FILE", help="config file (default: $ICS_CONFIG)")
    parser.add_argument("--version", action="version", version=f"ics {_version()}")
    parser.add_argument("--operator", metavar="NAME",
                        help="the operator making a change, named in its audit row beside the "
                             "OS user (default: the OS user alone)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ops.commands.{info.name}")
        module.register(sub)
    for p in subcommands(parser).values():
        if p.description is None:           # `ics block --help` says what `ics --help` says
            p.description = _help_of(p)
    return parser


def _help_of(p: argparse.ArgumentParser) -> str | None:
    return getattr(p, "_ics_help", None)


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every parser under `parser` by its command path ('rates import'), groups and leaves."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, p in action.choices.items():
                p._ics_help = helps.get(name)
                path = f"{prefix}{name}"
                found[path] = p
                found.update(subcommands(p, path + " "))
    return found


def is_leaf(p: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)


# -- running a command ----------------------------------------------------------------------------

def _say(text: str) -> None:
    text = " ".join(str(text).split())         # one line, whatever the message held
    try:
        print(f"ics: {text}", file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):
        pass


def _stdout_gone() -> ExitCode:
    # Python would complain again while flushing stdout at exit; point it at /dev/null instead.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return ExitCode.PIPE_CLOSED


def _port_error(e: BaseException) -> str | None:
    """The one-line message when `e` means a port we must listen on is taken, else None."""
    from twisted.internet.error import CannotListenError
    if isinstance(e, CannotListenError):
        cause = e.socketError
        reason = getattr(cause, "strerror", None) or str(cause)
        return f"cannot listen on {e.interface or '*'}:{e.port}: {reason}"
    if isinstance(e, OSError) and e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return f"cannot listen: {e.strerror or e}"
    return None


def _refusal(e: Exception) -> str:
    """A domain refusal as one line naming its field: "where: what" unless it says it already."""
    text, where = str(e), getattr(e, "where", None)
    return text if not where or text.startswith(f"{where}") else f"{where}: {text}"


def run(args, ctx: Context) -> int:
    """Run the parsed command; every failure becomes one line on stderr and an ExitCode."""
    import asyncpg

    from families.errors import FamilyError, FamilyLedgerRefused
    from ops.embedded import EmbeddedError
    from ops.migrate import MigrationError
    from switch.provisioning import directory
    try:
        from ops.commands.operator import act_as
        act_as(getattr(args, "operator", None))     # named in audit rows beside the OS user
        code = int(args.func(args, ctx) or 0)
        sys.stdout.flush()                  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except UsageError as e:
        _say(e)
        return ExitCode.USAGE
    except (FamilyError, directory.Invalid, directory.NotFound) as e:
        if isinstance(e, FamilyLedgerRefused) and os.environ.get("ICS_TRACEBACK"):
            raise
        if isinstance(e, FamilyLedgerRefused):      # ours, not the input's: a broken invariant
            _say(f"internal error: {e} (run again with ICS_TRACEBACK=1 and report it)")
            return ExitCode.INTERNAL
        _say(_refusal(e))                           # the domain said no: nothing was changed
        return ExitCode.USAGE
    except (ConfigError, SettingsError) as e:    # a file's value, or how the switch's fit together
        _say(e)
        return ExitCode.CONFIG
    except DatabaseUnreachable as e:
        _say(e)
        return ExitCode.DATABASE_UNREACHABLE
    except EmbeddedError as e:            # `ics db start`, `ics ledger demo` start it themselves
        _say(f"the embedded database: {e}")
        return ExitCode.DATABASE_UNREACHABLE
    except (DatabaseNotMigrated, asyncpg.UndefinedTableError) as e:
        _say(e if isinstance(e, DatabaseNotMigrated) else
             f"the database schema is missing or behind ({e}): run `ics db migrate`")
        return ExitCode.DATABASE_NOT_MIGRATED
    except MigrationError as e:
        _say(f"migration failed: {e}")
        return ExitCode.DATABASE_NOT_MIGRATED
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError) as e:
        _say(f"lost the database: {e}")
        return ExitCode.DATABASE_UNREACHABLE
    except KeyboardInterrupt:
        _say("interrupted")
        return ExitCode.INTERRUPTED
    except Exception as e:
        port = _port_error(e)
        if port is not None:
            _say(port)
            return ExitCode.PORT_IN_USE
        if isinstance(e, OSError) and e.filename is not None:      # a file named on the command line
            _say(f"{e.filename}: {e.strerror or e}")
            return ExitCode.USAGE
        if os.environ.get("ICS_TRACEBACK"):
            raise
        _say(f"internal error: {type(e).__name__}: {e} (run again with ICS_TRACEBACK=1 for the "
             "traceback, and report it)")
        return ExitCode.INTERNAL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)          # --help and --version print here
    except BrokenPipeError:
        return _stdout_gone()
    return run(args, Context(args.config))


if __name__ == "__main__":
    # Run the imported module's main, so `python -m ops.cli` and the subcommands share one
    # UsageError class (as __main__ this file would define a second one).
    from ops.cli import main as _main
    sys.exit(_main())
