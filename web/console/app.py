"""The operators' console: its pages, each a thin view over the API's own operations.

Every change goes through `gateway.run` (the API handler, its right check, its audit row), so a
control hidden from a role is also refused to it (403), by the same rule. Pages that only read
and have no API operation (a call's itemized record, the deck comparison) read through their own
small modules and check facility scope the same way.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from web import audit, problems, sessions
from web.pages.problem_text import localized
from web.console import cdr_detail, charts, deck_preview, gateway, passwords
from web.dispatch import Services
from web.pages.site import Page, PageSite, Response, Route, redirect
from web.roles import Principal, Role, Right, may

__all__ = ["ConsoleSettings", "console_site", "COOKIE_NAME"]

log = logging.getLogger("ics.console")

COOKIE_NAME = "ics_console"
BASE = "/console"
REPORT_DAYS_DEFAULT = 14
DECK_LINES_SHOWN_MAX = 2000      # the deck listed under its errors, at most this many lines


class ConsoleSettings:
    def __init__(self, *, secure_cookies: bool, policy: sessions.SessionPolicy | None = None,
                 body_bytes_max: int = 1 << 20) -> None:
        self.secure_cookies = secure_cookies
        self.policy = policy or sessions.SessionPolicy()
        self.body_bytes_max = body_bytes_max


class Console:
    def __init__(self, services: Services, settings: ConsoleSettings) -> None:
        self.services, self.settings = services, settings

    def now(self) -> dt.datetime:
        return self.services.clock()

    # -- sessions ------------------------------------------------------------------------

    async def authenticate(self, request: Any, token: str | None
                           ) -> tuple[sessions.Session | None, Principal | None]:
        if not token:
            return None, None
        async with self.services.pool.acquire() as conn:
            s = await sessions.resume(conn, token, kind=sessions.Kind.OPERATOR,
                                      policy=self.settings.policy, now=self.now())
            if s is None:
                return None, None
            r = await conn.fetchrow("SELECT role, facilities FROM operator WHERE id = $1",
                                    s.subject)
        if r is None:
            return None, None
        role = Role(r["role"])
        return s, Principal(s.subject, role, frozenset(r["facilities"])
                            if role is Role.FACILITY_STAFF else None)

    def _render(self, page: Page, template: str, *, status: int = 200, **ctx: Any) -> Response:
        principal: Principal | None = page.subject
        ctx.setdefault("notice", None)
        ctx.setdefault("problem", None)
        if ctx["problem"] is not None:        # in the page's language, by the refusal's code
            ctx["problem"] = localized(ctx["problem"], page.lang)
        return page.render(template, status=status, principal=principal,
                           can=lambda op: principal is not None and gateway.allowed(principal, op),
                           has=lambda right: principal is not None and may(principal.role,
                                                                            Right(right)),
                           **ctx)

    def _problem_page(self, page: Page, p: problems.ApiProblem, template: str | None = None,
                      **ctx: Any) -> Response:
        return self._render(page, template or "console/error.html", status=p.status,
                            problem=p, **ctx)

    async def run(self, page: Page, op: str, **kw: Any) -> Any:
        return await gateway.run(self.services, page.subject, op, **kw)

    # -- login -----------------------------------------------------------------------------

    def _next(self, target: str | None) -> str:
        # Only a path on this console: never another site (no open redirect).
        if target and target.startswith(BASE + "/") and "//" not in target and "\\" not in target:
            return target
        return BASE + "/"

    async def login_form(self, page: Page) -> Response:
        message = {"expired": "login.expired", "out": "login.logged_out"}.get(
            page.query.get("m", ""))
        return self._render(page, "console/login.html", message=message and page.t(message),
                            next=self._next(page.query.get("next")), operator="")

    async def login(self, page: Page) -> Response:
        operator_id = page.form.get("operator", "").strip()
        password = page.form.get("password", "")
        source = page.request.getClientAddress().host or "?"
        now = self.now()
        async with self.services.pool.acquire() as conn:
            outcome = await passwords.check_login(conn, operator_id, password, source=source,
                                                  now=now)
            if outcome.operator_id is None:
                text = page.t(outcome.refusal, minutes=-(-(outcome.retry_after or 0) // 60))
                resp = self._render(page, "console/login.html",
                                    status=429 if outcome.retry_after else 401, message=text,
                                    next=self._next(page.form.get("next")),
                                    operator=operator_id)
                if outcome.retry_after:
                    resp.headers["Retry-After"] = str(outcome.retry_after)
                return resp
            old = page.token
            await sessions.purge_ended(conn, now=now)      # logins are rare: tidy up here
            async with conn.transaction():
                opened = await sessions.open_session(
                    conn, sessions.Kind.OPERATOR, outcome.operator_id,
                    policy=self.settings.policy, now=now, replacing=old or None)
                await audit.record(conn, actor=outcome.operator_id, via="http",
                                   action="operator.login", target=outcome.operator_id,
                                   after={"session": str(opened.session.id), "source": source})
        resp = redirect(self._next(page.form.get("next")))
        resp.cookies.append(sessions.cookie_header(COOKIE_NAME, opened.token,
                                                   secure=self.settings.secure_cookies))
        return resp

    async def logout(self, page: Page) -> Response:
        async with self.services.pool.acquire() as conn:
            await sessions.revoke(conn, page.token, now=self.now())
        resp = redirect(f"{BASE}/login?m=out")
        resp.cookies.append(sessions.clear_cookie_header(COOKIE_NAME,
                                                         secure=self.settings.secure_cookies))
        return resp

    async def home(self, page: Page) -> Response:
        return self._render(page, "console/home.html")

    # -- rate decks ------------------------------------------------------------------------

    async def _versions(self, page: Page, facility: str | None) -> list[dict[str, Any]]:
        versions: list[dict[str, Any]] = (await self.run(
            page, "list_tariff_versions", query={"facility": facility}))["versions"]
        return versions

    async def _facilities(self, page: Page) -> list[dict[str, Any]]:
        if not may(page.subject.role, Right.DIRECTORY_READ):
            return []
        facilities: list[dict[str, Any]] = (await self.run(page, "list_facilities"))["facilities"]
        return facilities

    async def tariffs(self, page: Page, *, notice: str | None = None,
                      problem: problems.ApiProblem | None = None,
                      status: int = 200) -> Response:
        facility = page.query.get("facility") or page.form.get("facility") or None
        try:
            versions = await self._versions(page, facility)
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        return self._render(page, "console/tariffs.html", status=status, facility=facility,
                            facilities=await self._facilities(page), versions=versions,
                            notice=notice, problem=problem, now=self.now())

    def _deck_text(self, page: Page) -> str:
        return page.form.get("csv_file") or page.form.get("csv") or ""

    def _effective(self, page: Page) -> str:
        raw = page.form.get("effective_from", "").strip()
        if not raw:
            return self.now().replace(microsecond=0).isoformat()
        # <input type=datetime-local> sends 2026-03-01T10:00 with no zone: the form says UTC.
        if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?", raw):
            raw += "+00:00"
        return raw

    async def check_deck(self, page: Page) -> Response:
        facility = page.form.get("facility") or None
        text = self._deck_text(page)
        effective = self._effective(page)
        try:
            report = await self.run(page, "check_deck", body={
                "facility": facility, "csv": text, "effective_from": effective})
        except problems.ApiProblem as p:
            return await self.tariffs(page, problem=p, status=p.status)
        preview = None
        if not report["errors"]:
            at = dt.datetime.fromisoformat(effective)
            async with self.services.pool.acquire() as conn:
                preview = await deck_preview.preview(conn, text.replace("\r\n", "\n"),
                                                     facility_id=facility, effective_from=at)
        lines = text.replace("\r\n", "\n").split("\n")
        by_line: dict[int, list[dict[str, Any]]] = {}
        for e in report["errors"]:
            if e["line"]:
                by_line.setdefault(e["line"], []).append(e)
        return self._render(page, "console/deck_check.html", facility=facility, report=report,
                            preview=preview, csv=text, effective_from=effective,
                            numbered=[(i + 1, ln, by_line.get(i + 1, []))
                                      for i, ln in enumerate(lines[:DECK_LINES_SHOWN_MAX])])

    async def activate_deck(self, page: Page) -> Response:
        facility = page.form.get("facility") or None
        try:
            v = await self.run(page, "import_tariff", body={
                "facility": facility, "csv": self._deck_text(page),
                "effective_from": self._effective(page),
                "accept_violations": page.form.get("accept_violations") == "yes"})
        except problems.ApiProblem as p:
            return await self.tariffs(page, problem=p, status=p.status)
        return await self.tariffs(page, notice=page.t(
            "console.tariffs.activated", version=v["number"], at=v["effective_from"]))

    async def export_deck(self, page: Page) -> Response:
        try:
            stream = await self.run(page, "export_tariff", query={
                "facility": page.query.get("facility"), "version": page.query.get("version")})
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        return Response(content_type=stream.media_type, stream=stream.chunks, headers={
            "Content-Disposition": f'attachment; filename="{stream.filename}"'})

    # -- CDRs --------------------------------------------------------------------------------

    _CDR_FILTERS = ("facility", "inmate", "number", "since", "until", "disposition",
                    "jurisdiction")

    def _cdr_query(self, page: Page) -> dict[str, str]:
        q = {k: page.query.get(k, "").strip() for k in self._CDR_FILTERS}
        for k in ("since", "until"):
            if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?", q[k]):
                q[k] += "+00:00"
        return {k: v for k, v in q.items() if v}

    async def cdrs(self, page: Page) -> Response:
        from switch.wire.protocol import DISPOSITIONS
        q = self._cdr_query(page)
        listing: dict[str, Any] = {"cdrs": [], "next_cursor": None}
        problem: problems.ApiProblem | None = None
        try:
            listing = await self.run(page, "list_cdrs", query={
                **q, "cursor": page.query.get("cursor"), "limit": "50"})
        except problems.ApiProblem as p:
            problem = p
        return self._render(page, "console/cdrs.html", filters={
            k: page.query.get(k, "") for k in self._CDR_FILTERS}, listing=listing,
            problem=problem, dispositions=DISPOSITIONS,
            export_url=page.url("/cdrs/export", **q),
            next_url=listing["next_cursor"] and page.url("/cdrs", **{
                **{k: page.query.get(k) for k in self._CDR_FILTERS},
                "cursor": listing["next_cursor"]}))

    async def export_cdrs(self, page: Page) -> Response:
        try:
            stream = await self.run(page, "export_cdrs", query=self._cdr_query(page))
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        return Response(content_type=stream.media_type, stream=stream.chunks, headers={
            "Content-Disposition": f'attachment; filename="{stream.filename or "cdrs.csv"}"'})

    async def _cdr_row(self, page: Page) -> tuple[dict[str, Any], cdr_detail.CallRecord]:
        if not may(page.subject.role, Right.CDRS_READ):
            raise problems.Forbidden("your role cannot read CDRs")
        try:
            call_id = uuid.UUID(page.params["call_id"])
        except ValueError:
            raise problems.NotFoundProblem("no such call") from None
        async with self.services.pool.acquire() as conn:
            row = await cdr_detail.load(conn, call_id)
            if row is None or not page.subject.sees(row["facility_id"]):
                raise problems.NotFoundProblem(f"no call {call_id}")
            return row, await cdr_detail.record(conn, row, self.services.data_dir)

    async def cdr(self, page: Page) -> Response:
        try:
            _, rec = await self._cdr_row(page)
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        from ledger.money import format_amount as money
        return self._render(page, "console/cdr.html", rec=rec, money=money)

    async def recording(self, page: Page) -> Response:
        try:
            row, _ = await self._cdr_row(page)
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        path = cdr_detail.recording_path(row, self.services.data_dir)
        if path is None:
            return self._problem_page(page, problems.NotFoundProblem("no recording"))

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while block := f.read(65536):
                    yield block
        return Response(content_type="audio/wav", stream=chunks(), headers={
            "Content-Disposition": f'attachment; filename="{row["call_id"]}.wav"'})

    # -- accounts ----------------------------------------------------------------------------

    async def accounts(self, page: Page, *, account: str | None = None,
                       notice: str | None = None, problem: problems.ApiProblem | None = None,
                       status: int = 200) -> Response:
        ref = account or page.query.get("account", "").strip() or None
        acct = statement = None
        pending = []
        try:
            if ref:
                acct = await self.run(page, "get_account", path={"account": ref})
                statement = await self.run(page, "account_statement", path={"account": ref},
                                           query={"limit": "100"})
            if gateway.allowed(page.subject, "list_adjustments"):
                pending = (await self.run(page, "list_adjustments",
                                          query={"state": "pending"}))["adjustments"]
        except problems.ApiProblem as p:
            problem, status = problem or p, status if problem else p.status
        deposits = []
        if acct is not None:
            async with self.services.pool.acquire() as conn:
                deposits = [dict(r) for r in await conn.fetch(
                    "SELECT f.ref, f.amount, r.amount AS refunded FROM funding_credit f "
                    "LEFT JOIN refund r ON r.funding_ref = f.ref WHERE f.account = $1 "
                    "ORDER BY f.ref", acct["id"])]
        from ledger.money import format_amount as money
        return self._render(page, "console/accounts.html", status=status, ref=ref or "",
                            account=acct, statement=statement, pending=pending,
                            deposits=deposits, money=money, notice=notice, problem=problem,
                            adjust_ref=f"console-{uuid.uuid4()}")

    async def refund(self, page: Page) -> Response:
        account = page.params["account"]
        try:
            r = await self.run(page, "refund_account", path={"account": account}, body={
                "funding_ref": page.form.get("funding_ref", ""),
                "amount": page.form.get("amount") or None})
        except problems.ApiProblem as p:
            return await self.accounts(page, account=account, problem=p, status=p.status)
        return await self.accounts(page, account=account, notice=page.t(
            "console.accounts.refunded", amount=r["amount"], ref=r["funding_ref"]))

    async def adjust(self, page: Page) -> Response:
        account = page.params["account"]
        try:
            a = await self.run(page, "adjust_account", path={"account": account}, body={
                "amount": page.form.get("amount", ""), "reason": page.form.get("reason", ""),
                "ref": page.form.get("ref", "")})
        except problems.ApiProblem as p:
            return await self.accounts(page, account=account, problem=p, status=p.status)
        return await self.accounts(page, account=account, notice=page.t(
            "console.accounts.adjusted", state=a["state"], amount=a["amount"]))

    async def decide(self, page: Page) -> Response:
        try:
            a = await self.run(page, "decide_adjustment", path={
                "adjustment": page.params["adjustment"]}, body={
                "decision": page.form.get("decision", "")})
        except problems.ApiProblem as p:
            return await self.accounts(page, problem=p, status=p.status)
        return await self.accounts(page, notice=page.t("console.accounts.decided",
                                                       state=a["state"]))

    # -- facilities --------------------------------------------------------------------------

    async def facilities(self, page: Page) -> Response:
        try:
            fs = (await self.run(page, "list_facilities"))["facilities"]
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        return self._render(page, "console/facilities.html", facilities=fs)

    async def facility(self, page: Page, *, facility: str | None = None,
                       notice: str | None = None, problem: problems.ApiProblem | None = None,
                       status: int = 200) -> Response:
        fid = facility or page.params["facility"]
        try:
            f = await self.run(page, "get_facility", path={"facility": fid})
            inmates = (await self.run(page, "list_inmates", query={"facility": fid}))["inmates"]
            waiting = []
            for i in inmates:
                for c in (await self.run(page, "list_contacts",
                                         path={"inmate": i["id"]}))["contacts"]:
                    if c["status"] == "requested":
                        waiting.append({**c, "inmate_name": i["name"]})
            blocks = [b for b in (await self.run(page, "list_blocks"))["blocks"]
                      if b["scope"] == "global" or b["facility"] == fid
                      or b["inmate"] in {i["id"] for i in inmates}]
            windows = (await self.run(page, "list_windows", path={"facility": fid}))["windows"]
            kiosks = (await self.run(page, "list_kiosks", query={"facility": fid}))["kiosks"]
            live = None
            if gateway.allowed(page.subject, "list_calls"):
                live = (await self.run(page, "list_calls", query={"facility": fid}))["calls"]
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        return self._render(page, "console/facility.html", status=status, facility=f,
                            inmates=inmates, waiting=waiting, blocks=blocks, windows=windows,
                            kiosks=kiosks, live=live, notice=notice, problem=problem,
                            switch=self.services.core is not None)

    async def contact_status(self, page: Page) -> Response:
        inmate, number = page.params["inmate"], page.params["number"]
        facility = page.form.get("facility", "")
        try:
            c = await self.run(page, "set_contact_status", path={
                "inmate": inmate, "number": number}, body={"status": page.form.get("status")})
        except problems.ApiProblem as p:
            if not facility:
                return self._problem_page(page, p)
            return await self.facility(page, facility=facility, problem=p, status=p.status)
        notice = page.t("console.facilities.contact_done", number=c["number"],
                        inmate=c["inmate"], status=c["status"])
        if not facility:
            return self._render(page, "console/error.html", notice=notice)
        return await self.facility(page, facility=facility, notice=notice)

    async def terminate(self, page: Page) -> Response:
        facility = page.form.get("facility", "")
        try:
            r = await self.run(page, "terminate_call", path={"call": page.params["call"]},
                               body={"reason": "operator"})
        except problems.ApiProblem as p:
            if not facility:
                return self._problem_page(page, p)
            return await self.facility(page, facility=facility, problem=p, status=p.status)
        notice = page.t("console.facilities.terminated", call=r["call_id"])
        if not facility:
            return self._render(page, "console/error.html", notice=notice)
        return await self.facility(page, facility=facility, notice=notice)

    # -- reports -----------------------------------------------------------------------------

    async def reports(self, page: Page) -> Response:
        now = self.now()
        until_day = _day(page.query.get("until")) or (now.date() + dt.timedelta(days=1))
        since_day = _day(page.query.get("since")) or (until_day -
                                                      dt.timedelta(days=REPORT_DAYS_DEFAULT))
        facility = page.query.get("facility") or None
        q = {"since": f"{since_day.isoformat()}T00:00:00+00:00",
             "until": f"{until_day.isoformat()}T00:00:00+00:00", "facility": facility}
        try:
            by_day = await self.run(page, "usage_report",
                                    query={**q, "group_by": "facility,day"})
            by_jur = await self.run(page, "usage_report",
                                    query={**q, "group_by": "facility,jurisdiction"})
            by_day_jur = await self.run(page, "usage_report",
                                        query={**q, "group_by": "day,jurisdiction"})
            fcc = await self.run(page, "fcc_report", query={"facility": facility})
        except problems.ApiProblem as p:
            return self._problem_page(page, p)
        days = []
        d = since_day
        while d < until_day:
            days.append(d.isoformat())
            d += dt.timedelta(days=1)

        def series(rows: list[dict[str, Any]], key: str, measure: str) -> list[charts.Series]:
            out: dict[str, dict[str, Decimal]] = {}
            for r in rows:
                out.setdefault(r[key] or "?", {})[r["day"]] = Decimal(r[measure])
            return [charts.Series(k, v) for k, v in sorted(out.items())]
        minutes_chart = charts.stacked_bars(page.t("console.reports.minutes"), days,
                                            series(by_day["rows"], "facility", "talk_minutes"))
        revenue_chart = charts.stacked_bars(page.t("console.reports.revenue"), days,
                                            series(by_day_jur["rows"], "jurisdiction",
                                                   "revenue"))
        return self._render(page, "console/reports.html", since=since_day.isoformat(),
                            until=until_day.isoformat(), facility=facility,
                            facilities=await self._facilities(page), by_day=by_day,
                            by_jur=by_jur, fcc=fcc, minutes_chart=Markup(minutes_chart),
                            revenue_chart=Markup(revenue_chart))


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def console_site(services: Services, settings: ConsoleSettings) -> PageSite:
    c = Console(services, settings)
    routes = [
        Route("GET", "/login", c.login_form, public=True),
        Route("POST", "/login", c.login, public=True),
        Route("POST", "/logout", c.logout),
        Route("GET", "/", c.home),
        Route("GET", "/tariffs", c.tariffs),
        Route("POST", "/tariffs/check", c.check_deck),
        Route("POST", "/tariffs/activate", c.activate_deck),
        Route("GET", "/tariffs/export", c.export_deck),
        Route("GET", "/cdrs", c.cdrs),
        Route("GET", "/cdrs/export", c.export_cdrs),
        Route("GET", "/cdrs/{call_id}", c.cdr),
        Route("GET", "/cdrs/{call_id}/recording", c.recording),
        Route("GET", "/accounts", c.accounts),
        Route("POST", "/accounts/{account}/refund", c.refund),
        Route("POST", "/accounts/{account}/adjust", c.adjust),
        Route("POST", "/adjustments/{adjustment}/decision", c.decide),
        Route("GET", "/facilities", c.facilities),
        Route("GET", "/facilities/{facility}", c.facility),
        Route("POST", "/inmates/{inmate}/contacts/{number}/status", c.contact_status),
        Route("POST", "/calls/{call}/terminate", c.terminate),
        Route("GET", "/reports", c.reports),
    ]
    site = PageSite(routes, base=BASE, login_path="/login", authenticate=c.authenticate,
                    cookie_name=COOKIE_NAME, secure_cookies=settings.secure_cookies,
                    body_bytes_max=settings.body_bytes_max)
    return site
