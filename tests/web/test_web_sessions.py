"""Browser sessions (web/sessions.py) on a real PostgreSQL: hashed tokens, fixed and idle expiry,
revocation, rotation at login, CSRF tokens and the cookie's attributes. Rule numbers are the
module docstring's."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from web import sessions
from web.sessions import Kind, SessionPolicy

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
POLICY = SessionPolicy(lifetime=dt.timedelta(hours=8), idle=dt.timedelta(minutes=20))


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


async def test_the_database_keeps_only_the_tokens_sha256(conn):
    opened = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    rows = await conn.fetch("SELECT * FROM web_session")
    assert len(rows) == 1
    row = dict(rows[0])
    assert row["token_hash"] == hashlib.sha256(opened.token.encode()).digest()
    assert all(opened.token not in str(v) for v in row.values())          # rule 1
    assert len(opened.token) >= 43 and opened.token != opened.session.csrf_token


async def test_a_token_resumes_its_own_session_and_nothing_else(conn):
    opened = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    s = await sessions.resume(conn, opened.token, kind=Kind.OPERATOR, policy=POLICY, now=at(1))
    assert s is not None and s.subject == "ana" and s.id == opened.session.id
    # another kind, an unknown token, an empty or oversized one: no session
    assert await sessions.resume(conn, opened.token, kind=Kind.HOLDER, policy=POLICY,
                                 now=at(1)) is None
    for bad in (None, "", opened.token + "x", "x" * 10_000):
        assert await sessions.resume(conn, bad, kind=Kind.OPERATOR, policy=POLICY,
                                     now=at(1)) is None


async def test_an_idle_session_ends_and_activity_keeps_it_alive(conn):
    opened = await sessions.open_session(conn, Kind.HOLDER, "h-1", policy=POLICY, now=T0)
    tok = opened.token
    # a request every 15 minutes keeps it alive past the 20-minute idle limit
    for minute in (15, 30, 45):
        assert await sessions.resume(conn, tok, kind="holder", policy=POLICY, now=at(minute))
    assert await sessions.resume(conn, tok, kind="holder", policy=POLICY, now=at(64.9))
    # then 20 minutes of nothing ends it (rule 2), and activity afterwards does not revive it
    assert await sessions.resume(conn, tok, kind="holder", policy=POLICY, now=at(85)) is None
    assert await sessions.resume(conn, tok, kind="holder", policy=POLICY, now=at(85.1)) is None


async def test_the_fixed_expiry_holds_however_busy_the_session_is(conn):
    opened = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    minute = 0
    while minute < 8 * 60 - 10:
        minute += 10
        assert await sessions.resume(conn, opened.token, kind="operator", policy=POLICY,
                                     now=at(minute)), minute
    assert await sessions.resume(conn, opened.token, kind="operator", policy=POLICY,
                                 now=at(8 * 60)) is None


async def test_logout_revokes_and_a_late_touch_does_not_revive(conn):
    opened = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    assert await sessions.revoke(conn, opened.token, now=at(1)) is True
    assert await sessions.revoke(conn, opened.token, now=at(1)) is False
    assert await sessions.resume(conn, opened.token, kind="operator", policy=POLICY,
                                 now=at(5)) is None
    assert (await conn.fetchval("SELECT revoked_at FROM web_session")) == at(1)


async def test_login_rotates_the_session_the_browser_carried(conn):
    planted = await sessions.open_session(conn, Kind.OPERATOR, "mallory", policy=POLICY, now=T0)
    fresh = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=at(1),
                                        replacing=planted.token)
    assert await sessions.resume(conn, planted.token, kind="operator", policy=POLICY,
                                 now=at(2)) is None                     # rule 3
    s = await sessions.resume(conn, fresh.token, kind="operator", policy=POLICY, now=at(2))
    assert s is not None and s.subject == "ana"
    assert fresh.session.csrf_token != planted.session.csrf_token


async def test_revoking_a_subject_ends_all_its_sessions_only(conn):
    a1 = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    a2 = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    b = await sessions.open_session(conn, Kind.OPERATOR, "bo", policy=POLICY, now=T0)
    h = await sessions.open_session(conn, Kind.HOLDER, "ana", policy=POLICY, now=T0)
    assert await sessions.revoke_subject(conn, Kind.OPERATOR, "ana", now=at(1)) == 2
    for tok, kind, alive in ((a1.token, "operator", False), (a2.token, "operator", False),
                             (b.token, "operator", True), (h.token, "holder", True)):
        got = await sessions.resume(conn, tok, kind=kind, policy=POLICY, now=at(2))
        assert (got is not None) is alive


async def test_purge_deletes_only_long_ended_sessions(conn):
    old = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    await sessions.open_session(conn, Kind.OPERATOR, "bo", policy=POLICY, now=at(60 * 24 * 40))
    assert await sessions.purge_ended(conn, now=at(60 * 24 * 40)) == 1
    assert await conn.fetchval("SELECT count(*) FROM web_session") == 1
    assert await sessions.resume(conn, old.token, kind="operator", policy=POLICY,
                                 now=at(60 * 24 * 40)) is None


async def test_a_csrf_token_is_accepted_only_for_its_own_session(conn):
    a = await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY, now=T0)
    b = await sessions.open_session(conn, Kind.OPERATOR, "bo", policy=POLICY, now=T0)
    assert sessions.csrf_ok(a.session, a.session.csrf_token)
    for supplied in (None, "", b.session.csrf_token, a.session.csrf_token[:-1],
                     a.session.csrf_token + "A", "é" * 40, "x" * 5000):
        assert not sessions.csrf_ok(a.session, supplied), supplied
    assert not sessions.csrf_ok(None, a.session.csrf_token)


async def test_naive_times_and_empty_subjects_are_refused(conn):
    with pytest.raises(ValueError):
        await sessions.open_session(conn, Kind.OPERATOR, "ana", policy=POLICY,
                                    now=dt.datetime(2026, 3, 1))
    with pytest.raises(ValueError):
        await sessions.open_session(conn, Kind.OPERATOR, "", policy=POLICY, now=T0)
    with pytest.raises(ValueError):
        await sessions.open_session(conn, "robot", "ana", policy=POLICY, now=T0)
    assert await conn.fetchval("SELECT count(*) FROM web_session") == 0


def test_the_cookie_is_httponly_strict_and_secure_off_loopback():
    plain = sessions.cookie_header("ics_console", "tok", secure=False)
    assert plain == "ics_console=tok; Path=/; HttpOnly; SameSite=Strict"
    secure = sessions.cookie_header("ics_console", "tok", secure=True, max_age=3600)
    assert secure.startswith("__Host-ics_console=tok; ")
    for attr in ("Path=/", "HttpOnly", "SameSite=Strict", "Secure", "Max-Age=3600"):
        assert attr in secure.split("; ")
    cleared = sessions.clear_cookie_header("ics_console", secure=False)
    assert "Max-Age=0" in cleared.split("; ") and cleared.startswith("ics_console=;")
    for name, value in (("a;b", "t"), ("a", "t;Domain=evil"), ("a", "t\r\nX: y")):
        with pytest.raises(ValueError):
            sessions.cookie_header(name, value, secure=False)


@pytest.mark.parametrize("host, tls, secure", [
    ("127.0.0.1", False, False), ("localhost", False, False), ("::1", False, False),
    ("[::1]", False, False), ("127.0.0.1", True, True), ("0.0.0.0", False, True),
    ("10.0.0.5", False, True), ("console.example.org", False, True),
])
def test_cookies_are_secure_unless_plain_http_on_loopback(host, tls, secure):
    assert sessions.secure_default(host, tls=tls) is secure


def test_a_policy_needs_positive_limits():
    with pytest.raises(ValueError):
        SessionPolicy(lifetime=dt.timedelta(0))
    with pytest.raises(ValueError):
        SessionPolicy(idle=dt.timedelta(seconds=-1))


async def test_a_node_purges_long_ended_sessions_at_start_and_batch_after_batch(pg_dsn,
                                                                                monkeypatch):
    import asyncio

    import asyncpg
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as c:
            for i in range(5):
                await sessions.open_session(c, Kind.HOLDER, f"h{i}", policy=POLICY, now=T0)
            live = await sessions.open_session(c, Kind.HOLDER, "now", policy=POLICY,
                                               now=at(60 * 24 * 40))
        monkeypatch.setattr(sessions, "PURGE_BATCH_MAX", 2)   # three batches for five rows
        rounds: asyncio.Queue[int] = asyncio.Queue()
        task = sessions.start_purging(pool, lambda: at(60 * 24 * 40), interval=3600,
                                      purged=rounds.put_nowait)
        try:
            assert await asyncio.wait_for(rounds.get(), timeout=30) == 5
        finally:
            task.cancel()
        async with pool.acquire() as c:
            assert await c.fetchval("SELECT count(*) FROM web_session") == 1
            assert await sessions.resume(c, live.token, kind="holder", policy=POLICY,
                                         now=at(60 * 24 * 40)) is not None
    finally:
        await pool.close()
