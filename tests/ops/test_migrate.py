import asyncpg
import pytest

from ops.migrate import Migration, MigrationError, migrate


async def test_migrations_apply_in_order_once_and_rerun_is_a_no_op(conn):
    ms = [Migration("ledger", "9001_a.sql", "CREATE TABLE mig_a (x int)"),
          Migration("ledger", "9002_b.sql", "INSERT INTO mig_a VALUES (1)")]
    assert [m.name for m in await migrate(conn, ms)] == ["9001_a.sql", "9002_b.sql"]
    assert await migrate(conn, ms) == []
    assert await conn.fetchval("SELECT count(*) FROM mig_a") == 1


async def test_changed_applied_migration_is_refused(conn):
    await migrate(conn, [Migration("ledger", "9001_a.sql", "CREATE TABLE mig_c (x int)")])
    with pytest.raises(MigrationError, match="9001_a.sql was changed"):
        await migrate(conn, [Migration("ledger", "9001_a.sql", "CREATE TABLE mig_c (y int)")])


async def test_failed_migration_applies_nothing_of_itself_and_names_the_file(conn):
    ms = [Migration("ledger", "9001_ok.sql", "CREATE TABLE mig_ok (x int)"),
          Migration("ledger", "9002_bad.sql", "CREATE TABLE mig_bad (x int); SELEC 1")]
    with pytest.raises(MigrationError, match="9002_bad.sql"):
        await migrate(conn, ms)
    assert await conn.fetchval("SELECT to_regclass('mig_ok') IS NOT NULL")
    assert await conn.fetchval("SELECT to_regclass('mig_bad') IS NULL")


async def test_shipped_migrations_are_applied_in_the_test_database(conn):
    names = await conn.fetch("SELECT package, name FROM schema_migration")
    from ops.migrate import discover
    assert {(r["package"], r["name"]) for r in names} == {(m.package, m.name) for m in discover()}
