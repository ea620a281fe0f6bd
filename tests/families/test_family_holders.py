"""Account holders on the real database: register, verify through the outbox, log in, throttling
per email and per source, single-use expiring reset codes, and an audit row for each action."""
from __future__ import annotations

import re

import pytest

from families import holders
from families.errors import Invalid, LoginRefused
from families.passwords import hash_password, verify_password

PW = "correct horse battery"


def code_in(body: str) -> str:
    return re.search(r"^    (\S+)$", body, re.M).group(1)


async def mail(conn, email, kind):
    return await conn.fetchrow("SELECT * FROM family_outbox WHERE recipient = $1 AND kind = $2 "
                               "ORDER BY id DESC LIMIT 1", email, kind)


async def registered(conn, settings, clock, email="ana@example.org", verify=True):
    hid = await holders.register(conn, email, PW, now=clock(), settings=settings)
    if verify:
        await holders.verify_email(conn, code_in((await mail(conn, email, "verify"))["body"]),
                                   now=clock())
    return hid


def test_passwords_are_salted_scrypt_and_verify_only_themselves():
    a, b = hash_password(PW), hash_password(PW)
    assert a != b and a.startswith("scrypt$")
    assert verify_password(PW, a) and not verify_password(PW + "x", a)
    assert not verify_password(PW, "md5$whatever")


async def test_register_verify_and_login(conn, settings, clock):
    hid = await holders.register(conn, " Ana@Example.ORG ", PW, now=clock(), settings=settings)
    with pytest.raises(LoginRefused) as e:
        await holders.login(conn, "ana@example.org", PW, source="10.0.0.1", now=clock(),
                            settings=settings)
    assert e.value.reason == "unverified"
    m = await mail(conn, "ana@example.org", "verify")
    assert await holders.verify_email(conn, code_in(m["body"]), now=clock()) == hid
    h = await holders.login(conn, "ANA@example.org", PW, source="10.0.0.1", now=clock(),
                            settings=settings)
    assert h.id == hid and h.verified
    actions = [r["action"] for r in await conn.fetch(
        "SELECT action FROM family_audit WHERE target = $1 ORDER BY seq", f"holder:{hid}")]
    assert actions == ["holder.register", "holder.verify_email", "holder.login"]


async def test_a_verification_code_works_once(conn, settings, clock):
    await holders.register(conn, "bo@example.org", PW, now=clock(), settings=settings)
    code = code_in((await mail(conn, "bo@example.org", "verify"))["body"])
    await holders.verify_email(conn, code, now=clock())
    with pytest.raises(Invalid, match="already used"):
        await holders.verify_email(conn, code, now=clock())


async def test_registering_a_taken_address_changes_nothing_and_mails_its_owner(conn, settings,
                                                                                clock):
    hid = await registered(conn, settings, clock)
    before = await conn.fetchval("SELECT password_hash FROM family_holder WHERE id = $1", hid)
    assert await holders.register(conn, "ana@example.org", "another password 1",
                                  now=clock(), settings=settings) is None
    assert await conn.fetchval("SELECT password_hash FROM family_holder WHERE id = $1",
                               hid) == before
    assert await mail(conn, "ana@example.org", "register_taken") is not None


BAD = [("not-an-email", PW, "email"), ("a@b", PW, "email"), ("ana@example.org", "short", "password"),
       ("ana@example.org", "aaaaaaaaaaaa", "password"), ("x\n@example.org", PW, "email"),
       ("ana@example.org", "ana@example.org", "password")]


async def test_bad_registrations_name_the_field_and_write_nothing(conn, settings, clock):
    for email, password, field in BAD:
        with pytest.raises(Invalid) as e:
            await holders.register(conn, email, password, now=clock(), settings=settings)
        assert e.value.field == field, (email, password)
    assert await conn.fetchval("SELECT count(*) FROM family_holder") == 0
    assert await conn.fetchval("SELECT count(*) FROM family_outbox") == 0


async def test_logins_are_throttled_per_email_then_allowed_after_the_window(conn, settings,
                                                                            clock):
    await registered(conn, settings, clock)
    for i in range(settings.login_failures_max):
        with pytest.raises(LoginRefused) as e:
            await holders.login(conn, "ana@example.org", "wrong password!", source=f"10.0.0.{i}",
                                now=clock(), settings=settings)
        assert e.value.reason == "wrong"
    with pytest.raises(LoginRefused) as e:        # the right password, but not checked now
        await holders.login(conn, "ana@example.org", PW, source="10.9.9.9", now=clock(),
                            settings=settings)
    assert e.value.reason == "throttled"
    clock.advance(seconds=settings.login_window_seconds + 1)
    assert (await holders.login(conn, "ana@example.org", PW, source="10.9.9.9", now=clock(),
                                settings=settings)).email == "ana@example.org"


async def test_logins_are_throttled_per_source_across_emails(conn, settings, clock):
    await registered(conn, settings, clock)
    for i in range(settings.login_source_failures_max):
        with pytest.raises(LoginRefused):
            await holders.login(conn, f"guess{i}@example.org", "wrong password!",
                                source="192.0.2.7", now=clock(), settings=settings)
    with pytest.raises(LoginRefused) as e:
        await holders.login(conn, "ana@example.org", PW, source="192.0.2.7", now=clock(),
                            settings=settings)
    assert e.value.reason == "throttled"
    assert (await holders.login(conn, "ana@example.org", PW, source="192.0.2.8", now=clock(),
                                settings=settings)).email == "ana@example.org"


async def test_password_reset_code_is_single_use_and_expires(conn, settings, clock):
    hid = await registered(conn, settings, clock)
    await holders.request_reset(conn, "ana@example.org", now=clock(), settings=settings)
    code = code_in((await mail(conn, "ana@example.org", "reset"))["body"])
    assert await holders.reset_password(conn, code, "a brand new secret", now=clock()) == hid
    with pytest.raises(Invalid, match="already used"):
        await holders.reset_password(conn, code, "yet another secret", now=clock())
    await holders.login(conn, "ana@example.org", "a brand new secret", source="x", now=clock(),
                        settings=settings)
    await holders.request_reset(conn, "ana@example.org", now=clock(), settings=settings)
    code = code_in((await mail(conn, "ana@example.org", "reset"))["body"])
    clock.advance(seconds=settings.token_seconds)
    with pytest.raises(Invalid, match="expired"):
        await holders.reset_password(conn, code, "too late a secret", now=clock())


async def test_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(conn, settings,
                                                                               clock):
    await holders.request_reset(conn, "nobody@example.org", now=clock(), settings=settings)
    assert await conn.fetchval("SELECT count(*) FROM family_outbox") == 0


async def test_audit_rows_cannot_be_changed(conn, settings, clock):
    await registered(conn, settings, clock)
    import asyncpg
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await conn.execute("UPDATE family_audit SET actor = 'someone else'")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await conn.execute("DELETE FROM family_audit")
