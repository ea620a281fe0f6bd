"""Signed cursors: a page's continuation that carries state the next page must trust (a
statement's running balances), so page N never re-reads the N-1 pages before it.

A cursor is base64url(payload || HMAC-SHA256(key, payload)[:16]). The key lives in the
database (`api_secret`), made on first use, so every node on one database accepts the others'
cursors. A cursor that does not verify is refused; a client cannot make one up.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from typing import Any

import asyncpg

from web.errors import WebError

__all__ = ["CursorInvalid", "cursor_key", "seal", "unseal"]

TAG_BYTES = 16
KEY_NAME = "cursor"


class CursorInvalid(WebError, ValueError):
    """The cursor was not one this API issued."""


async def cursor_key(conn: asyncpg.Connection, cache: dict[str, Any]) -> bytes:
    if KEY_NAME not in cache:
        await conn.execute("INSERT INTO api_secret (name, key) VALUES ($1, $2) "
                           "ON CONFLICT (name) DO NOTHING", KEY_NAME, os.urandom(32))
        cache[KEY_NAME] = bytes(await conn.fetchval(
            "SELECT key FROM api_secret WHERE name = $1", KEY_NAME))
    key: bytes = cache[KEY_NAME]
    return key


def seal(key: bytes, fmt: str, *values: int) -> str:
    payload = struct.pack(fmt, *values)
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(payload + tag).decode().rstrip("=")


def unseal(key: bytes, fmt: str, text: str) -> tuple[int, ...]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorInvalid("not a cursor this API issued") from None
    size = struct.calcsize(fmt)
    if len(raw) != size + TAG_BYTES:
        raise CursorInvalid("not a cursor this API issued")
    payload, tag = raw[:size], raw[size:]
    if not hmac.compare_digest(tag, hmac.new(key, payload, hashlib.sha256).digest()[:TAG_BYTES]):
        raise CursorInvalid("not a cursor this API issued")
    return struct.unpack(fmt, payload)
