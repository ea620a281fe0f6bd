"""The test databases (tests/databases.py): one handed out after another test's is the migrated
template's state again (rows, seeded rows, sequences), and one whose schema a test changed is
never handed out again."""
from __future__ import annotations

import asyncpg

from tests.databases import TEMPLATE_DB, _name_of, with_database


async def _facility(conn, facility_id: str) -> None:
    await conn.execute(
        "INSERT INTO facility (id, name, state, time_zone, adp, kind, profile) VALUES "
        "($1, $1, 'NY', 'America/New_York', 500, 'jail', 'fcc-2024')", facility_id)


async def test_a_reused_database_has_the_templates_rows_and_sequences_and_no_others(databases):
    template = await asyncpg.connect(with_database(databases.admin_dsn, TEMPLATE_DB))
    try:
        seeded = await template.fetchval("SELECT count(*) FROM schema_migration")
        sequences = await template.fetch("SELECT sequencename, last_value FROM pg_sequences "
                                         "ORDER BY 1")
    finally:
        await template.close()
    dsn = await databases.take()          # a clone, or one an earlier test gave back
    reused_before = databases.reuses
    conn = await asyncpg.connect(dsn)
    try:
        await _facility(conn, "leftover")
        await conn.execute("DELETE FROM schema_migration")
        for s in sequences:
            await conn.fetchval(f"SELECT nextval('{s['sequencename']}')")
    finally:
        await conn.close()
    await databases.give_back(dsn)
    again = await databases.take()
    if databases.recycling:                 # (not under ICS_TEST_FRESH_DATABASES=1)
        assert again == dsn and databases.reuses == reused_before + 1    # reused, not cloned
    conn = await asyncpg.connect(again)
    try:
        assert await conn.fetchval("SELECT count(*) FROM facility") == 0
        assert await conn.fetchval("SELECT count(*) FROM schema_migration") == seeded
        assert await conn.fetch("SELECT sequencename, last_value FROM pg_sequences "
                                "ORDER BY 1") == sequences
    finally:
        await conn.close()
    await databases.give_back(again)


async def test_a_database_whose_schema_changed_is_dropped_not_reused(databases):
    for change in ("CREATE TABLE stray (x int)",
                   "ALTER TABLE ledger_transfer DISABLE TRIGGER USER",
                   "CREATE INDEX stray_facility ON facility (name)"):
        dsn = await databases.take()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(change)
        finally:
            await conn.close()
        await databases.give_back(dsn)
        assert dsn not in databases.free, change
        admin = await asyncpg.connect(databases.admin_dsn)
        try:
            name = _name_of(dsn)
            assert not await admin.fetchval(
                "SELECT count(*) FROM pg_database WHERE datname = $1", name), change
        finally:
            await admin.close()
