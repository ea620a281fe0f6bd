"""The family API, account: register, confirm the email, log in and out, reset the password.

Login answers the session's CSRF token; the session itself travels in an HttpOnly, SameSite
cookie. Every request that changes something must carry the token in X-CSRF-Token.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal, cast

from families import holders
from families.errors import LoginRefused
from web import problems, sessions
from web.dispatch import Call
from web.endpoints import REGISTRY
from web.endpoints.common import Model
from web.endpoints.family_common import (Email, Password, Token, TooManyRequests, fam,
                                         family_problems, holder)
from web.family_auth import (COOKIE, HolderPrincipal, client_address, is_secure,
                             session_policy)
from web.roles import Right

TAG = "family"


class RegisterIn(Model):
    email: Email
    password: Password
    language: Literal["en", "es"] = "en"


class Accepted(Model):
    status: Literal["accepted"]
    detail: str


class VerifyIn(Model):
    token: Token


class LoginIn(Model):
    email: Email
    password: Password


class SessionOut(Model):
    holder: uuid.UUID
    email: str
    language: str
    csrf_token: str
    expires_at: dt.datetime


class ResetRequestIn(Model):
    email: Email


class ResetIn(Model):
    token: Token
    password: Password


class PasswordIn(Model):
    current_password: Password
    new_password: Password


class HolderOut(Model):
    holder: uuid.UUID
    email: str
    language: str
    verified: bool
    created_at: dt.datetime


@REGISTRY.operation("POST", "/family/register", right=Right.FAMILY, tag=TAG, auth="public",
                    summary="Open a holder account; a code to confirm the email goes out by mail",
                    body=RegisterIn, response=Accepted, status=202)
async def family_register(call: Call) -> Accepted:
    f = fam(call)
    async with call.pool.acquire() as conn:
        with family_problems():
            await holders.register(conn, call.body.email, call.body.password,
                                   language=call.body.language, now=call.services.clock(),
                                   settings=f.settings)
    # The same answer whether or not the address had an account (no enumeration).
    return Accepted(status="accepted", detail="check your mail for the code that confirms "
                    "the address")


@REGISTRY.operation("POST", "/family/verify", right=Right.FAMILY, tag=TAG, auth="public",
                    summary="Confirm the email address with the mailed code (once)",
                    body=VerifyIn, response=Accepted)
async def family_verify(call: Call) -> Accepted:
    async with call.pool.acquire() as conn:
        with family_problems():
            await holders.verify_email(conn, call.body.token, now=call.services.clock())
    return Accepted(status="accepted", detail="the address is confirmed; log in")


@REGISTRY.operation("POST", "/family/login", right=Right.FAMILY, tag=TAG, auth="public",
                    summary="Log in: sets the session cookie and answers its CSRF token",
                    body=LoginIn, response=SessionOut)
async def family_login(call: Call) -> SessionOut:
    f = fam(call)
    now = call.services.clock()
    async with call.pool.acquire() as conn:
        try:
            h = await holders.login(conn, call.body.email, call.body.password,
                                    source=client_address(call.http), now=now,
                                    settings=f.settings)
        except LoginRefused as e:
            if e.reason == "throttled":
                raise TooManyRequests(str(e), headers={
                    "Retry-After": str(f.settings.login_window_seconds)}) from None
            if e.reason == "unverified":
                raise problems.Forbidden(str(e), [problems.field_error(
                    "body", "email", "not confirmed yet", "login.unverified")]) from None
            raise problems.Unauthorized(str(e), [problems.field_error(
                "body", "password", "the email or the password is wrong",
                "login.wrong")]) from None
        from web.family_auth import cookie_token
        opened = await sessions.open_session(conn, sessions.Kind.HOLDER, str(h.id),
                                             policy=session_policy(f), now=now,
                                             replacing=cookie_token(call.http))
    secure = is_secure(call.http)
    call.http.setHeader(b"set-cookie", sessions.cookie_header(
        COOKIE, opened.token, secure=secure).encode())
    return SessionOut(holder=h.id, email=h.email, language=h.language,
                      csrf_token=opened.session.csrf_token,
                      expires_at=opened.session.expires_at)


@REGISTRY.operation("POST", "/family/logout", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="End this session", response=Accepted)
async def family_logout(call: Call) -> Accepted:
    from families import audit
    now = call.services.clock()
    async with call.change() as conn:
        await sessions.revoke(conn, cast(HolderPrincipal, call.principal).token, now=now)
        await audit.record(conn, at=now, actor=call.principal.actor, action="holder.logout",
                           target=f"holder:{holder(call)}")
    call.http.setHeader(b"set-cookie", sessions.clear_cookie_header(
        COOKIE, secure=is_secure(call.http)).encode())
    return Accepted(status="accepted", detail="logged out")


@REGISTRY.operation("GET", "/family/me", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="The logged-in holder", response=HolderOut)
async def family_me(call: Call) -> HolderOut:
    async with call.pool.acquire() as conn:
        h = await holders.get_holder(conn, holder(call))
    return HolderOut(holder=h.id, email=h.email, language=h.language, verified=h.verified,
                     created_at=h.created_at)


@REGISTRY.operation("POST", "/family/password-reset", right=Right.FAMILY, tag=TAG,
                    auth="public", summary="Mail a password reset code (same answer for any "
                    "address)", body=ResetRequestIn, response=Accepted, status=202)
async def family_reset_request(call: Call) -> Accepted:
    f = fam(call)
    async with call.pool.acquire() as conn:
        with family_problems():
            await holders.request_reset(conn, call.body.email, now=call.services.clock(),
                                        settings=f.settings)
    return Accepted(status="accepted", detail="if the address has an account, a code is on "
                    "its way")


@REGISTRY.operation("POST", "/family/password", right=Right.FAMILY, tag=TAG, auth="public",
                    summary="Choose a new password with a reset code (once); ends every "
                    "session", body=ResetIn, response=Accepted)
async def family_reset(call: Call) -> Accepted:
    now = call.services.clock()
    async with call.pool.acquire() as conn:
        with family_problems():
            holder_id = await holders.reset_password(conn, call.body.token, call.body.password,
                                                     now=now)
        await sessions.revoke_subject(conn, sessions.Kind.HOLDER, str(holder_id), now=now)
    return Accepted(status="accepted", detail="the password is changed; log in")


@REGISTRY.operation("POST", "/family/me/password", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Change the password (ends the other sessions)", body=PasswordIn,
                    response=Accepted)
async def family_change_password(call: Call) -> Accepted:
    now = call.services.clock()
    async with call.pool.acquire() as conn:
        with family_problems():
            await holders.change_password(conn, holder(call), call.body.current_password,
                                          call.body.new_password, now=now)
        await conn.execute("UPDATE web_session SET revoked_at = $3 WHERE kind = 'holder' AND "
                           "subject = $1 AND id <> $2 AND revoked_at IS NULL",
                           str(holder(call)), cast(HolderPrincipal, call.principal).session.id, now)
    return Accepted(status="accepted", detail="the password is changed")
