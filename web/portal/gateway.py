"""The portal's way to the family API: a holder's operation run in process, as the API runs it.

A portal page never reimplements what a family operation does: it names the operation, gives the
form's fields and gets back what the API would have answered (JSON-ready data) or the same problem
(422 naming the field, 404 for what is not the holder's, 409, 403). Only the family tag's own
operations are reachable here (never an operator's), so the portal cannot be used to reach the
operations side even by a page bug.
"""
from __future__ import annotations

from typing import Any

from web.console.gateway import _model, _plain, operation
from web.dispatch import Call, Services
from web.family_auth import HolderPrincipal, PublicPrincipal
from web.operations import Operation

__all__ = ["run", "family_operation"]


def family_operation(operation_id: str) -> Operation:
    op = operation(operation_id)
    if op.tag != "family" or op.auth not in ("holder", "public"):
        raise LookupError(f"{operation_id!r} is not a holder's operation")
    return op


async def run(services: Services, principal: HolderPrincipal | PublicPrincipal, operation_id: str,
              *, path: dict[str, Any] | None = None, query: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None, http: Any = None) -> Any:
    """Run one family operation as `principal` (a holder, or the public for the public ones)."""
    op = family_operation(operation_id)
    if op.auth == "holder" and getattr(principal, "holder_id", None) is None:
        raise LookupError(f"{operation_id} needs a logged-in holder")
    # A family principal stands in for an operator's (family, role, facilities, actor).
    call = Call(services, principal,  # type: ignore[arg-type]
                _model("path", op.path_model, path), _model("query", op.query_model, query),
                _model("body", op.body_model, body), http=http)
    return _plain(await op.handler(call))
