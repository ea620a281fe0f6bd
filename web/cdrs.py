"""Call detail records: filtered, keyset-paged listing and a streamed CSV export (API and CLI).

Pages walk (ended_at, call_id) downwards, so page N costs what page 1 costs; the cursor is the
last row's key, opaque to clients. The export is PostgreSQL's own COPY of the filtered query:
asyncpg stops reading the socket while our sink is busy, and the sink waits for the HTTP
consumer, so memory stays flat at any size.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

import asyncpg

from web.cursors import CursorInvalid  # one declaration, shared by every paged list

__all__ = ["CdrFilter", "CursorInvalid", "page", "export_csv", "encode_cursor", "decode_cursor",
           "CSV_COLUMNS"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class CdrFilter:
    facilities: list[str] | None = None      # None: every facility
    inmate: str | None = None
    number: str | None = None                 # E.164
    since: dt.datetime | None = None          # ended_at >= since
    until: dt.datetime | None = None          # ended_at < until
    disposition: str | None = None
    jurisdiction: str | None = None

    def where(self, args: list) -> list[str]:
        """SQL conditions for the filters given (only those: each can use its index)."""
        conds = []

        def arg(v) -> str:
            args.append(v)
            return f"${len(args)}"
        if self.facilities is not None:
            conds.append(f"facility_id = ANY({arg(list(self.facilities))}::text[])")
        for column, value in (("inmate_id", self.inmate), ("e164", self.number),
                              ("disposition", self.disposition),
                              ("jurisdiction", self.jurisdiction)):
            if value is not None:
                conds.append(f"{column} = {arg(value)}")
        if self.since is not None:
            conds.append(f"ended_at >= {arg(self.since)}")
        if self.until is not None:
            conds.append(f"ended_at < {arg(self.until)}")
        return conds


def encode_cursor(ended_at: dt.datetime, call_id: uuid.UUID) -> str:
    micros = (ended_at - _EPOCH) // dt.timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + call_id.bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorInvalid("not a cursor this API issued") from None
    if len(raw) != 24:
        raise CursorInvalid("not a cursor this API issued")
    micros = int.from_bytes(raw[:8], "big", signed=True)
    try:
        at = _EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        raise CursorInvalid("not a cursor this API issued") from None
    return at, uuid.UUID(bytes=raw[8:])


_COLUMNS = ("call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction, payment_type, "
            "funding_account, privileged, authorized_at, accepted_at, ended_at, talk_seconds, "
            "billed_seconds, disposition, call_micros, tax_micros, total_micros, tariff_version, "
            "trunk, sip_code")


async def page(conn: asyncpg.Connection, f: CdrFilter, *, limit: int,
               cursor: str | None = None) -> tuple[list[asyncpg.Record], str | None]:
    """One page, newest first, and the cursor of the next (None on the last page)."""
    args: list = []
    conds = f.where(args)
    if cursor is not None:
        at, call_id = decode_cursor(cursor)
        args += [at, call_id]
        conds.append(f"(ended_at, call_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    sql = (f"SELECT {_COLUMNS} FROM cdr"
           + (" WHERE " + " AND ".join(conds) if conds else "")
           + f" ORDER BY ended_at DESC, call_id DESC LIMIT ${len(args)}")
    rows = await conn.fetch(sql, *args)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["ended_at"], rows[-1]["call_id"])


def _money_sql(column: str) -> str:
    # Micro-units as a currency string, as ledger.money.format_amount writes it (a test holds
    # the two together): the CSV export formats in the database to keep its rows/s.
    return (f"CASE WHEN {column} % 10000 = 0 THEN to_char({column} / 1e6, 'FM999999999990.00') "
            f"ELSE rtrim(to_char({column} / 1e6, 'FM999999999990.000000'), '0') END")


def _iso_sql(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


CSV_COLUMNS = ("call_id", "facility", "kiosk", "inmate", "number", "jurisdiction",
               "payment_type", "funding_account", "privileged", "authorized_at", "accepted_at",
               "ended_at", "talk_seconds", "billed_seconds", "disposition", "call_amount",
               "tax_amount", "total_amount", "tariff_version", "trunk", "sip_code")

_CSV_SELECT = ", ".join([
    "call_id AS call_id", "facility_id AS facility", "kiosk_id AS kiosk", "inmate_id AS inmate",
    "e164 AS number", "jurisdiction", "payment_type", "funding_account", "privileged",
    f"{_iso_sql('authorized_at')} AS authorized_at", f"{_iso_sql('accepted_at')} AS accepted_at",
    f"{_iso_sql('ended_at')} AS ended_at", "talk_seconds", "billed_seconds", "disposition",
    f"{_money_sql('call_micros')} AS call_amount", f"{_money_sql('tax_micros')} AS tax_amount",
    f"{_money_sql('total_micros')} AS total_amount", "tariff_version", "trunk", "sip_code"])


EXPORT_SECONDS_MAX = 3600        # one export may stream this long (the node's usual statement
                                 # timeout is for requests, not for a million rows to a slow reader)


async def export_csv(conn: asyncpg.Connection, f: CdrFilter,
                     sink: Callable[[bytes], Awaitable[None]]) -> None:
    """Every matching CDR as CSV with a header, newest first, into `sink` chunk by chunk.
    Runs inside the caller's transaction (one snapshot)."""
    await conn.execute(f"SET LOCAL statement_timeout = '{EXPORT_SECONDS_MAX}s'")
    args: list = []
    conds = f.where(args)
    sql = (f"SELECT {_CSV_SELECT} FROM cdr"
           + (" WHERE " + " AND ".join(conds) if conds else "")
           + " ORDER BY ended_at DESC, call_id DESC")
    await conn.copy_from_query(sql, *args, output=sink, format="csv", header=True)
