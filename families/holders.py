"""Account holders: register, verify the email, log in (throttled), reset the password.

Answers never tell whether an email is registered: registering a taken address and asking to
reset an unknown one answer as if all were well (the owner of a taken address is mailed instead),
and a login with an unknown email costs one scrypt like any other. Tokens go out through the
outbox; only their SHA-256 is stored, each is used once and expires.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from families import audit, outbox
from families.errors import Invalid, LoginRefused, NotFound, Refused
from families.passwords import (
    DUMMY_HASH,
    PasswordRejected,
    check_strength,
    hash_password,
    needs_rehash,
    verify_password,
)
from families.settings import FamilySettings

__all__ = ["Holder", "register", "verify_email", "login", "request_reset", "reset_password",
           "get_holder", "normalize_email", "touch", "change_password"]

EMAIL_LENGTH_MAX = 254
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$")
TOKEN_BYTES = 32
TOKEN_TEXT_MAX = 100


@dataclass(frozen=True)
class Holder:
    id: uuid.UUID
    email: str
    language: str
    verified: bool
    created_at: dt.datetime


def normalize_email(text: str) -> str:
    if not isinstance(text, str):
        raise Invalid("email", "give an email address", "email.missing")
    email = text.strip().lower()
    if len(email) > EMAIL_LENGTH_MAX or not _EMAIL.match(email):
        raise Invalid("email", "not an email address such as name@example.org", "email.format")
    return email


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def _issue_token(conn: asyncpg.Connection, holder_id: uuid.UUID, purpose: str,
                       now: dt.datetime,
                       settings: FamilySettings) -> str:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    # A new link replaces the ones before it: only the latest of each purpose works.
    await conn.execute("UPDATE family_token SET used_at = $3 WHERE holder_id = $1 AND "
                       "purpose = $2 AND used_at IS NULL", holder_id, purpose, now)
    await conn.execute(
        "INSERT INTO family_token (token_hash, holder_id, purpose, created_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5)", _hash(token), holder_id, purpose, now,
        now + dt.timedelta(seconds=settings.token_seconds))
    return token


def _holder(r: asyncpg.Record) -> Holder:
    return Holder(r["id"], r["email"], r["language"], r["verified_at"] is not None,
                  r["created_at"])


async def get_holder(conn: asyncpg.Connection, holder_id: uuid.UUID) -> Holder:
    r = await conn.fetchrow("SELECT * FROM family_holder WHERE id = $1", holder_id)
    if r is None:
        raise NotFound("holder", "no such account holder", "holder.unknown")
    return _holder(r)


async def touch(conn: asyncpg.Connection, holder_id: uuid.UUID, now: dt.datetime) -> None:
    """A request from the holder: restarts the inactivity clock of their balances."""
    await conn.execute("UPDATE family_holder SET last_request_at = greatest(last_request_at, $2) "
                       "WHERE id = $1", holder_id, now)


_VERIFY = {"en": ("Confirm your email address",
                  "Welcome. To confirm this address, use this code in the family portal or API:\n"
                  "\n    {token}\n\nIt works once and expires in {hours} hours. If you did not "
                  "register, ignore this message."),
           "es": ("Confirme su correo electrónico",
                  "Bienvenido. Para confirmar esta dirección, use este código en el portal o la "
                  "API de familias:\n\n    {token}\n\nFunciona una vez y vence en {hours} horas. "
                  "Si usted no se registró, ignore este mensaje.")}
_TAKEN = {"en": ("Someone tried to register this address",
                 "Someone tried to open an account with this address, which already has one. If "
                 "it was you, log in or reset your password. Nothing was changed."),
          "es": ("Alguien intentó registrar esta dirección",
                 "Alguien intentó abrir una cuenta con esta dirección, que ya tiene una. Si fue "
                 "usted, inicie sesión o restablezca su contraseña. No se cambió nada.")}
_RESET = {"en": ("Reset your password",
                 "To choose a new password, use this code:\n\n    {token}\n\nIt works once and "
                 "expires in {hours} hours. If you did not ask, ignore this message."),
          "es": ("Restablezca su contraseña",
                 "Para elegir una contraseña nueva, use este código:\n\n    {token}\n\nFunciona "
                 "una vez y vence en {hours} horas. Si no lo pidió, ignore este mensaje.")}


async def register(conn: asyncpg.Connection, email: str, password: str, *, language: str = "en",
                   now: dt.datetime, settings: FamilySettings) -> uuid.UUID | None:
    """A new holder, unverified, and a verification code in the outbox. Returns the new id, or
    None when the address was taken (its owner is told by mail; the caller answers the same)."""
    email = normalize_email(email)
    if language not in ("en", "es"):
        raise Invalid("language", "en or es", "language.unknown")
    try:
        check_strength(password, email)
    except PasswordRejected as e:
        raise Invalid("password", str(e), e.code, **e.params) from None
    hashed = hash_password(password)
    hours = settings.token_seconds // 3600
    async with conn.transaction():
        holder_id = uuid.uuid4()
        made = await conn.fetchval(
            "INSERT INTO family_holder (id, email, password_hash, language, created_at, "
            "last_request_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (email) DO NOTHING "
            "RETURNING id", holder_id, email, hashed, language, now)
        if made is None:
            owner = await conn.fetchrow("SELECT id, language FROM family_holder WHERE email = $1",
                                        email)
            subject, body = _TAKEN[owner["language"]]
            await outbox.enqueue(conn, at=now, holder_id=owner["id"], recipient=email,
                                 kind="register_taken", subject=subject, body=body)
            return None
        token = await _issue_token(conn, holder_id, "verify", now, settings)
        subject, body = _VERIFY[language]
        await outbox.enqueue(conn, at=now, holder_id=holder_id, recipient=email, kind="verify",
                             subject=subject, body=body.format(token=token, hours=hours))
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="holder.register", target=f"holder:{holder_id}",
                           detail={"email": email, "language": language})
    return holder_id


async def _redeem(conn: asyncpg.Connection, token: str, purpose: str,
                  now: dt.datetime) -> uuid.UUID:
    if not isinstance(token, str) or not 0 < len(token) <= TOKEN_TEXT_MAX:
        raise Invalid("token", "not a code this service sent", "token.unknown")
    r = await conn.fetchrow("SELECT * FROM family_token WHERE token_hash = $1 FOR UPDATE",
                            _hash(token))
    if r is None or r["purpose"] != purpose:
        raise Invalid("token", "not a code this service sent", "token.unknown")
    if r["used_at"] is not None:
        raise Invalid("token", "this code was already used (or replaced by a newer one)",
                      "token.used")
    if r["expires_at"] <= now:
        raise Invalid("token", "this code has expired; ask for a new one", "token.expired")
    await conn.execute("UPDATE family_token SET used_at = $2 WHERE token_hash = $1",
                       _hash(token), now)
    holder_id: uuid.UUID = r["holder_id"]
    return holder_id


async def verify_email(conn: asyncpg.Connection, token: str, *, now: dt.datetime) -> uuid.UUID:
    async with conn.transaction():
        holder_id = await _redeem(conn, token, "verify", now)
        await conn.execute("UPDATE family_holder SET verified_at = coalesce(verified_at, $2) "
                           "WHERE id = $1", holder_id, now)
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="holder.verify_email", target=f"holder:{holder_id}")
    return holder_id


async def resend_verification(conn: asyncpg.Connection, holder_id: uuid.UUID, *, now: dt.datetime,
                              settings: FamilySettings) -> None:
    async with conn.transaction():
        h = await get_holder(conn, holder_id)
        if h.verified:
            raise Refused("email", "this address is already confirmed", "email.already_confirmed")
        token = await _issue_token(conn, holder_id, "verify", now, settings)
        subject, body = _VERIFY[h.language]
        await outbox.enqueue(conn, at=now, holder_id=holder_id, recipient=h.email,
                             kind="verify", subject=subject,
                             body=body.format(token=token, hours=settings.token_seconds // 3600))
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="holder.resend_verification", target=f"holder:{holder_id}")


async def _failures(conn: asyncpg.Connection, column: str, value: str, since: dt.datetime) -> int:
    # Failures since the last success of this email (or source): a good login clears the count.
    failures: int = await conn.fetchval(
        f"SELECT count(*) FROM family_login_attempt WHERE {column} = $1 AND at >= $2 AND NOT ok "
        f"AND at > coalesce((SELECT max(at) FROM family_login_attempt WHERE {column} = $1 "
        f"AND ok), '-infinity')", value, since)
    return failures


async def login(conn: asyncpg.Connection, email: str, password: str, *, source: str,
                now: dt.datetime,
                settings: FamilySettings) -> Holder:
    """The holder these credentials name, or LoginRefused. Throttled per email and per source
    address: past `login_failures_max` (or the source's limit) failures in the window, refused
    without checking the password. Every attempt is recorded; a success is audited."""
    try:
        email = normalize_email(email)
    except Invalid:
        email = str(email)[:EMAIL_LENGTH_MAX].strip().lower()
    source = (source or "unknown")[:64]
    since = now - dt.timedelta(seconds=settings.login_window_seconds)
    if (await _failures(conn, "email", email, since) >= settings.login_failures_max
            or await _failures(conn, "source", source, since)
            >= settings.login_source_failures_max):
        await conn.execute("INSERT INTO family_login_attempt (at, email, source, ok) "
                           "VALUES ($1, $2, $3, false)", now, email, source)
        raise LoginRefused("throttled", "too many failed logins; wait "
                           f"{settings.login_window_seconds // 60} minutes and try again")
    r = await conn.fetchrow("SELECT * FROM family_holder WHERE email = $1", email)
    ok = verify_password(password if isinstance(password, str) else "",
                         r["password_hash"] if r is not None else DUMMY_HASH) and r is not None
    async with conn.transaction():
        await conn.execute("INSERT INTO family_login_attempt (at, email, source, ok) "
                           "VALUES ($1, $2, $3, $4)", now, email, source, ok)
        if ok and r["verified_at"] is not None:
            if needs_rehash(r["password_hash"]):
                await conn.execute("UPDATE family_holder SET password_hash = $2 WHERE id = $1",
                                   r["id"], hash_password(password))
            await audit.record(conn, at=now, actor=audit.holder_actor(r["id"]),
                               action="holder.login", target=f"holder:{r['id']}",
                               detail={"source": source})
            await touch(conn, r["id"], now)
    if not ok:
        raise LoginRefused("wrong", "the email or the password is wrong")
    if r["verified_at"] is None:
        raise LoginRefused("unverified", "confirm your email address first (see the code we "
                           "sent); you can ask for a new one")
    return _holder(r)


async def request_reset(conn: asyncpg.Connection, email: str, *, now: dt.datetime,
                        settings: FamilySettings) -> None:
    """A reset code to the address, if it has an account; the same answer either way."""
    email = normalize_email(email)
    async with conn.transaction():
        r = await conn.fetchrow("SELECT id, language FROM family_holder WHERE email = $1", email)
        if r is None:
            return
        token = await _issue_token(conn, r["id"], "reset", now, settings)
        subject, body = _RESET[r["language"]]
        await outbox.enqueue(conn, at=now, holder_id=r["id"], recipient=email, kind="reset",
                             subject=subject,
                             body=body.format(token=token, hours=settings.token_seconds // 3600))
        await audit.record(conn, at=now, actor=audit.holder_actor(r["id"]),
                           action="holder.reset_requested", target=f"holder:{r['id']}")


async def reset_password(conn: asyncpg.Connection, token: str, password: str, *,
                         now: dt.datetime) -> uuid.UUID:
    """A new password with a reset code (once); the caller ends the holder's sessions."""
    async with conn.transaction():
        holder_id = await _redeem(conn, token, "reset", now)
        email = await conn.fetchval("SELECT email FROM family_holder WHERE id = $1", holder_id)
        try:
            check_strength(password, email)
        except PasswordRejected as e:
            raise Invalid("password", str(e), e.code, **e.params) from None
        # A reset through the mailbox also proves the address.
        await conn.execute("UPDATE family_holder SET password_hash = $2, "
                           "verified_at = coalesce(verified_at, $3) WHERE id = $1",
                           holder_id, hash_password(password), now)
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="holder.reset_password", target=f"holder:{holder_id}")
    return holder_id


async def change_password(conn: asyncpg.Connection, holder_id: uuid.UUID, current: str, new: str,
                          *, now: dt.datetime) -> None:
    async with conn.transaction():
        r = await conn.fetchrow("SELECT email, password_hash FROM family_holder WHERE id = $1 "
                                "FOR UPDATE", holder_id)
        if r is None:
            raise NotFound("holder", "no such account holder", "holder.unknown")
        if not verify_password(current, r["password_hash"]):
            raise Invalid("current_password", "is not your password", "password.wrong")
        try:
            check_strength(new, r["email"])
        except PasswordRejected as e:
            raise Invalid("new_password", str(e), e.code, **e.params) from None
        await conn.execute("UPDATE family_holder SET password_hash = $2 WHERE id = $1",
                           holder_id, hash_password(new))
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="holder.change_password", target=f"holder:{holder_id}")
