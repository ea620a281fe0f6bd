"""The console's way to the API's operations: the same handler, right check and models, in process.

A console page never reimplements what an API operation does. It names the operation, gives the
form's fields, and gets back what the API would have answered (as plain JSON-ready data) or the
same problem (403 for a role without the right, 422 naming the field, 404, 409). So the console
and the API cannot disagree about rules, roles or audit rows: they run one code path.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from switch.provisioning import directory
from web import problems
from web.dispatch import Call, Services
from web.operations import Operation, Serialized, Stream
from web.roles import Principal, may

__all__ = ["operation", "run", "allowed"]


def operation(operation_id: str) -> Operation:
    from web.endpoints import REGISTRY
    for op in REGISTRY.operations:
        if op.operation_id == operation_id:
            return op
    raise LookupError(f"no API operation {operation_id!r}")


def allowed(principal: Principal, operation_id: str) -> bool:
    """Whether the page should show the control for this operation at all."""
    return may(principal.role, operation(operation_id).right)


def _model(location: str, model: type[BaseModel] | None, data: dict[str, Any] | None
           ) -> BaseModel | None:
    if model is None:
        return None
    # Form fields left empty mean "not given": optional fields take their defaults.
    clean = {k: v for k, v in (data or {}).items() if v not in (None, "")}
    try:
        return model.model_validate(clean)
    except ValidationError as e:
        raise problems.from_validation(location, e) from None


def _plain(result: Any) -> Any:
    if result is None or isinstance(result, Stream):
        return result
    if isinstance(result, Serialized):
        return json.loads(result.to_json())
    return json.loads(result.model_dump_json())


async def run(services: Services, principal: Principal, operation_id: str, *,
              path: dict[str, Any] | None = None, query: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> Any:
    """Run one API operation as `principal`; raises the API's problem on refusal."""
    op = operation(operation_id)
    if not may(principal.role, op.right):
        raise problems.Forbidden(f"role {principal.role.value} lacks the right "
                                 f"{op.right.value} that {op.operation_id} needs")
    call = Call(services, principal, _model("path", op.path_model, path),
                _model("query", op.query_model, query), _model("body", op.body_model, body))
    try:
        return _plain(await op.handler(call))
    except directory.Invalid as e:
        raise problems.invalid("body", "(whole)", str(e)) from None
    except directory.NotFound as e:
        raise problems.NotFoundProblem(str(e)) from None
