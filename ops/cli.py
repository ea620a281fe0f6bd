"""The `ics` command line: one parser, with a subcommand group per module in `ops.commands`.

Each module in `ops/commands/` defines ``register(subparsers)`` and sets ``func`` on its parsers;
``func(args, ctx)`` returns the exit code. Errors meant for people (bad config, bad input, a refused
operation) are `UsageError`/`ConfigError` and print one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from dataclasses import dataclass, field

from ops import commands
from ops.config import Config, ConfigError, load

__all__ = ["main", "Context", "UsageError"]


class UsageError(Exception):
    """The command was given something it cannot use; the message says what and where."""


@dataclass
class Context:
    config_path: str | None
    _cfg: Config | None = field(default=None, repr=False)

    @property
    def cfg(self) -> Config:
        if self._cfg is None:
            self._cfg = load(self.config_path)
        return self._cfg

    async def connect(self):
        from ops.db import connect
        return await connect(self.cfg)

    def run_with_connection(self, fn) -> int:
        """Run ``await fn(conn)`` on one connection of its own; returns its exit code (None: 0)."""
        import asyncio

        async def go():
            conn = await self.connect()
            try:
                return await fn(conn)
            finally:
                await conn.close()
        return asyncio.run(go()) or 0

    async def pool(self, **kwargs):
        from ops.db import create_pool
        return await create_pool(self.cfg, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ics", description="Inmate calling switch and billing engine")
    parser.add_argument("--config", metavar="FILE", help="config file (default: $ICS_CONFIG)")
    parser.add_argument("--operator", metavar="NAME",
                        help="the operator making a change, named in its audit row beside the "
                             "OS user (default: the OS user alone)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ops.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args.config)
    try:
        from ops.commands.operator import act_as
        act_as(args.operator)
        return int(args.func(args, ctx) or 0)
    except (UsageError, ConfigError) as e:
        print(f"ics: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run the imported module's main, so `python -m ops.cli` and the subcommands share one
    # UsageError class (as __main__ this file would define a second one).
    from ops.cli import main as _main
    sys.exit(_main())
