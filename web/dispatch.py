"""The API's one Twisted resource: authenticate, authorize, validate, run the handler, answer.

Order of refusals, each a problem document: 401 (no valid token), 404/405 (no such operation),
403 (the role lacks the right), 413 (body too large), 415 (not JSON), 422 (a field is invalid,
named). A handler runs only with a fully validated request, so a bad request changes nothing.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import asyncpg
from pydantic import BaseModel, ValidationError
from twisted.internet import defer
from twisted.web import resource, server

import ledger
from switch.provisioning import directory
from web import audit, problems
from web.backpressure import Backpressure
from web.operations import Operation, Registry, Serialized, Stream
from web.operators import authenticate
from web.roles import Principal, may
from web.settings import ApiSettings

__all__ = ["ApiSettings", "Services", "Call", "ApiResource"]

log = logging.getLogger("ics.api")

_UNAVAILABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
                asyncio.TimeoutError, asyncpg.exceptions.CannotConnectNowError)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Services:
    """What handlers may use. `core` and `workers` are absent when no switch runs."""
    pool: asyncpg.Pool
    settings: ApiSettings = field(default_factory=ApiSettings)
    core: Any = None
    workers: Any = None
    links: dict = field(default_factory=dict)     # worker id -> its AMP link (Terminate)
    clock: Callable[[], dt.datetime] = _utc_now
    data_dir: str = "var"
    cache: dict = field(default_factory=dict)     # per-node values read once (cursor key)
    families: Any = None                          # web.family.FamilyServices (the family API)
    currency: str = "USD"                         # the ledger's (ledger.currency)


@dataclass
class Call:
    """One validated request, as a handler sees it."""
    services: Services
    principal: Principal
    path: Any
    query: Any
    body: Any
    http: Any = None                 # the twisted request (cookies, headers, the raw body)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.services.pool

    def facilities(self, requested: str | None) -> list[str] | None:
        """The facilities this request may see: None for all; refuses one outside the scope."""
        scope = self.principal.facilities
        if scope is None:
            return None if requested is None else [requested]
        if requested is not None:
            if requested not in scope:
                raise problems.Forbidden(f"facility {requested!r} is outside your facilities")
            return [requested]
        return sorted(scope)

    def require_facility(self, facility_id: str | None) -> None:
        if not self.principal.sees(facility_id):
            raise problems.Forbidden(f"facility {facility_id!r} is outside your facilities")

    @asynccontextmanager
    async def change(self):
        """A connection in a transaction: the change and its audit rows commit together."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn

    async def audit(self, conn, action: str, target: str, before=None, after=None) -> None:
        await audit.record(conn, actor=self.principal.actor, via="http", action=action,
                           target=target, before=before, after=after)


# What no segment may hold once decoded: a slash or backslash (%2F, %5C), a control character.
_UNSAFE_IN_SEGMENT = re.compile(r"[/\\\x00-\x1f\x7f]")


def _segments(request) -> list[str]:
    """The path below /api/v1 as text segments, each percent-decoded exactly once.

    Twisted has already percent-decoded every segment of `request.postpath` (after splitting on
    "/"); decoding again would turn "%252F" into "/" and "%2500" into NUL, letting a client smuggle
    what a single decoding refuses. A segment that decodes to a slash, a backslash, a control
    character, "." or ".." names no resource here: it is refused as not found, never passed on.
    """
    out = []
    for raw in request.postpath:
        try:
            segment = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise problems.NotFoundProblem("the path is not valid UTF-8") from None
        if segment in (".", "..") or _UNSAFE_IN_SEGMENT.search(segment):
            raise problems.NotFoundProblem(
                f"path segment {len(out) + 1} ({segment!r}) holds an encoded slash, a control "
                "character or a dot segment; no operation is addressed that way")
        out.append(segment)
    return out


def _query(request, op: Operation) -> BaseModel | None:
    raw: dict[str, str] = {}
    for k, vs in (request.args or {}).items():
        try:
            key = k.decode("utf-8")
            values = [v.decode("utf-8") for v in vs]
        except UnicodeDecodeError:
            raise problems.invalid("query", repr(k)[2:-1], "not valid UTF-8") from None
        if len(values) > 1:
            raise problems.invalid("query", key, "given more than once")
        raw[key] = values[0]
    if op.query_model is None:
        if raw:
            raise problems.invalid("query", next(iter(raw)), "this operation takes no query")
        return None
    try:
        return op.query_model.model_validate(raw)
    except ValidationError as e:
        raise problems.from_validation("query", e) from None


def _body(request, op: Operation) -> BaseModel | None:
    data = request.content.read() if request.content is not None else b""
    if op.body_model is None:
        if data.strip():
            raise problems.invalid("body", "(whole)", "this operation takes no body")
        return None
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        raise problems.UnsupportedMedia("send the body as application/json")
    try:
        # JSON may escape a lone UTF-16 surrogate ("\ud992"): no text can hold one, so such a
        # body is refused here rather than failing later in the database driver.
        json.dumps(json.loads(data), ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError) as e:
        raise problems.invalid("body", "(whole)", f"not valid JSON text: {e}") from None
    try:
        # Strict: JSON's own types only (false is not 0, "5" is not 5); text formats such as
        # times and UUIDs still parse from strings, as JSON has no other way to carry them.
        return op.body_model.model_validate_json(data, strict=True)
    except ValidationError as e:
        raise problems.from_validation("body", e) from None


