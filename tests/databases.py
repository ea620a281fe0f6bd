"""Per-test PostgreSQL databases, cloned once from the migrated template and then recycled.

Cloning (`CREATE DATABASE x TEMPLATE t`) copies about 10 MB of catalogs and writes them to the
WAL: 0.1-0.2 s on an idle machine, 1-3 s on a loaded one, and most tests need a database. So a
database a test is done with is reset to the template's state and handed to the next test:

- every connection to it is ended first (the test's pools, a node that is still stopping);
- its schema is compared with the template's (tables, columns, constraints, indexes, triggers and
  whether they are enabled, functions and their bodies, views, sequences, policies, grants,
  database settings, large objects, prepared transactions): a test that changed any of that
  (tests of migrations, tests that break the ledger on purpose) gets its database dropped, not
  reused;
- otherwise every table is emptied with triggers off (`session_replication_role = replica`: the
  ledger's immutability triggers refuse deletes, rightly, from the product), the rows the
  migrations seed are put back, and every sequence is set back to the template's value.

So each test still starts from exactly what the migrations make, on real PostgreSQL, and never
sees another test's rows. When the server refuses the reset (no superuser on an external server),
every database is a fresh clone, as before.
"""
from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

TEMPLATE_DB = "ics_t_template"
DISCONNECT_WAIT_SECONDS = 10.0

# A test that changes the schema writes catalog rows: every DDL statement (CREATE, ALTER, DROP,
# ALTER TABLE ... DISABLE TRIGGER, TRUNCATE's new relfilenode, COMMENT, GRANT, ALTER DATABASE
# ... SET) inserts or updates a row of one of these catalogs, and a new row version carries the
# id of the transaction that wrote it (xmin), which is newer than anything in the template. A
# clone starts with the template's catalog rows, xmin and all; statistics (pg_statistic, and the
# in-place updates VACUUM and ANALYZE make to pg_class) are not the schema and are left out.
_CATALOGS = ("pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger",
             "pg_proc", "pg_namespace", "pg_type", "pg_rewrite", "pg_policy", "pg_extension",
             "pg_event_trigger", "pg_sequence", "pg_inherits", "pg_description", "pg_operator",
             "pg_cast", "pg_aggregate", "pg_enum", "pg_depend", "pg_largeobject_metadata",
             "pg_default_acl", "pg_publication", "pg_subscription_rel", "pg_statistic_ext")
_NEWEST_CATALOG_ROW = ("SELECT greatest(" + ", ".join(
    f"(SELECT max(xmin::text::bigint) FROM {c})" for c in _CATALOGS) + ", "
    "(SELECT max(xmin::text::bigint) FROM pg_db_role_setting WHERE setdatabase = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())))")
_PREPARED = "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"


_TABLES = r"""
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
ORDER BY 1
"""

_SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename) AS name, start_value, last_value
FROM pg_sequences ORDER BY 1
"""


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def _name_of(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


class Databases:
    """Hands out databases in the template's state: `take()` a DSN, `give_back(dsn)` when done."""

    def __init__(self, admin_dsn: str, *, recycling: bool = True) -> None:
        self.admin_dsn = admin_dsn
        self.free: list[str] = []
        self.made: set[str] = set()
        self.recycling = recycling
        self.horizon = 0                # the newest catalog row of the template
        self.reset_sql = ""
        self.seeds: dict[str, tuple[list[str], list[tuple]]] = {}
        self.clones = self.reuses = self.discards = 0

    async def learn_template(self) -> None:
        """Read what a reset must restore: the schema's fingerprint, tables, seeded rows and
        sequence values of the template."""
        if not self.recycling:
            return
        conn = await asyncpg.connect(with_database(self.admin_dsn, TEMPLATE_DB))
        try:
            try:
                await conn.execute("SET session_replication_role = replica; "
                                   "RESET session_replication_role")
            except asyncpg.InsufficientPrivilegeError:
                self.recycling = False
                return
            self.horizon = await conn.fetchval(_NEWEST_CATALOG_ROW)
            tables = [r[0] for r in await conn.fetch(_TABLES)]
            for table in tables:
                # Generated columns are computed again on insert, and may not be given.
                columns = [r[0] for r in await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                    "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                    table)]
                listed = ", ".join(f'"{c}"' for c in columns)
                rows = await conn.fetch(f"SELECT {listed} FROM {table}")
                if rows:
                    self.seeds[table] = (columns, [tuple(r) for r in rows])
            statements = ["SET session_replication_role = replica"]
            statements += [f"DELETE FROM {t}" for t in tables]
            for s in await conn.fetch(_SEQUENCES):
                if s["last_value"] is None:
                    statements.append(f"SELECT setval('{s['name']}', {s['start_value']}, false)")
                else:
                    statements.append(f"SELECT setval('{s['name']}', {s['last_value']}, true)")
            self.reset_sql = ";\n".join(statements)
        finally:
            await conn.close()

    async def take(self) -> str:
        if self.free:
            self.reuses += 1
            return self.free.pop()
        name = f"ics_t_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
        finally:
            await admin.close()
        self.made.add(name)
        self.clones += 1
        return with_database(self.admin_dsn, name)

    async def give_back(self, dsn: str) -> None:
        name = _name_of(dsn)
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            if self.recycling and await self._disconnected(admin, name):
                if await self._reset(dsn):
                    self.free.append(dsn)
                    return
            self.discards += 1
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self.made.discard(name)
        finally:
            await admin.close()

    async def drop_all(self) -> None:
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            for name in sorted(self.made):
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()
        self.made.clear()
        self.free.clear()

    async def _disconnected(self, admin: asyncpg.Connection, name: str) -> bool:
        """End every session on `name` (as DROP DATABASE ... WITH (FORCE) would); True once none
        is left."""
        import asyncio
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DISCONNECT_WAIT_SECONDS
        while True:
            left = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
            if left == 0:
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)       # a terminated backend takes a moment to exit

    async def _reset(self, dsn: str) -> bool:
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            return False                    # e.g. the test dropped or renamed it
        try:
            if (await conn.fetchval(_NEWEST_CATALOG_ROW) > self.horizon
                    or await conn.fetchval(_PREPARED) > 0):
                return False                # the schema changed: not the template any more
            async with conn.transaction():
                await conn.execute(self.reset_sql)
                for table, (columns, rows) in self.seeds.items():
                    schema, _, relation = table.partition(".")
                    await conn.copy_records_to_table(relation.strip('"'), records=rows,
                                                     columns=columns,
                                                     schema_name=schema.strip('"'))
            return True
        except asyncpg.PostgresError:
            return False
        finally:
            await conn.close()
