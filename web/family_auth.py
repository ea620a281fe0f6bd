"""Who is behind a family API request: a holder by their session cookie (and, on every request
that changes something, the session's CSRF token in X-CSRF-Token), or the public."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from web import problems, sessions

if TYPE_CHECKING:
    from web.dispatch import Services
    from web.family import FamilyServices
    from web.operations import Operation

__all__ = ["HolderPrincipal", "PublicPrincipal", "principal", "COOKIE", "CSRF_HEADER",
           "session_policy", "is_secure", "client_address"]

COOKIE = "ics_family"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class HolderPrincipal:
    holder_id: uuid.UUID
    session: sessions.Session
    token: str
    family = True
    role = None
    facilities: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        return f"holder:{self.holder_id}"


@dataclass(frozen=True)
class PublicPrincipal:
    family = True
    role = None
    facilities: frozenset[str] = frozenset()
    actor = "public"


def session_policy(fam: FamilyServices) -> sessions.SessionPolicy:
    lifetime = dt.timedelta(seconds=fam.settings.session_seconds)
    return sessions.SessionPolicy(lifetime=lifetime,
                                  idle=min(lifetime, dt.timedelta(minutes=30)))


def is_secure(request: Any) -> bool:
    host = request.getHost()
    return sessions.secure_default(getattr(host, "host", "") or "", tls=request.isSecure())


def client_address(request: Any) -> str:
    peer = request.getClientAddress()
    host: str = getattr(peer, "host", None) or "unknown"
    return host


def cookie_token(request: Any) -> str | None:
    name = sessions.cookie_name(COOKIE, secure=is_secure(request))
    raw = request.getCookie(name.encode())
    if raw is None:
        return None
    try:
        token: str = raw.decode("ascii")
        return token
    except UnicodeDecodeError:
        return None


async def principal(services: Services, request: Any, op: Operation
                    ) -> HolderPrincipal | PublicPrincipal:
    if op.auth == "public":
        return PublicPrincipal()
    if services.families is None:
        raise problems.NotFoundProblem("the family API is not served by this node")
    token = cookie_token(request)
    async with services.pool.acquire() as conn:
        s = await sessions.resume(conn, token, kind=sessions.Kind.HOLDER,
                                  policy=session_policy(services.families), now=services.clock())
    if s is None:
        raise problems.Unauthorized("log in first: no live session (the cookie is missing, "
                                    "expired or ended)")
    if op.mutates:
        supplied = request.getHeader(CSRF_HEADER.encode())
        supplied = supplied.decode("latin-1") if isinstance(supplied, bytes) else supplied
        if not sessions.csrf_ok(s, supplied):
            raise problems.Forbidden(
                f"header {CSRF_HEADER}: missing or not this session's token (login returns it)",
                [problems.field_error("header", CSRF_HEADER, "missing or wrong")])
    # A session was resumed from the token, so it is present.
    return HolderPrincipal(uuid.UUID(s.subject), s, cast(str, token))
