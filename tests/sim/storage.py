"""The core's database link under faults: outages, and the core process dying mid-operation.

`FaultyPool` stands where the core's `asyncpg.Pool` stands. While the database is out every
acquire fails the way a refused connection does (an OSError, which the AMP service answers as
CoreUnavailable). A crash is armed as "die at the n-th statement from now": that statement and
every later one raises `CoreCrashed`, the open transaction rolls back (as PostgreSQL does when a
client vanishes) and the simulator replaces the core. Whatever the dead core still had in hand
(a request waiting on a batch, say) is never answered, as with a killed process: `died` tells
the simulator to stop waiting for it. Statements counted are the asyncpg
calls the core makes; `transaction()` blocks pass through.
"""
from __future__ import annotations

import asyncio

__all__ = ["FaultyPool", "CoreCrashed", "DatabaseOut"]


class CoreCrashed(Exception):
    """The simulated core process is dead: nothing it does reaches the database any more."""


class DatabaseOut(ConnectionRefusedError):
    """The database cannot be reached (an outage injected by the simulator)."""


_STATEMENTS = frozenset({"execute", "executemany", "fetch", "fetchrow", "fetchval"})


class FaultyPool:
    def __init__(self, pool) -> None:
        self._pool = pool
        self.out = False
        self.crashed = False
        self.crash_in: int | None = None     # statements left before the crash, when armed
        self.died = asyncio.Event()          # set the moment the process dies

    def arm_crash(self, statements: int) -> None:
        self.crash_in = statements

    def _statement(self) -> None:
        if self.crashed:
            raise CoreCrashed("the core process is gone")
        if self.crash_in is not None:
            if self.crash_in <= 0:
                self.crashed = True
                self.died.set()
                raise CoreCrashed("the core process was killed")
            self.crash_in -= 1
        if self.out:
            raise DatabaseOut("database unreachable (simulated outage)")

    def acquire(self) -> "_Acquire":
        return _Acquire(self)

    async def close(self) -> None:
        await self._pool.close()

    def terminate(self) -> None:
        self._pool.terminate()


class _Acquire:
    def __init__(self, pool: FaultyPool) -> None:
        self.pool = pool
        self.conn = None

    async def __aenter__(self):
        if self.pool.crashed:
            raise CoreCrashed("the core process is gone")
        if self.pool.out:
            raise DatabaseOut("database unreachable (simulated outage)")
        self.conn = await self.pool._pool.acquire()
        return _FaultyConnection(self.conn, self.pool)

    async def __aexit__(self, *exc) -> None:
        await self.pool._pool.release(self.conn)


class _FaultyConnection:
    def __init__(self, conn, pool: FaultyPool) -> None:
        self._conn = conn
        self._pool = pool

    def __getattr__(self, name):
        attr = getattr(self._conn, name)
        if name not in _STATEMENTS:
            return attr

        async def statement(*args, **kw):
            self._pool._statement()
            return await attr(*args, **kw)
        return statement
