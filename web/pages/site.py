"""The server-rendered page layer shared by the console and the portal: routing, forms, CSRF on
every POST, security headers, templates and the words on them.

A page handler is ``async def handler(page: Page) -> Response``. The layer, in order: finds the
route (404), reads the session through the site's `authenticate` (a page that needs one and has
none is sent to the login page), parses the form with its limits (413), refuses a POST whose
CSRF token is not the session's (403, before the handler runs, so nothing changes), then runs the
handler and writes its answer with the security headers:

- Content-Security-Policy without any script source, nor inline style: the pages work without
  JavaScript (progressive enhancement with nothing to enhance yet), and an injected ``<script>``
  cannot run even if escaping were ever missed. ``frame-ancestors 'none'`` and X-Frame-Options
  DENY against clickjacking; ``form-action 'self'`` so an injected form cannot post elsewhere.
- ``Cache-Control: no-store`` on every page that has a session (nothing personal in a cache).
"""
from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from twisted.internet import defer
from twisted.web import resource, server

from web import sessions
from web.backpressure import Backpressure
from web.errors import WebError
from web.pages.messages import LANGUAGES, choose_language, translator

__all__ = ["Page", "Response", "Route", "PageSite", "FormError", "environment", "html",
           "redirect", "FIELD_CHARACTERS_MAX", "FIELDS_MAX", "SECURITY_HEADERS"]

log = logging.getLogger("ics.pages")

FIELDS_MAX = 64                       # fields in one form
FIELD_CHARACTERS_MAX = 2000           # one ordinary field
UPLOAD_FIELDS = frozenset({"csv", "csv_file"})   # fields that may be as large as the body limit
LANG_COOKIE = "ics_lang"

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class FormError(WebError):
    """The form cannot be read (too large, too many fields, not UTF-8); nothing is changed."""

    def __init__(self, status: int, message_key: str, **values: object) -> None:
        super().__init__(message_key, where="form")
        self.status, self.message_key, self.values = status, message_key, values


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)
    stream: Any = None                  # an async iterator of bytes instead of `body`


def redirect(location: str, *, status: int = 303) -> Response:
    return Response(status=status, headers={"Location": location})


_env: Environment | None = None


