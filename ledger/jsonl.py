"""JSON Lines in, results out: the operator's file format for accounts and transfers.

Each line is one object with ``op`` ``account`` or ``transfer``. The whole file is parsed before
anything is applied, so a malformed line (named by number and field) applies nothing. Consecutive
lines of one op are applied as batches (one call, one transaction each), never splitting a linked
chain; results come back one per line, in order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import asyncpg

from ledger.accounts import Account, create_accounts
from ledger.errors import InvalidAccount, InvalidTransfer, LedgerError
from ledger.submission import submit
from ledger.transfers import BATCH_SIZE_MAX, Transfer, TransferKind

__all__ = ["MalformedLine", "Line", "parse", "apply"]

_ACCOUNT_FIELDS = {"op", "id", "kind", "currency", "no_overdraft", "shards"}
_TRANSFER_FIELDS = {
    "op",
    "id",
    "kind",
    "debit",
    "credit",
    "amount",
    "hold",
    "expires_in",
    "linked",
    "code",
    "ref",
}
_KINDS = {
    "single": TransferKind.SINGLE,
    "hold": TransferKind.HOLD,
    "post": TransferKind.POST,
    "void": TransferKind.VOID,
}


class MalformedLine(LedgerError, ValueError):
    """A line that is not a usable account or transfer; names the line number and the field."""

    def __init__(self, line: int, field: str | None, message: str):
        where = f"line {line}" + (f": field {field}" if field else "")
        super().__init__(f"{where}: {message}", what=message, where=where)
        self.line, self.field = line, field


@dataclass(frozen=True)
class Line:
    number: int
    item: Account | Transfer


def _uuid(number: int, field: str, value: object) -> uuid.UUID | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedLine(number, field, f"must be a UUID string, got {value!r}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise MalformedLine(number, field, f"must be a UUID, got {value!r}") from None


def _id(number: int, value: object) -> uuid.UUID:
    found = _uuid(number, "id", value)
    if found is None:
        raise MalformedLine(number, "id", f"must be a UUID, got {value!r}")
    return found


def _parse_line(number: int, text: str) -> Line:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedLine(number, None, f"not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise MalformedLine(number, None, "must be a JSON object")
    op = obj.get("op")
    if op not in ("account", "transfer"):
        raise MalformedLine(number, "op", f'must be "account" or "transfer", got {op!r}')
    known = _ACCOUNT_FIELDS if op == "account" else _TRANSFER_FIELDS
    for key in obj:
        if key not in known:
            raise MalformedLine(
                number, key, f"unknown for op {op} (known: {', '.join(sorted(known))})"
            )
    if "id" not in obj:
        raise MalformedLine(number, "id", "is required")
    if op == "account":
        if "kind" not in obj:
            raise MalformedLine(number, "kind", "is required")
        try:
            return Line(
                number,
                Account(
                    obj["id"],
                    obj["kind"],
                    obj.get("currency", "USD"),
                    obj.get("no_overdraft"),
                    obj.get("shards"),
                ),
            )
        except InvalidAccount as e:
            raise MalformedLine(number, e.field, f"{e.reason}, got {e.value!r}") from None
    kind = obj.get("kind")
    if kind not in _KINDS:
        raise MalformedLine(number, "kind", f"must be one of {', '.join(_KINDS)}, got {kind!r}")
    try:
        return Line(
            number,
            Transfer(
                _id(number, obj["id"]),
                _KINDS[kind],
                obj.get("debit"),
                obj.get("credit"),
                obj.get("amount"),
                _uuid(number, "hold", obj.get("hold")),
                obj.get("expires_in"),
                obj.get("linked", False),
                obj.get("code"),
                obj.get("ref"),
            ),
        )
    except InvalidTransfer as e:
        raise MalformedLine(number, e.field, f"{e.reason}, got {e.value!r}") from None


def _batches(lines: list[Line], batch_size: int) -> list[list[Line]]:
    """Runs of one op, packed into batches of at most ``batch_size`` without splitting a chain."""
    # Units that must share a batch: an account line alone, or a transfer chain.
    units: list[list[Line]] = []
    for line in lines:
        prev = units[-1] if units else None
        if (
            prev is not None
            and isinstance(line.item, Transfer)
            and isinstance(prev[-1].item, Transfer)
            and prev[-1].item.linked
        ):
            prev.append(line)
        else:
            units.append([line])
    batches: list[list[Line]] = []
    for unit in units:
        if len(unit) > batch_size:
            raise MalformedLine(
                unit[-1].number,
                "linked",
                f"a linked chain may not be longer than a batch ({batch_size})",
            )
        last = batches[-1] if batches else None
        if (
            last is not None
            and type(last[0].item) is type(unit[0].item)
            and len(last) + len(unit) <= batch_size
        ):
            last.extend(unit)
        else:
            batches.append(list(unit))
    return batches


def parse(lines: Iterable[str], *, batch_size: int = BATCH_SIZE_MAX) -> list[list[Line]]:
    """Parse every line (numbered from 1; blank lines are skipped) and plan the batches.
    Raises `MalformedLine` for the first unusable line."""
    parsed = [_parse_line(n, text) for n, text in enumerate(lines, 1) if text.strip()]
    return _batches(parsed, batch_size)


async def apply(
    conn: asyncpg.Connection, batches: list[list[Line]]
) -> AsyncIterator[dict[str, str]]:
    """Apply planned batches in order; yields ``{"id", "result"}`` per line, in input order."""
    for batch in batches:
        # A planned batch holds one op (`_batches`): accounts or transfers, never both.
        accounts = [line.item for line in batch if isinstance(line.item, Account)]
        transfers = [line.item for line in batch if isinstance(line.item, Transfer)]
        if accounts:
            results = await create_accounts(conn, accounts)
            for account, result in zip(accounts, results, strict=False):
                yield {"id": account.id, "result": result.name.lower()}
        else:
            for r in await submit(conn, transfers):
                yield {"id": str(r.id), "result": r.result.name.lower()}
