"""`ics rates import` is all or nothing at the database too, not only at parse time: a deck that
passes every check but fails inside the write (here a constraint a DBA added to the taxes table,
hit by the last insert of the version) leaves no version, no line, no rate group behind, and the
operator gets one line and exit 70."""
from __future__ import annotations

import asyncio

from ops.cli import ExitCode, main
from rating_helpers import DEMO_DECK

TABLES = ("tariff_version", "tariff_line", "tariff_rate_group", "tariff_holiday",
          "tariff_surcharge")


async def counts(conn) -> dict[str, int]:
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def test_a_constraint_violation_in_the_last_insert_leaves_no_rows(pg_dsn, conn, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv("ICS_DATABASE_URL", pg_dsn)
    assert await asyncio.to_thread(main, [
        "facility", "add", "riverside", "--name", "Riverside", "--state", "CA", "--time-zone",
        "America/Los_Angeles", "--adp", "1200", "--kind", "jail", "--profile", "fcc-2024"]) == 0
    assert "tax" in DEMO_DECK.read_text()           # the deck writes the taxes table last
    await conn.execute("ALTER TABLE tariff_surcharge ADD CONSTRAINT no_taxes_here "
                       "CHECK (kind <> 'tax')")
    before = await counts(conn)
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["rates", "import", str(DEMO_DECK), "--facility",
                                          "riverside"])
    err = capsys.readouterr().err
    assert code == ExitCode.INTERNAL and err.count("\n") == 1 and "no_taxes_here" in err, err
    assert await counts(conn) == before == dict.fromkeys(TABLES, 0)

    # The same deck goes in whole once the database accepts it.
    await conn.execute("ALTER TABLE tariff_surcharge DROP CONSTRAINT no_taxes_here")
    assert await asyncio.to_thread(main, ["rates", "import", str(DEMO_DECK), "--facility",
                                          "riverside"]) == 0
    after = await counts(conn)
    assert after["tariff_version"] == 1 and after["tariff_surcharge"] >= 1
    assert after["tariff_line"] > 0 and after["tariff_rate_group"] > 0
