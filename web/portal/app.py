"""The families' portal: its pages, each a thin view over the family API's own operations.

Every change goes through `gateway.run` (the family handler, its validation, its audit row), so
the portal and the API cannot disagree about rules. The session is the family API's own (the same
cookie and store): a holder logged in here is logged in there. Forms that move money carry an
idempotency key made when the form was drawn, so a resent form or a double click pays once; after
a change the browser is sent on with a 303 (a reload does not repeat it).
"""
from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from web import problems, sessions
from web.dispatch import Services
from web.family_auth import HolderPrincipal, PublicPrincipal, cookie_token, session_policy
from web.pages.problem_text import localized
from web.pages.site import Page, PageSite, Response, Route, redirect
from web.portal import gateway

__all__ = ["portal_site", "BASE", "NOTICES"]

log = logging.getLogger("ics.portal")

BASE = "/portal"
CARD_TOKENS = ("tok_approve", "tok_decline", "tok_error", "tok_timeout")   # the test provider's
# The notices a redirect may name (?m=...): a fixed list, so no text is reflected from the URL.
NOTICES = {"registered": "portal.notice.registered", "verified": "portal.notice.verified",
           "reset": "portal.notice.reset", "out": "portal.notice.logged_out",
           "expired": "portal.notice.expired", "number": "portal.notice.number_added",
           "contact": "portal.notice.contact_requested", "blocked": "portal.notice.blocked",
           "unblocked": "portal.notice.unblocked", "mailed": "portal.notice.reset_mailed",
           "password": "portal.notice.password_changed",
           "proven": "portal.notice.proven"}
INMATE_ID = re.compile(r"[0-9]{3,15}")      # the API's own rule for an inmate id


