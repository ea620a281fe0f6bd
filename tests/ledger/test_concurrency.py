"""Concurrency: many connections on one account, one hold raced from two connections, and a
batch whose connection drops after COMMIT."""
from __future__ import annotations

import asyncio
import uuid
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

from ledger import (Account, AccountKind, Transfer, TransferKind as K, TransferResult as R, balance,
                    create_accounts, submit, verify)
from ledger_calls import accounts, call_batch, funding

CONNECTIONS = 8
ROUNDS = 15


async def _connect_many(dsn: str, n: int) -> list[asyncpg.Connection]:
    return [await asyncpg.connect(dsn) for _ in range(n)]


async def test_many_connections_holding_and_posting_on_one_account_never_overdraw(conn, pg_dsn):
    await create_accounts(conn, [Account("fund", AccountKind.FUNDING_CLEARING),
                                 Account("fam", AccountKind.PREPAID_PHONE),
                                 Account("clr", AccountKind.CALL_CLEARING)])
    funded = 1_000_000
    await submit(conn, [Transfer(uuid.uuid4(), K.SINGLE, "fund", "fam", funded)])
    conns = await _connect_many(pg_dsn, CONNECTIONS)
    posted = []

    async def caller(c: asyncpg.Connection) -> None:
        # Each round: hold 30_000, then post 25_000 of it; demand far exceeds the funds.
        for _ in range(ROUNDS):
            hold = Transfer(uuid.uuid4(), K.HOLD, "fam", "clr", 30_000, expires_in=60)
            (r,) = await submit(c, [hold])
            if r.result == R.OK:
                (p,) = await submit(c, [Transfer(uuid.uuid4(), K.POST, hold=hold.id, amount=25_000)])
                assert p.result == R.OK
                posted.append(25_000)
            else:
                assert r.result == R.INSUFFICIENT_FUNDS

    try:
        await asyncio.gather(*(caller(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    fam = await balance(conn, "fam")
    assert posted, "no call was ever funded"
    assert fam.debits_posted == sum(posted) <= funded                        # invariant 2
    assert fam.available >= 0 and fam.debits_pending == 0
    assert len(posted) < CONNECTIONS * ROUNDS                               # some were refused
    assert (await verify(conn)).ok


async def _waiting_on_a_lock(conn: asyncpg.Connection, pid: int) -> None:
    for _ in range(500):
        if await conn.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                               pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second connection never waited for the first")


async def _race_one_hold(conn, pg_dsn, second_id_same: bool) -> list[R]:
    await create_accounts(conn, [Account("fund", AccountKind.FUNDING_CLEARING),
                                 Account("fam", AccountKind.PREPAID_PHONE),
                                 Account("clr", AccountKind.CALL_CLEARING)])
    hold = Transfer(uuid.uuid4(), K.HOLD, "fam", "clr", 40_000, expires_in=60)
    await submit(conn, [Transfer(uuid.uuid4(), K.SINGLE, "fund", "fam", 100_000), hold])
    a, b = await _connect_many(pg_dsn, 2)
    first = Transfer(uuid.uuid4(), K.POST, hold=hold.id, amount=30_000)
    second = first if second_id_same else Transfer(uuid.uuid4(), K.POST, hold=hold.id)
    try:
        tx = a.transaction()
        await tx.start()
        (ra,) = await submit(a, [first])
        racer = asyncio.create_task(submit(b, [second]))
        await _waiting_on_a_lock(conn, b.get_server_pid())
        await tx.commit()
        (rb,) = await racer
    finally:
        await a.close()
        await b.close()
    fam = await balance(conn, "fam")
    assert (fam.debits_posted, fam.debits_pending) == (30_000, 0)   # posted exactly once
    assert (await verify(conn)).ok
    return [ra.result, rb.result]


async def test_the_same_hold_posted_from_two_connections_at_once_succeeds_exactly_once(conn, pg_dsn):
    assert await _race_one_hold(conn, pg_dsn, second_id_same=False) == [R.OK, R.HOLD_ALREADY_POSTED]


async def test_the_same_post_sent_twice_at_once_is_applied_once_and_then_exists(conn, pg_dsn):
    assert await _race_one_hold(conn, pg_dsn, second_id_same=True) == [R.OK, R.EXISTS]


async def test_a_free_for_all_on_one_hold_posts_it_once(conn, pg_dsn):
    await create_accounts(conn, [Account("fund", AccountKind.FUNDING_CLEARING),
                                 Account("fam", AccountKind.PREPAID_PHONE),
                                 Account("clr", AccountKind.CALL_CLEARING)])
    hold = Transfer(uuid.uuid4(), K.HOLD, "fam", "clr", 40_000, expires_in=60)
    await submit(conn, [Transfer(uuid.uuid4(), K.SINGLE, "fund", "fam", 100_000), hold])
    conns = await _connect_many(pg_dsn, CONNECTIONS)
    try:
        results = await asyncio.gather(*(
            submit(c, [Transfer(uuid.uuid4(), K.POST, hold=hold.id)]) for c in conns))
    finally:
        for c in conns:
            await c.close()
    codes = sorted(r.result for (r,) in results)
    assert codes == [R.OK] + [R.HOLD_ALREADY_POSTED] * (CONNECTIONS - 1)
    assert (await balance(conn, "fam")).debits_posted == 40_000


# -- a connection that drops after COMMIT ----------------------------------------------------------
class DroppingProxy:
    """A TCP proxy to the server that, when armed, swallows the server's next complete reply
    (up to ReadyForQuery) and closes the client's connection: the server has committed, the client
    never hears of it."""

    READY = b"Z\x00\x00\x00\x05"

    def __init__(self, dsn: str):
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        self.dsn = dsn
        self.host = query.get("host", [parts.hostname])[0]
        self.port = int(query.get("port", [parts.port or 5432])[0])
        self.armed = False
        self.dropped = asyncio.Event()

    async def _upstream(self):
        if self.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.host}/.s.PGSQL.{self.port}")
        return await asyncio.open_connection(self.host, self.port)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        parts = urlsplit(self.dsn)
        return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}",
                                         query=""))

    async def _serve(self, client_r, client_w):
        up_r, up_w = await self._upstream()

        async def client_to_server():
            while data := await client_r.read(65536):
                up_w.write(data)
                await up_w.drain()

        async def server_to_client():
            swallowed = b""
            while data := await up_r.read(65536):
                if self.armed:
                    swallowed += data
                    if swallowed[-6:-1] == self.READY:
                        self.armed = False
                        client_w.transport.abort()
                        self.dropped.set()
                        return
                    continue
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        up_w.close()
        client_w.close()

    def close(self):
        self.server.close()


