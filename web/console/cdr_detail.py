"""One call's record for its console page: the CDR, its itemized charges (spans, surcharges and
taxes as the pricing function wrote them), its ledger transfers, and its recording (never for a
privileged call). Read-only; facility scope is checked by the caller's principal."""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from ledger.money import format_amount as money

__all__ = ["CallRecord", "load", "recording_path"]

_KINDS = {1: "single", 2: "hold", 3: "post", 4: "void", 5: "expire"}


@dataclass(frozen=True)
class CallRecord:
    cdr: dict[str, Any]
    charges: dict[str, Any]
    transfers: list[dict[str, Any]]
    has_recording: bool


async def load(conn: asyncpg.Connection, call_id: uuid.UUID) -> dict[str, Any] | None:
    """The CDR row as a dict, or None."""
    r = await conn.fetchrow("SELECT * FROM cdr WHERE call_id = $1", call_id)
    return None if r is None else dict(r)


async def record(conn: asyncpg.Connection, row: dict[str, Any], data_dir: str) -> CallRecord:
    charges = row["charges"]
    if isinstance(charges, str):
        charges = json.loads(charges or "{}")
    for s in charges.get("spans", []):
        s["amount"] = money(int(s.get("amount_micros", 0)))
        s["price"] = money(int(s.get("price_micros", 0)))
    for s in charges.get("surcharges", []):
        s["amount"] = money(int(s.get("amount_micros", 0)))
    rows = await conn.fetch(
        "SELECT id, kind, debit_account_id, credit_account_id, amount, code, ref, created_at "
        "FROM ledger_transfer WHERE id = ANY($1::uuid[]) ORDER BY seq", row["transfer_ids"])
    transfers = [{"id": str(t["id"]), "kind": _KINDS.get(t["kind"], str(t["kind"])),
                  "debit": t["debit_account_id"], "credit": t["credit_account_id"],
                  "amount": money(t["amount"]), "code": t["code"], "ref": t["ref"],
                  "at": t["created_at"]} for t in rows]
    return CallRecord(row, charges, transfers,
                      recording_path(row, data_dir) is not None)


def recording_path(row: dict[str, Any], data_dir: str) -> str | None:
    """The recording's file, if the call has one that may be shown: never a privileged call's,
    and only a file inside the node's data directory."""
    if row.get("privileged") or not row.get("recording"):
        return None
    root = os.path.realpath(data_dir)
    path = os.path.realpath(os.path.join(root, row["recording"]))
    if not path.startswith(root + os.sep) or not os.path.isfile(path):
        return None
    return path