def environment() -> Environment:
    """The one Jinja2 environment: templates from web/templates, HTML autoescaped."""
    global _env
    if _env is None:
        _env = Environment(loader=PackageLoader("web", "templates"),
                           autoescape=select_autoescape(["html", "svg"], default=True),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return _env


@dataclass
class Page:
    """One request as a page handler sees it."""
    request: Any
    method: str
    params: dict[str, str]              # from the route pattern
    query: dict[str, str]
    form: dict[str, str]
    lang: str
    t: Callable[..., str]
    session: sessions.Session | None = None
    subject: Any = None                 # what the site's `authenticate` made of the session
    base: str = ""
    token: str | None = None            # the session cookie's token, as presented

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        context.setdefault("page", self)
        context.setdefault("notice", None)
        context.setdefault("problem", None)
        body = environment().get_template(template).render(
            t=self.t, lang=self.lang, csrf=self.session.csrf_token if self.session else "",
            base=self.base, **context)
        return Response(status=status, body=body.encode())

    def url(self, path: str, **query: object) -> str:
        q = {k: v for k, v in query.items() if v not in (None, "")}
        return self.base + path + ("?" + urllib.parse.urlencode(q) if q else "")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str                        # e.g. /accounts/{account}/refund
    handler: Callable[[Page], Awaitable[Response]]
    public: bool = False                # reachable without a session (the login page)

    def match(self, path: str) -> dict[str, str] | None:
        want = [s for s in self.pattern.strip("/").split("/") if s]
        got = [s for s in path.strip("/").split("/") if s]
        if len(want) != len(got):
            return None
        params = {}
        for w, g in zip(want, got):
            if w.startswith("{") and w.endswith("}"):
                params[w[1:-1]] = g          # Twisted has already percent-decoded the path
            elif w != g:
                return None
        return params


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(400, "form.invalid", detail=f"{name}: not UTF-8 text") from None


def _fields(args: dict[bytes, list[bytes]], *, uploads: bool) -> dict[str, str]:
    if len(args) > FIELDS_MAX:
        raise FormError(413, "form.invalid", detail=f"more than {FIELDS_MAX} fields")
    out = {}
    for k, vs in args.items():
        name = _text(k, "field name")[:100]
        value = _text(vs[-1] if vs else b"", name)
        if len(value) > FIELD_CHARACTERS_MAX and not (uploads and name in UPLOAD_FIELDS):
            raise FormError(413, "form.invalid",
                            detail=f"{name}: longer than {FIELD_CHARACTERS_MAX} characters")
        # Form text never carries NUL or other C0 controls but tab and line ends.
        if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", value):
            raise FormError(400, "form.invalid", detail=f"{name}: control characters")
        out[name] = value
    return out


def html(text: str) -> Response:
    return Response(body=text.encode())


class PageSite(resource.Resource):
    """A tree of pages under one prefix (e.g. /console), as one leaf resource."""
    isLeaf = True

    def __init__(self, routes: list[Route], *, base: str, login_path: str,
                 authenticate: Callable[[Any, str | None], Awaitable[tuple[Any, Any]]],
                 cookie_name: str, secure_cookies: bool, body_bytes_max: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted's Resource is untyped
        self.routes, self.base, self.login_path = routes, base, login_path
        self.authenticate = authenticate
        self.cookie_name = sessions.cookie_name(cookie_name, secure=secure_cookies)
        self.secure_cookies = secure_cookies
        self.body_bytes_max = body_bytes_max

    def render(self, request: Any) -> int:
        defer.Deferred.fromFuture(asyncio.ensure_future(self._handle(request)))
        return server.NOT_DONE_YET

    def _language(self, request: Any) -> str:
        explicit = (request.args.get(b"lang") or [b""])[0].decode("ascii", "replace")
        cookie = (request.getCookie(LANG_COOKIE.encode()) or b"").decode("ascii", "replace")
        return choose_language(explicit or cookie or None,
                               (request.getHeader(b"accept-language") or b"").decode("latin-1"))

    async def _handle(self, request: Any) -> None:
        lang = self._language(request)
        t = translator(lang)
        page = None
        try:
            try:
                parts = [s.decode("utf-8") for s in request.postpath]
            except UnicodeDecodeError:
                parts = ["\x00"]
            # Twisted has decoded each segment once; one holding a slash (%2F) would merge with
            # its neighbours in the joined path and reach another route, so it matches none.
            if any("/" in p or "\x00" in p for p in parts):
                parts = ["\x00"]
            path = "/" + "/".join(parts)     # "/\x00" matches no route: answered 404 below
            method = request.method.decode("latin-1")
            if method == "HEAD":
                method = "GET"
            route, params, allowed = None, {}, []
            for r in self.routes:
                p = r.match(path)
                if p is not None:
                    allowed.append(r.method)
                    if r.method == method and route is None:
                        route, params = r, p
            if route is None:
                status = 405 if allowed else 404
                self._write(request, Response(status=status, body=t(
                    "error.not_found").encode(), content_type="text/plain; charset=utf-8"),
                    authenticated=False, lang=None)
                return
            token = (request.getCookie(self.cookie_name.encode()) or b"").decode("latin-1")
            session, subject = await self.authenticate(request, token or None)
            query = _fields({k: v for k, v in request.args.items()}, uploads=False) \
                if method == "GET" else {}
            page = Page(request, method, params, query, {}, lang, t, session, subject, self.base,
                        token or None)
            if session is None and not route.public:
                nxt = urllib.parse.quote(self.base + path, safe="/")
                self._write(request, redirect(f"{self.base}{self.login_path}?next={nxt}"),
                            authenticated=False, lang=None)
                return
            if method == "POST":
                if getattr(request, "body_too_large", False):
                    raise FormError(413, "form.too_large", limit=self.body_bytes_max)
                page.form = _fields(request.args, uploads=True)
                # Every POST carries the session's CSRF token; a public POST (login) has no
                # session yet and relies on SameSite=Strict and the login form's own rules.
                if not route.public and not sessions.csrf_ok(session, page.form.get("csrf")):
                    raise FormError(403, "form.csrf_failed")
            response = await route.handler(page)
            self._write(request, response, authenticated=session is not None,
                        lang=lang if request.args.get(b"lang") else None)
        except FormError as e:
            body = t(e.message_key, **e.values)
            if page is not None:
                try:
                    resp = page.render("error.html", status=e.status, message=body)
                except Exception:
                    log.exception("page %s: the error page failed", request.path)
                    resp = Response(status=e.status, body=body.encode(),
                                    content_type="text/plain; charset=utf-8")
            else:
                resp = Response(status=e.status, body=body.encode(),
                                content_type="text/plain; charset=utf-8")
            self._write(request, resp, authenticated=True, lang=None)
        except Exception:
            log.exception("page %s failed", request.path)
            self._write(request, Response(status=500, body=t("error.internal").encode(),
                                          content_type="text/plain; charset=utf-8"),
                        authenticated=True, lang=None)

    def _write(self, request: Any, response: Response, *, authenticated: bool,
               lang: str | None) -> None:
        if request._disconnected:
            return
        request.setResponseCode(response.status)
        for k, v in SECURITY_HEADERS.items():
            request.setHeader(k.encode(), v.encode())
        request.setHeader(b"content-type", response.content_type.encode())
        if authenticated:
            request.setHeader(b"cache-control", b"no-store")
        for k, v in response.headers.items():
            request.setHeader(k.encode(), v.encode("latin-1"))
        cookies = list(response.cookies)
        if lang in LANGUAGES:
            cookies.append(f"{LANG_COOKIE}={lang}; Path=/; SameSite=Strict; Max-Age=31536000")
        for c in cookies:
            request.responseHeaders.addRawHeader(b"set-cookie", c.encode("latin-1"))
        if response.stream is not None:
            asyncio.ensure_future(self._stream(request, response.stream))
            return
        request.setHeader(b"content-length", str(len(response.body)).encode())
        if request.method != b"HEAD":
            request.write(response.body)
        request.finish()

    async def _stream(self, request: Any, chunks: AsyncIterator[bytes]) -> None:
        # Written with the API's backpressure: a slow browser pauses the export (and with it
        # the database's COPY), so memory stays flat at any size.
        pressure = Backpressure()
        request.registerProducer(pressure, True)
        request.notifyFinish().addErrback(lambda _: pressure.stopProducing())
        complete = False
        try:
            async for chunk in chunks:
                if pressure.stopped or request._disconnected:
                    break
                request.write(chunk)
                if not pressure.resumed.is_set():
                    await pressure.resumed.wait()
            complete = True
        except Exception:
            log.exception("page stream %s failed", request.path)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            if not request._disconnected:
                request.unregisterProducer()
                if complete:
                    request.finish()
                else:
                    request.loseConnection()