class Portal:
    def __init__(self, services: Services, secure_cookies: bool) -> None:
        self.services, self.secure_cookies = services, secure_cookies

    # -- sessions ----------------------------------------------------------------------------

    async def authenticate(self, request: Any, _token: str | None
                           ) -> tuple[sessions.Session | None, HolderPrincipal | None]:
        # The family API's cookie, read by the API's own rule (its name depends on the request).
        token = cookie_token(request)
        if not token:
            return None, None
        async with self.services.pool.acquire() as conn:
            s = await sessions.resume(conn, token, kind=sessions.Kind.HOLDER,
                                      policy=session_policy(self.services.families),
                                      now=self.services.clock())
        if s is None:
            return None, None
        return s, HolderPrincipal(uuid.UUID(s.subject), s, token)

    async def run(self, page: Page, op: str, **kw: Any) -> Any:
        who = page.subject if page.subject is not None else PublicPrincipal()
        return await gateway.run(self.services, who, op, http=page.request, **kw)

    def render(self, page: Page, template: str, *, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("notice", None)
        ctx.setdefault("problem", None)
        key = NOTICES.get(page.query.get("m", ""))
        if key and not ctx["notice"]:
            ctx["notice"] = page.t(key)
        # The portal draws refusals itself (in the page's language, fields marked at the form).
        problem = ctx.pop("problem")
        ctx["failure"] = localized(problem, page.lang) if problem is not None else None

        def field_label(name: str) -> str:
            text = page.t(f"portal.field.{name}")
            return name if text == f"portal.field.{name}" else text
        return page.render(template, status=status, holder=page.subject, problem=None,
                           field_label=field_label, app_name_key="portal.app.name", **ctx)

    def failed(self, page: Page, p: problems.ApiProblem, template: str, **ctx: Any) -> Response:
        return self.render(page, template, status=p.status, problem=p, **ctx)

    # -- account: register, verify, log in and out, reset -------------------------------------

    async def register_form(self, page: Page) -> Response:
        return self.render(page, "portal/register.html", email="")

    async def register(self, page: Page) -> Response:
        email = page.form.get("email", "")
        if page.form.get("password", "") != page.form.get("password_again", ""):
            p = problems.invalid("body", "password_again", "the two passwords differ",
                                 "passwords_differ")
            return self.failed(page, p, "portal/register.html", email=email)
        try:
            await self.run(page, "family_register", body={
                "email": email, "password": page.form.get("password", ""),
                "language": page.lang})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/register.html", email=email)
        return redirect(f"{BASE}/verify?m=registered")

    async def verify_form(self, page: Page) -> Response:
        # The mailed code (or a link carrying it) fills the form; confirming is a POST.
        token = page.query.get("token", "")
        return self.render(page, "portal/verify.html",
                           token=token if re.fullmatch(r"[A-Za-z0-9_-]{1,100}", token) else "")

    async def verify(self, page: Page) -> Response:
        token = page.form.get("token", "").strip()
        try:
            await self.run(page, "family_verify", body={"token": token})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/verify.html", token="")
        return redirect(f"{BASE}/login?m=verified")

    def _next(self, target: str | None) -> str:
        # Only a path on this portal: never another site (no open redirect).
        if target and target.startswith(BASE + "/") and "//" not in target and "\\" not in target:
            return target
        return BASE + "/"

    async def login_form(self, page: Page) -> Response:
        return self.render(page, "portal/login.html", email="",
                           next=self._next(page.query.get("next")))

    async def login(self, page: Page) -> Response:
        email = page.form.get("email", "")
        try:
            # The API's login: its throttling, its audit row, its session cookie on this reply.
            await self.run(page, "family_login", body={
                "email": email, "password": page.form.get("password", "")})
        except problems.ApiProblem as p:
            resp = self.failed(page, p, "portal/login.html", email=email,
                               next=self._next(page.form.get("next")))
            resp.headers.update(p.headers)
            return resp
        return redirect(self._next(page.form.get("next")))

    async def logout(self, page: Page) -> Response:
        await self.run(page, "family_logout")
        return redirect(f"{BASE}/login?m=out")

    async def reset_form(self, page: Page) -> Response:
        return self.render(page, "portal/reset.html", email="")

    async def reset_request(self, page: Page) -> Response:
        email = page.form.get("email", "")
        try:
            await self.run(page, "family_reset_request", body={"email": email})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/reset.html", email=email)
        return redirect(f"{BASE}/reset/new?m=mailed")

    async def new_password_form(self, page: Page) -> Response:
        token = page.query.get("token", "")
        return self.render(page, "portal/new_password.html",
                           token=token if re.fullmatch(r"[A-Za-z0-9_-]{1,100}", token) else "")

    async def new_password(self, page: Page) -> Response:
        if page.form.get("password", "") != page.form.get("password_again", ""):
            p = problems.invalid("body", "password_again", "the two passwords differ",
                                 "passwords_differ")
            return self.failed(page, p, "portal/new_password.html",
                               token=page.form.get("token", ""))
        try:
            await self.run(page, "family_reset", body={
                "token": page.form.get("token", "").strip(),
                "password": page.form.get("password", "")})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/new_password.html", token="")
        return redirect(f"{BASE}/login?m=reset")

    # -- home: numbers, balances, contact requests ---------------------------------------------

    async def _numbers(self, page: Page) -> list[dict[str, Any]]:
        numbers: list[dict[str, Any]] = (await self.run(page, "family_numbers"))["numbers"]
        return numbers

    async def home(self, page: Page, *, problem: problems.ApiProblem | None = None,
                   status: int = 200,
                   number: str = "", notice: str | None = None) -> Response:
        me = await self.run(page, "family_me")
        return self.render(page, "portal/home.html", status=status, me=me,
                           numbers=await self._numbers(page), problem=problem, notice=notice,
                           requests=(await self.run(page, "family_contact_requests"))["requests"],
                           number=number)

    async def add_number(self, page: Page) -> Response:
        number = page.form.get("number", "")
        try:
            await self.run(page, "family_claim_number", body={"number": number})
        except problems.ApiProblem as p:
            return await self.home(page, problem=p, status=p.status, number=number)
        return redirect(f"{BASE}/?m=number")

    async def _proven(self, page: Page, number: str) -> dict[str, Any] | None:
        return next((n for n in await self._numbers(page) if n["number"] == number
                     and n["state"] == "proven"), None)

    async def refund_form(self, page: Page) -> Response:
        # A whole balance goes back in one step: asked once more on a page of its own.
        account = await self._proven(page, page.params["number"])
        if account is None:
            return self.failed(page, problems.NotFoundProblem(
                f"number: {page.params['number']} is not one of your proven numbers"),
                "portal/error.html")
        return self.render(page, "portal/refund.html", account=account)

    async def refund(self, page: Page) -> Response:
        try:
            r = await self.run(page, "family_refund", path={"number": page.params["number"]})
        except problems.ApiProblem as p:
            return await self.home(page, problem=p, status=p.status)
        return await self.home(page, notice=page.t("portal.notice.refunded",
                                                   amount=r["refunded"], number=r["number"]))

    # -- proof of a number by a call (web.portal.prove) -----------------------------------------

    async def prove_form(self, page: Page, **kw: Any) -> Response:
        from web.portal import prove
        return await prove.form(self, page, **kw)

    async def proof_call(self, page: Page) -> Response:
        from web.portal import prove
        return await prove.call(self, page)

    async def proof_code(self, page: Page) -> Response:
        from web.portal import prove
        return await prove.code(self, page)

    # -- find a facility and an inmate, ask to be a contact ------------------------------------

    async def find(self, page: Page) -> Response:
        q = page.query.get("q", "").strip()
        try:
            found = (await self.run(page, "family_facilities", query={"q": q}))["facilities"]
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/find.html", q=q, facilities=[])
        return self.render(page, "portal/find.html", q=q, facilities=found)

    async def facility(self, page: Page, *, problem: problems.ApiProblem | None = None,
                       status: int = 200) -> Response:
        facility = page.params["facility"]
        name = (page.query.get("name") or page.form.get("name_query") or "").strip()
        inmate = (page.query.get("id") or "").strip()
        found = []
        if problem is None and (name or inmate):
            try:
                found = (await self.run(page, "family_inmates", path={"facility": facility},
                                        query={"name": name or None, "id": inmate or None}
                                        ))["inmates"]
            except problems.ApiProblem as p:
                problem, status = p, p.status
        numbers = [n for n in await self._numbers(page) if n["state"] == "proven"]
        return self.render(page, "portal/facility.html", status=status, facility=facility,
                           name=name, inmate_id=inmate, inmates=found, numbers=numbers,
                           problem=problem)

    async def request_contact(self, page: Page) -> Response:
        f = page.form
        try:
            await self.run(page, "family_request_contact", body={
                "inmate": f.get("inmate", ""), "number": f.get("number", ""),
                "name": f.get("name", ""), "relationship": f.get("relationship", "")})
        except problems.ApiProblem as p:
            page.params["facility"] = f.get("facility", "")
            return await self.facility(page, problem=p, status=p.status)
        return redirect(f"{BASE}/?m=contact")

    # -- funding -------------------------------------------------------------------------------

    async def fund_form(self, page: Page, *, problem: problems.ApiProblem | None = None,
                        status: int = 200,
                        amount: str | None = None, declined: dict[str, Any] | None = None
                        ) -> Response:
        number = page.params["number"]
        amount = (amount if amount is not None else page.query.get("amount", "")).strip()
        owned = [n for n in [await self._proven(page, number)] if n is not None]
        if not owned:
            # Not this holder's proven number: the same answer as the API's (404).
            p = problem or problems.NotFoundProblem(f"number: {number} is not one of your "
                                                    "proven numbers")
            return self.failed(page, p, "portal/error.html")
        quote = None
        if amount and problem is None:
            try:
                quote = await self.run(page, "family_quote",
                                       query={"amount": amount, "number": number})
            except problems.ApiProblem as p:
                problem, status = p, p.status
        return self.render(page, "portal/fund.html", status=status, account=owned[0],
                           amount=amount, quote=quote, problem=problem, declined=declined,
                           key=str(uuid.uuid4()), tokens=CARD_TOKENS)

    async def fund(self, page: Page) -> Response:
        number, f = page.params["number"], page.form
        try:
            pay = await self.run(page, "family_fund_number", path={"number": number}, body={
                "amount": f.get("amount", ""), "card_token": f.get("card_token", ""),
                "idempotency_key": f.get("idempotency_key", "")})
        except problems.ApiProblem as p:
            return await self.fund_form(page, problem=p, status=p.status,
                                        amount=f.get("amount", ""))
        if pay["state"] in ("declined", "failed"):
            # Nothing moved; a new form (and key) lets the holder try another card.
            return await self.fund_form(page, status=402, amount=f.get("amount", ""),
                                        declined=pay)
        return redirect(f"{BASE}/payments/{pay['id']}")

    async def payment(self, page: Page) -> Response:
        try:
            pay = await self.run(page, "family_payment", path={"payment": page.params["payment"]})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/error.html")
        return self.render(page, "portal/payment.html", pay=pay)

    # -- an inmate's debit (trust) account -----------------------------------------------------

    async def _inmate_known(self, page: Page, inmate: str) -> dict[str, Any] | None:
        # The holder's own contact request names the inmate and facility (no other lookup: an
        # unpublished inmate is shown by id only, as the holder typed it).
        reqs = (await self.run(page, "family_contact_requests"))["requests"]
        return next((r for r in reqs if r["inmate"] == inmate), None)

    async def inmate_deposit_form(self, page: Page, *, problem: problems.ApiProblem | None = None,
                                  status: int = 200, amount: str | None = None,
                                  declined: dict[str, Any] | None = None) -> Response:
        inmate = page.params["inmate"]
        if not INMATE_ID.fullmatch(inmate):
            return self.failed(page, problems.NotFoundProblem(f"inmate: no inmate {inmate}"),
                               "portal/error.html")
        amount = (amount if amount is not None else page.query.get("amount", "")).strip()
        quote = None
        if amount and problem is None:
            try:
                quote = await self.run(page, "family_quote",
                                       query={"amount": amount, "inmate": inmate})
            except problems.ApiProblem as p:
                if p.status == 404:             # no such inmate: nothing to show a form for
                    return self.failed(page, p, "portal/error.html")
                problem, status = p, p.status
        return self.render(page, "portal/inmate_deposit.html", status=status, inmate=inmate,
                           known=await self._inmate_known(page, inmate), amount=amount,
                           quote=quote, problem=problem, declined=declined,
                           key=str(uuid.uuid4()), tokens=CARD_TOKENS)

    async def inmate_deposit(self, page: Page) -> Response:
        inmate, f = page.params["inmate"], page.form
        if not INMATE_ID.fullmatch(inmate):
            return self.failed(page, problems.NotFoundProblem(f"inmate: no inmate {inmate}"),
                               "portal/error.html")
        try:
            pay = await self.run(page, "family_fund_inmate", path={"inmate": inmate}, body={
                "amount": f.get("amount", ""), "card_token": f.get("card_token", ""),
                "idempotency_key": f.get("idempotency_key", "")})
        except problems.ApiProblem as p:
            if p.status == 404:
                return self.failed(page, p, "portal/error.html")
            return await self.inmate_deposit_form(page, problem=p, status=p.status,
                                                  amount=f.get("amount", ""))
        if pay["state"] in ("declined", "failed"):
            return await self.inmate_deposit_form(page, status=402, amount=f.get("amount", ""),
                                                  declined=pay)
        return redirect(f"{BASE}/payments/{pay['id']}")

    # -- the holder's password -------------------------------------------------------------------

    async def password_form(self, page: Page) -> Response:
        return self.render(page, "portal/password.html")

    async def change_password(self, page: Page) -> Response:
        f = page.form
        if f.get("new_password", "") != f.get("new_password_again", ""):
            p = problems.invalid("body", "new_password_again", "the two passwords differ",
                                 "passwords_differ")
            return self.failed(page, p, "portal/password.html")
        try:
            # The API's change: the current password checked, every other session ended.
            await self.run(page, "family_change_password", body={
                "current_password": f.get("current_password", ""),
                "new_password": f.get("new_password", "")})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/password.html")
        return redirect(f"{BASE}/?m=password")

    # -- history, statements -------------------------------------------------------------------

    async def history(self, page: Page, *, notice: str | None = None,
                      problem: problems.ApiProblem | None = None,
                      status: int = 200) -> Response:
        month = page.query.get("month", "").strip() or page.form.get("month", "").strip()
        q = {"month": month or None}
        try:
            h = await self.run(page, "family_history", query=q)
        except problems.ApiProblem as p:
            problem, status, month = p, p.status, ""
            h = await self.run(page, "family_history", query={})
        return self.render(page, "portal/history.html", status=status, h=h, month=month,
                           numbers=[n for n in await self._numbers(page)
                                    if n["state"] == "proven"],
                           notice=notice, problem=problem,
                           calls_csv=page.url("/history/calls.csv", month=month),
                           money_csv=page.url("/history/money.csv", month=month))

    async def _csv(self, page: Page, op: str) -> Response:
        month = page.query.get("month", "").strip()
        try:
            stream = await self.run(page, op, query={"month": month or None})
        except problems.ApiProblem as p:
            return self.failed(page, p, "portal/error.html")
        return Response(content_type="text/csv; charset=utf-8", stream=stream.chunks, headers={
            "Content-Disposition": f'attachment; filename="{stream.filename}"'})

    async def calls_csv(self, page: Page) -> Response:
        return await self._csv(page, "family_calls_csv")

    async def money_csv(self, page: Page) -> Response:
        return await self._csv(page, "family_money_csv")

    async def statement(self, page: Page) -> Response:
        f = page.form
        try:
            s = await self.run(page, "family_order_statement", body={
                "number": f.get("number", ""), "month": f.get("month", ""),
                "delivery": f.get("delivery", "electronic")})
        except problems.ApiProblem as p:
            return await self.history(page, problem=p, status=p.status)
        return await self.history(page, notice=page.t(
            "portal.history.statement_ordered", month=s["month"], number=s["number"],
            calls=s["calls"], fee=s["fee"]))

    # -- blocks --------------------------------------------------------------------------------

    async def blocks(self, page: Page, *, problem: problems.ApiProblem | None = None,
                     status: int = 200) -> Response:
        return self.render(page, "portal/blocks.html", status=status, problem=problem,
                           blocks=(await self.run(page, "family_blocks"))["blocks"],
                           numbers=await self._numbers(page))

    async def _block(self, page: Page, op: str, done: str) -> Response:
        f = page.form
        try:
            await self.run(page, op, body={"number": f.get("number", ""),
                                           "facility": f.get("facility", "").strip() or None,
                                           "inmate": f.get("inmate", "").strip() or None})
        except problems.ApiProblem as p:
            return await self.blocks(page, problem=p, status=p.status)
        return redirect(f"{BASE}/blocks?m={done}")

    async def block(self, page: Page) -> Response:
        return await self._block(page, "family_block", "blocked")

    async def unblock(self, page: Page) -> Response:
        return await self._block(page, "family_unblock", "unblocked")


def portal_site(services: Services, *, secure_cookies: bool, body_bytes_max: int) -> PageSite:
    from web.family_auth import COOKIE
    p = Portal(services, secure_cookies)
    routes = [
        Route("GET", "/register", p.register_form, public=True),
        Route("POST", "/register", p.register, public=True),
        Route("GET", "/verify", p.verify_form, public=True),
        Route("POST", "/verify", p.verify, public=True),
        Route("GET", "/login", p.login_form, public=True),
        Route("POST", "/login", p.login, public=True),
        Route("GET", "/reset", p.reset_form, public=True),
        Route("POST", "/reset", p.reset_request, public=True),
        Route("GET", "/reset/new", p.new_password_form, public=True),
        Route("POST", "/reset/new", p.new_password, public=True),
        Route("POST", "/logout", p.logout),
        Route("GET", "/", p.home),
        Route("POST", "/numbers", p.add_number),
        Route("GET", "/numbers/{number}/prove", p.prove_form),
        Route("POST", "/numbers/{number}/proof-call", p.proof_call),
        Route("POST", "/numbers/{number}/proof-code", p.proof_code),
        Route("GET", "/numbers/{number}/refund", p.refund_form),
        Route("POST", "/numbers/{number}/refund", p.refund),
        Route("GET", "/numbers/{number}/fund", p.fund_form),
        Route("POST", "/numbers/{number}/fund", p.fund),
        Route("GET", "/inmates/{inmate}/deposit", p.inmate_deposit_form),
        Route("POST", "/inmates/{inmate}/deposit", p.inmate_deposit),
        Route("GET", "/password", p.password_form),
        Route("POST", "/password", p.change_password),
        Route("GET", "/payments/{payment}", p.payment),
        Route("GET", "/find", p.find),
        Route("GET", "/find/{facility}", p.facility),
        Route("POST", "/contacts", p.request_contact),
        Route("GET", "/history", p.history),
        Route("GET", "/history/calls.csv", p.calls_csv),
        Route("GET", "/history/money.csv", p.money_csv),
        Route("POST", "/statements", p.statement),
        Route("GET", "/blocks", p.blocks),
        Route("POST", "/blocks", p.block),
        Route("POST", "/blocks/remove", p.unblock),
    ]
    return PageSite(routes, base=BASE, login_path="/login", authenticate=p.authenticate,
                    cookie_name=COOKIE, secure_cookies=secure_cookies,
                    body_bytes_max=body_bytes_max)