class ApiResource(resource.Resource):
    isLeaf = True

    def __init__(self, registry: Registry, services: Services, *, document: Callable[[], dict],
                 observe: Callable[[str, int, float], None] | None = None) -> None:
        super().__init__()
        self.registry, self.services = registry, services
        self._document = document
        self._document_bytes: bytes | None = None
        self.observe = observe

    def render(self, request):
        defer.Deferred.fromFuture(asyncio.ensure_future(self._handle(request)))
        return server.NOT_DONE_YET

    async def _principal(self, request) -> Principal:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise problems.Unauthorized("send an API token: Authorization: Bearer <token>",
                                        headers={"WWW-Authenticate": "Bearer"})
        async with self.services.pool.acquire() as conn:
            principal = await authenticate(conn, token.strip())
        if principal is None:
            raise problems.Unauthorized("the token is unknown or revoked",
                                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return principal

    async def _family_principal(self, request, method: str):
        """The holder (or the public) behind a family operation; None for any other request."""
        try:
            op, _, _ = self.registry.resolve(method, _segments(request))
        except problems.ApiProblem:
            return None
        if op is None or op.auth == "operator":
            return None
        from web import family_auth
        return await family_auth.principal(self.services, request, op)

    async def _handle(self, request) -> None:
        started = time.perf_counter()
        name, status = "unmatched", 500
        instance = request.path.decode("latin-1")
        try:
            method = request.method.decode("latin-1")
            # The family API's operations authenticate by session (or not at all); everything
            # else, and every unknown path, by an operator's token first, as before.
            principal = await self._family_principal(request, method)
            if principal is None:
                principal = await self._principal(request)
            segments = _segments(request)
            if segments == ["openapi.json"] and method == "GET":
                name, status = "openapi", 200
                if self._document_bytes is None:
                    self._document_bytes = json.dumps(self._document()).encode()
                self._send(request, 200, "application/json", self._document_bytes)
                return
            op, params, allowed = self.registry.resolve(method, segments)
            if op is None:
                if allowed:
                    raise problems.MethodNotAllowed(
                        f"{method} is not allowed here; allowed: {', '.join(sorted(allowed))}",
                        headers={"Allow": ", ".join(sorted(allowed))})
                raise problems.NotFoundProblem(f"no operation at {instance}")
            name = op.operation_id
            if op.auth != "operator" and not getattr(principal, "family", False):
                raise problems.NotFoundProblem(f"no operation at {instance}")
            if op.auth == "operator" and not may(principal.role, op.right):
                raise problems.Forbidden(f"role {principal.role.value} lacks the right "
                                         f"{op.right.value} that {op.operation_id} needs")
            if getattr(request, "body_too_large", False):
                raise problems.TooLarge(f"the body is over {request.body_bytes_max} bytes")
            path = None
            if op.path_model is not None:
                try:
                    path = op.path_model.model_validate(params)
                except ValidationError as e:
                    raise problems.from_validation("path", e) from None
            call = Call(self.services, principal, path, _query(request, op), _body(request, op),
                        request)
            result = await op.handler(call)
            status = op.status
            if isinstance(result, Stream):
                await self._stream(request, status, result)
            elif isinstance(result, Serialized):
                self._send(request, status, "application/json", result.to_json())
            else:
                self._send(request, status, "application/json",
                           result.model_dump_json().encode() if result is not None else b"")
        except problems.ApiProblem as p:
            status = p.status
            self._problem(request, p, instance)
        except (asyncpg.UniqueViolationError, ledger.ConcurrentSubmission) as e:
            status = 409        # a concurrent request did the same thing first; a retry answers
            log.info("api %s: concurrent change: %r", name, e)
            self._problem(request, problems.Conflict("a concurrent request changed the same "
                                                     "thing; retry to see its outcome"), instance)
        except directory.Invalid as e:
            status = 422
            self._problem(request, problems.invalid("body", "(whole)", str(e)), instance)
        except directory.NotFound as e:
            status = 404
            self._problem(request, problems.NotFoundProblem(str(e)), instance)
        except _UNAVAILABLE as e:
            status = 503
            log.warning("api %s: database unavailable: %r", name, e)
            self._problem(request, problems.Unavailable("the database is unavailable; retry"),
                          instance)
        except Exception:
            status = 500
            log.exception("api %s failed", name)
            self._problem(request, problems.ApiProblem("an internal error; it was logged"),
                          instance)
        finally:
            if self.observe is not None:
                self.observe(name, status, time.perf_counter() - started)

    def _send(self, request, status: int, media_type: str, body: bytes) -> None:
        if request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", media_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", str(len(body)).encode())
        request.write(body)
        request.finish()

    def _problem(self, request, p: problems.ApiProblem, instance: str) -> None:
        if request.startedWriting:          # a stream failed midway: all we can do is cut it
            if not request._disconnected:
                request.loseConnection()
            return
        for k, v in p.headers.items():
            request.setHeader(k.encode(), v.encode("latin-1"))
        self._send(request, p.status, problems.PROBLEM_MEDIA_TYPE,
                   p.problem(instance).model_dump_json().encode())

    async def _stream(self, request, status: int, stream: Stream) -> None:
        pressure = Backpressure()
        request.setResponseCode(status)
        request.setHeader(b"content-type", stream.media_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        if stream.filename:
            request.setHeader(b"content-disposition",
                              f'attachment; filename="{stream.filename}"'.encode())
        request.registerProducer(pressure, True)
        finished = request.notifyFinish()
        finished.addErrback(lambda _: pressure.stopProducing())
        complete = False
        try:
            async for chunk in stream.chunks:
                if pressure.stopped or request._disconnected:
                    break
                request.write(chunk)
                if not pressure.resumed.is_set():
                    await pressure.resumed.wait()
            complete = True
        finally:
            aclose = getattr(stream.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            if not request._disconnected:
                request.unregisterProducer()
                if complete:
                    request.finish()
                else:
                    # Never end a failed stream cleanly: without the last chunk the client
                    # knows the body is incomplete, instead of taking a truncated file as whole.
                    request.loseConnection()
