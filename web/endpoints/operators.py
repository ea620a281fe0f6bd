"""Operators and tokens over HTTP (admin only); the CLI shares `web.operators`."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from web import operators as ops_
from web.endpoints import REGISTRY
from web.endpoints.common import Model, Text
from web.problems import NotFoundProblem, invalid
from web.roles import Right

OperatorId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9._-]{0,63}$")]
FacilityId = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[A-Za-z0-9._-]+$")]


class OperatorOut(Model):
    id: str
    role: Literal["admin", "billing", "facility_staff", "auditor"]
    facilities: list[str]
    created_at: dt.datetime
    active_tokens: int


class OperatorList(Model):
    operators: list[OperatorOut]


class OperatorIn(Model):
    id: OperatorId
    role: Literal["admin", "billing", "facility_staff", "auditor"]
    facilities: list[FacilityId] = Field(default_factory=list, max_length=100)


class OperatorPath(Model):
    operator: OperatorId


class TokenIn(Model):
    label: Text = ""


class TokenOut(Model):
    token_id: uuid.UUID
    operator: str
    token: str = Field(description="shown once; only its hash is kept")


class RevokeIn(Model):
    token_id: uuid.UUID | None = Field(None, description="one token; omitted: every token")


class Revoked(Model):
    operator: str
    revoked: list[uuid.UUID]


def _out(o: ops_.Operator) -> OperatorOut:
    return OperatorOut(id=o.id, role=o.role.value, facilities=list(o.facilities),
                       created_at=o.created_at, active_tokens=o.active_tokens)


@REGISTRY.operation("GET", "/operators", right=Right.OPERATORS_READ, tag="operators",
                    summary="List operators", response=OperatorList)
async def list_operators(call):
    async with call.pool.acquire() as conn:
        return OperatorList(operators=[_out(o) for o in await ops_.list_operators(conn)])


@REGISTRY.operation("POST", "/operators", right=Right.OPERATORS_WRITE, tag="operators",
                    summary="Add an operator", body=OperatorIn, response=OperatorOut, status=201)
async def add_operator(call):
    b = call.body
    async with call.pool.acquire() as conn:
        try:
            o = await ops_.add_operator(conn, b.id, b.role, b.facilities,
                                        actor=call.principal.actor, via="http")
        except ops_.OperatorInvalid as e:
            raise invalid("body", e.field, str(e).partition(": ")[2]) from None
    return _out(o)


@REGISTRY.operation("POST", "/operators/{operator}/tokens", right=Right.OPERATORS_WRITE,
                    tag="operators", summary="Issue a token (shown once)", path_model=OperatorPath,
                    body=TokenIn, response=TokenOut, status=201)
async def issue_token(call):
    async with call.pool.acquire() as conn:
        try:
            t = await ops_.issue_token(conn, call.path.operator, label=call.body.label,
                                       actor=call.principal.actor, via="http")
        except ops_.OperatorNotFound as e:
            raise NotFoundProblem(str(e)) from None
    return TokenOut(token_id=t.token_id, operator=t.operator_id, token=t.token)


@REGISTRY.operation("POST", "/operators/{operator}/revoke", right=Right.OPERATORS_WRITE,
                    tag="operators", summary="Revoke one token or all of an operator's",
                    path_model=OperatorPath, body=RevokeIn, response=Revoked)
async def revoke_tokens(call):
    async with call.pool.acquire() as conn:
        try:
            ids = await ops_.revoke(conn, call.path.operator, token_id=call.body.token_id,
                                    actor=call.principal.actor, via="http")
        except ops_.OperatorNotFound as e:
            raise NotFoundProblem(str(e)) from None
    return Revoked(operator=call.path.operator, revoked=ids)
