"""Operations declared once: method, path, the right they need and their models. The dispatcher
validates with these models and `web.openapi` generates the document from the same ones."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from pydantic import BaseModel

from web.roles import Right

_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])

__all__ = ["Operation", "Registry", "Stream", "Serialized"]

_PARAM = re.compile(r"^\{([a-z_]+)\}$")


@dataclass(frozen=True)
class Stream:
    """A streamed response body: chunks from an async iterator, written with backpressure."""
    media_type: str
    chunks: Any                          # AsyncIterator[bytes]
    filename: str | None = None


@dataclass(frozen=True)
class Serialized:
    """A response given as plain data, written by its model's own serializer without building
    model instances (hot pages: a third of the cost). The data must already be of the declared
    types, as JSON-ready values (UUIDs as text: asyncpg's own UUID type has no fast path)."""
    model: type[BaseModel]
    data: dict[str, Any]

    def to_json(self) -> bytes:
        # Plain data is not an instance of the model: serialized by inferred type (the same
        # formats), without the per-field mismatch warnings that would cost more than the work.
        return self.model.__pydantic_serializer__.to_json(self.data, warnings=False)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str                            # under /api/v1, e.g. /accounts/{account}
    operation_id: str
    summary: str
    right: Right
    handler: Callable[..., Awaitable[Any]]
    path_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    body_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    status: int = 200
    stream_media_type: str | None = None     # set: the response is a Stream of this type
    tag: str = "api"
    auth: str = "operator"               # operator (bearer token) | holder (session) | public
    segments: tuple[str, ...] = field(default=(), compare=False)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params = {}
        for want, got in zip(self.segments, segments):
            m = _PARAM.match(want)
            if m:
                if not got:
                    return None
                params[m.group(1)] = got
            elif want != got:
                return None
        return params

    @property
    def mutates(self) -> bool:
        return self.method != "GET"


class Registry:
    """The API's operations, in declaration order."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(self, method: str, path: str, *, right: Right, summary: str, tag: str,
                  path_model: type[BaseModel] | None = None,
                  query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
                  response: type[BaseModel] | None = None, status: int = 200,
                  stream: str | None = None, auth: str = "operator"
                  ) -> Callable[[_Handler], _Handler]:
        if auth not in ("operator", "holder", "public"):
            raise ValueError(f"auth must be operator, holder or public, got {auth!r}")

        def register(fn: _Handler) -> _Handler:
            op = Operation(method, path, fn.__name__, summary, right, fn, path_model, query, body,
                           response, status, stream, tag, auth,
                           tuple(s for s in path.strip("/").split("/")))
            if any(o.operation_id == op.operation_id for o in self.operations):
                raise ValueError(f"operation id {op.operation_id} declared twice")
            self.operations.append(op)
            return fn
        return register

    def resolve(self, method: str, segments: list[str]
                ) -> tuple[Operation | None, dict[str, str], list[str]]:
        """The operation for this request, its path parameters, and the methods the path allows."""
        allowed, found, found_params = [], None, {}
        # Literal segments win over parameters (/accounts/pending before /accounts/{account}).
        for op in sorted(self.operations,
                         key=lambda o: [bool(_PARAM.match(s)) for s in o.segments]):
            params = op.match(segments)
            if params is None:
                continue
            allowed.append(op.method)
            if op.method == method and found is None:
                found, found_params = op, params
        return found, found_params, allowed
