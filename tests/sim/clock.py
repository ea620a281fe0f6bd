"""Simulated time: one clock for the core, its tariff cache and the database's `now()`.

The clock counts whole milliseconds from a fixed epoch, so no float drifts and no wall clock
leaks in. The database reads the same instant: the simulator's database gets a `simclock.now()`
that the core's connections find before `pg_catalog.now()` on their search path, so the ledger's
hold expiry and sweeper (which default to the database clock) run on simulated time too.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["SimClock", "EPOCH", "CLOCK_SCHEMA_SQL", "CORE_SEARCH_PATH"]

# A Wednesday, 10:00 in the demo facility's Los Angeles: inside every calling window.
EPOCH = datetime(2026, 11, 25, 18, 0, tzinfo=timezone.utc)

CLOCK_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS simclock;
CREATE TABLE IF NOT EXISTS simclock.instant (at timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION simclock.now() RETURNS timestamptz
    LANGUAGE sql STABLE AS $$ SELECT at FROM simclock.instant $$;
"""
# simclock comes before pg_catalog, so an unqualified now() in the ledger's functions is ours.
CORE_SEARCH_PATH = "simclock, pg_catalog, public"


class SimClock:
    """The simulated instant. `__call__` is the core's clock; `monotonic` is its cache clock."""

    def __init__(self, epoch: datetime = EPOCH) -> None:
        self.epoch = epoch
        self.ms = 0
        self._db_ms: int | None = None

    def __call__(self) -> datetime:
        return self.epoch + timedelta(milliseconds=self.ms)

    def monotonic(self) -> float:
        return self.ms / 1000

    def advance_to(self, ms: int) -> None:
        if ms < self.ms:
            raise ValueError(f"simulated time runs forward: {ms} ms is before {self.ms} ms")
        self.ms = ms

    async def install(self, conn) -> None:
        """Give the database the simulated clock (idempotent)."""
        await conn.execute(CLOCK_SCHEMA_SQL)
        await conn.execute("DELETE FROM simclock.instant")
        await conn.execute("INSERT INTO simclock.instant (at) VALUES ($1)", self())
        self._db_ms = self.ms

    async def sync(self, conn) -> None:
        """Move the database's clock to the simulated instant before the core next acts."""
        if self._db_ms != self.ms:
            await conn.execute("UPDATE simclock.instant SET at = $1", self())
            self._db_ms = self.ms
