"""The OpenAPI 3.1 document, generated from the declared operations and their pydantic models."""
from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from web.operations import Registry
from web.problems import PROBLEM_MEDIA_TYPE, Problem

__all__ = ["document"]

_REF = "#/components/schemas/{model}"


def _inline_parameters(model, where: str, defs: dict) -> list[dict]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    defs.update(schema.pop("$defs", {}))
    out = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.pop("description", None)
        prop.pop("title", None)
        # An omitted parameter is how a query says "none": drop the JSON null branch.
        branches = [b for b in prop.get("anyOf", ()) if b != {"type": "null"}]
        if "anyOf" in prop and len(branches) == 1:
            rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            prop = {**branches[0], **rest}
        p = {"name": name, "in": where, "required": where == "path" or name in required,
             "schema": prop}
        if description:
            p["description"] = description
        out.append(p)
    return out


def document(registry: Registry, *, title: str, version: str) -> dict[str, Any]:
    models = {Problem}
    for op in registry.operations:
        for m in (op.body_model, op.response_model):
            if m is not None:
                models.add(m)
    keys, top = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)]
        + [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=_REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))

    def ref(model, mode):
        return keys[(model, mode)]

    problem = {PROBLEM_MEDIA_TYPE: {"schema": ref(Problem, "serialization")}}
    paths: dict[str, dict] = {}
    for op in registry.operations:
        params = []
        if op.path_model is not None:
            params += _inline_parameters(op.path_model, "path", schemas)
        if op.query_model is not None:
            params += _inline_parameters(op.query_model, "query", schemas)
        if op.stream_media_type:
            ok = {op.stream_media_type: {"schema": {"type": "string"}}}
        elif op.response_model is not None:
            ok = {"application/json": {"schema": ref(op.response_model, "serialization")}}
        else:
            ok = None
        responses: dict[str, Any] = {str(op.status): {"description": op.summary}}
        if ok:
            responses[str(op.status)]["content"] = ok
        for status, text in (("401", "no valid token"), ("403", "the role may not do this"),
                             ("404", "not found"), ("413", "body or page too large"),
                             ("422", "invalid input; `errors` names each field"),
                             ("503", "the database is unavailable; retry")):
            responses[status] = {"description": text, "content": problem}
        responses["409"] = {"description": "conflicts with the current state (a used "
                            "reference, no tariff in force, ...)", "content": problem}
        security = {"operator": [{"bearer": []}], "public": [],
                    "holder": [{"holderSession": [], "csrfToken": []} if op.mutates
                               else {"holderSession": []}]}[op.auth]
        entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                                 "tags": [op.tag], "parameters": params,
                                 "responses": responses, "security": security,
                                 "x-ics-right": op.right.value}
        if op.auth != "operator":
            responses["429"] = {"description": "too many attempts; wait and retry",
                                "content": problem}
        if op.body_model is not None:
            responses["415"] = {"description": "the body is not JSON", "content": problem}
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(op.body_model, "validation")}}}
        paths.setdefault("/api/v1" + op.path, {})[op.method.lower()] = entry
    return {"openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {
                               "bearer": {"type": "http", "scheme": "bearer"},
                               # The family API: the session cookie that login sets, and its
                               # CSRF token in a header on every request that changes something.
                               "holderSession": {"type": "apiKey", "in": "cookie",
                                                 "name": "ics_family"},
                               "csrfToken": {"type": "apiKey", "in": "header",
                                             "name": "X-CSRF-Token"}}}}
