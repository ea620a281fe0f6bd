"""The portal's proof of a number by a call: "call me with a code", then "enter the code"
(the family API's proof-call operations, web.endpoints.family_proof)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from families.proof_rules import ProofRules
from web import problems
from web.pages.site import Page, Response, redirect

if TYPE_CHECKING:
    from web.portal.app import Portal

__all__ = ["form", "call", "code"]


async def form(portal: "Portal", page: Page, *, problem: problems.ApiProblem | None = None,
               status: int = 200, proof: dict[str, Any] | None = None) -> Response:
    from web.portal.app import BASE
    number = page.params["number"]
    owned = next((n for n in await portal._numbers(page) if n["number"] == number), None)
    if owned is None:
        return portal.failed(page, problems.NotFoundProblem(
            f"number: {number} is not one of your numbers"), "portal/error.html")
    if owned["state"] == "proven":
        return redirect(f"{BASE}/?m=proven")
    if proof is None:
        try:
            proof = await portal.run(page, "family_proof_status", path={"number": number})
        except problems.NotFoundProblem:
            proof = None
        except problems.ApiProblem as p:
            problem, status = problem or p, p.status
    rules: ProofRules = getattr(portal.services.families, "proof", None) or ProofRules()
    state = None
    if proof is not None:
        outcome = proof.get("outcome")
        state = outcome if outcome in ("no_worker", "lost") else proof["state"]
    return portal.render(page, "portal/prove.html", status=status, number=number, proof=proof,
                         proof_state=state, problem=problem, digits=rules.code_digits,
                         minutes=rules.code_seconds // 60)


async def call(portal: "Portal", page: Page) -> Response:
    from web.portal.app import BASE
    number = page.params["number"]
    try:
        await portal.run(page, "family_proof_call", path={"number": number})
    except problems.ApiProblem as p:
        return await form(portal, page, problem=p, status=p.status)
    return redirect(f"{BASE}/numbers/{number}/prove")


async def code(portal: "Portal", page: Page) -> Response:
    from web.portal.app import BASE
    number = page.params["number"]
    try:
        await portal.run(page, "family_proof_code", path={"number": number},
                         body={"code": page.form.get("code", "")})
    except problems.ApiProblem as p:
        return await form(portal, page, problem=p, status=p.status)
    return redirect(f"{BASE}/?m=proven")
