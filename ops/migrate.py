"""Schema migrations: ordered SQL files owned by each package, applied once under an advisory lock.

Each package keeps ``<package>/migrations/NNNN_name.sql``. Packages migrate in dependency order
(`PACKAGES`), files in name order. Each file runs in its own transaction and is recorded in
``schema_migration`` with its checksum; an applied file whose text has since changed is an error
(write a new migration instead). Re-running applies nothing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

from ops.errors import OpsError

__all__ = ["PACKAGES", "Migration", "MigrationError", "discover", "migrate", "applied"]

PACKAGES = ("ledger", "rating", "switch", "families", "web", "ops")   # a package may depend on those before it
ADVISORY_LOCK_KEY = 0x1C5_0001


class MigrationError(OpsError):
    """The database's recorded migrations disagree with the files shipped."""


@dataclass(frozen=True)
class Migration:
    package: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    found = []
    for package in PACKAGES:
        try:
            root = resources.files(package) / "migrations"
        except ModuleNotFoundError:
            continue
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".sql"):
                found.append(Migration(package, entry.name, entry.read_text()))
    return found


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migration (
    package    text NOT NULL,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, name)
)"""


async def applied(conn: asyncpg.Connection) -> dict[tuple[str, str], str]:
    await conn.execute(_BOOKKEEPING)
    rows = await conn.fetch("SELECT package, name, checksum FROM schema_migration")
    return {(r["package"], r["name"]): r["checksum"] for r in rows}


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None,
                  *, progress=None) -> list[Migration]:
    """Apply what is missing; returns the migrations applied by this call."""
    migrations = discover() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        done = await applied(conn)
        todo = []
        for m in migrations:
            recorded = done.get((m.package, m.name))
            if recorded is None:
                todo.append(m)
            elif recorded != m.checksum:
                raise MigrationError(f"{m.package}/migrations/{m.name} was changed after it was "
                                     "applied; add a new migration instead")
        for m in todo:
            if progress:
                progress(f"applying {m.package}/{m.name}")
            async with conn.transaction():
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as e:
                    raise MigrationError(f"{m.package}/migrations/{m.name}: {e}") from e
                await conn.execute(
                    "INSERT INTO schema_migration (package, name, checksum) VALUES ($1, $2, $3)",
                    m.package, m.name, m.checksum)
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
