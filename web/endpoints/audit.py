"""The audit trail over HTTP: read-only, newest first, keyset pages."""
from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from web import audit as audit_
from web.endpoints import REGISTRY
from web.endpoints.common import PAGE_SIZE_DEFAULT, Model, PageLimit, Text, UtcDateTime
from web.roles import Right


class AuditQuery(Model):
    actor: Text | None = None
    action: Text | None = None
    target: Text | None = None
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    cursor: int | None = Field(None, ge=1, le=2**62, description="next_cursor of the last page")
    limit: PageLimit = PAGE_SIZE_DEFAULT


class AuditEventOut(Model):
    seq: int
    at: dt.datetime
    actor: str
    via: str
    action: str
    target: str
    before: Any = None
    after: Any = None


class AuditPage(Model):
    events: list[AuditEventOut]
    next_cursor: int | None


@REGISTRY.operation("GET", "/audit", right=Right.AUDIT_READ, tag="audit",
                    summary="The audit trail, newest first", query=AuditQuery, response=AuditPage)
async def list_audit(call):
    q = call.query
    async with call.pool.acquire() as conn:
        rows = await audit_.events(conn, actor=q.actor, action=q.action, target=q.target,
                                   since=q.since, until=q.until, before_seq=q.cursor,
                                   limit=q.limit)
    return AuditPage(events=[AuditEventOut(**e.__dict__) for e in rows],
                     next_cursor=rows[-1].seq if len(rows) == q.limit else None)