async def test_a_batch_whose_connection_drops_after_commit_is_retried_and_answers_exists(conn, pg_dsn):
    await create_accounts(conn, accounts(4))
    await submit(conn, funding("drop", 4, 10_000_000))
    proxy = DroppingProxy(pg_dsn)
    client = await asyncpg.connect(await proxy.start(), ssl=False)
    try:
        # Prepare the statement first, so the armed reply is the batch's own execution.
        assert [r.result for r in await submit(client, call_batch("drop", 0, 1, 4))] == [R.OK] * 4
        batch = call_batch("drop", 1, 50, 4)
        proxy.armed = True
        try:
            await submit(client, batch)
            raise AssertionError("the reply should have been lost")
        except (asyncpg.ConnectionDoesNotExistError, ConnectionError, asyncpg.InterfaceError):
            pass
        assert proxy.dropped.is_set()
    finally:
        await client.close(timeout=1) if not client.is_closed() else None
        proxy.close()
    # The server committed the batch although the client never heard back.
    ids = [t.id for t in batch]
    assert await conn.fetchval("SELECT count(*) FROM ledger_transfer WHERE id = ANY($1)", ids) == 200
    before = [await balance(conn, a) for a in ("fam0", "clr", "rev", "tax")]
    retry = await submit(conn, batch)                      # the client's retry, on a new connection
    assert [r.result for r in retry] == [R.EXISTS] * len(batch)
    assert [await balance(conn, a) for a in ("fam0", "clr", "rev", "tax")] == before
    assert (await verify(conn)).ok
