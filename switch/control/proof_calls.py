"""The core's side of proof calls: route the number, hand the call to a worker, take its end.

`ProofDialer.place` asks the node's workers in turn (`PlaceProofCall`, switch.wire.proof) until
one has room; `trunks_for` routes a number as calls are routed (the `route` table, longest prefix
first). A worker's `ProofCallEnded` is recorded by `families.number_proof.call_ended` (the proof
and its call record are the families' rows). No money moves: a proof call is free to everyone.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import asyncpg

__all__ = ["ProofDialer", "trunks_for", "ended", "PLACE_ANSWER_SECONDS"]

log = logging.getLogger("ics.proof")

PLACE_ANSWER_SECONDS = 5.0      # a worker that has not answered PlaceProofCall by then: the next

_ROUTES_SQL = """
SELECT trunk FROM route WHERE $1 LIKE prefix || '%' ORDER BY length(prefix) DESC, priority, id
"""


async def trunks_for(conn: asyncpg.Connection, e164: str) -> list[str]:
    """The trunk URIs that reach `e164`, in the order to try them (empty: no route)."""
    rows = await conn.fetch(_ROUTES_SQL, e164)
    return [r["trunk"].format(e164=e164, number=e164.lstrip("+")) for r in rows]


class _Workers(Protocol):
    def credentials(self, worker_id: str) -> Any: ...


class ProofDialer:
    """Places proof calls on the node's workers. `links` is the live worker id -> AMP link map
    (switch.control.service.WorkerLinkFactory.links); `workers` gives each worker's key (the supervisor,
    or a WorkerRegistry)."""

    def __init__(self, links: Mapping[str, Any], workers: _Workers, *,
                 answer_seconds: float = PLACE_ANSWER_SECONDS,
                 observe: Callable[..., None] | None = None) -> None:
        self.links, self.workers = links, workers
        self.answer_seconds = answer_seconds
        self.observe = observe

    async def place(self, *, proof_id: str, e164: str, trunks: list[str], language: str,
                    code: str, caller_name: str = "") -> str | None:
        """The id of the worker now dialling, or None when none would take the call."""
        from switch.wire.proof import NoRoom, PlaceProofCall, proof_mac   # twisted: only here
        for worker_id, link in sorted(self.links.items()):
            creds = self.workers.credentials(worker_id)
            if creds is None:
                continue
            fields: dict[str, Any] = dict(proof_id=proof_id, e164=e164, trunks=list(trunks),
                                          language=language, code=code, caller_name=caller_name)
            try:
                d = link.callRemote(PlaceProofCall, mac=proof_mac(creds.key, **fields), **fields)
                answer = await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()),
                                                self.answer_seconds)
            except NoRoom:
                continue
            except Exception as e:      # noqa: BLE001 - timeout, refusal, lost link: the next
                log.warning("worker %s did not take proof call %s: %r", worker_id, proof_id, e)
                continue
            if answer.get("placed"):
                self._observe("placed")
                return worker_id
        self._observe("no_worker")
        return None

    def _observe(self, outcome: str) -> None:
        if self.observe is not None:
            self.observe("proof_call", outcome)


async def ended(pool: asyncpg.Pool, worker_id: str, *, proof_id: str, outcome: str,
                talk_seconds: int, trunk: str | None, sip_code: int | None, now: Any,
                observe: Callable[..., None] | None = None) -> bool:
    """A worker's end report: recorded on the proof (families.number_proof). Raises
    core.UnknownCall for a proof this worker was not sent, core.BadRequest for a bad outcome."""
    from families import number_proof          # the proof's rows are the families'
    from switch.control import core
    from switch.wire.proof import OUTCOMES
    if outcome not in OUTCOMES:
        raise core.BadRequest(f"unknown proof call outcome {outcome!r}")
    if talk_seconds < 0:
        raise core.BadRequest(f"talk_seconds must be >= 0, got {talk_seconds}")
    async with pool.acquire() as conn:
        known = await number_proof.call_ended(conn, proof_id, worker_id=worker_id,
                                              outcome=outcome, talk_seconds=talk_seconds,
                                              trunk=trunk, sip_code=sip_code, now=now)
    if not known:
        raise core.UnknownCall(proof_id)
    if observe is not None:
        observe("proof_call", f"ended_{outcome}")
    log.info("proof call ended: %s", json.dumps({"proof": proof_id, "outcome": outcome,
                                                 "worker": worker_id, "sip_code": sip_code}))
    return True
