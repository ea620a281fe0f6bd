"""Numbers a holder owns: claimed by the holder, proven by an operator (or by a call that speaks
a one-time code), then funded as a prepaid (AdvancePay) account. A number is proven for one holder
at most; proving it opens its prepaid account if there is none."""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

from families import audit
from families.errors import Invalid, NotFound, Refused
from switch.provisioning import directory
from switch.rules.numbers import InvalidNumber, to_e164

__all__ = ["OwnedNumber", "claim", "prove", "remove", "numbers_of", "proven_owner",
           "parse_number", "NUMBERS_PER_HOLDER_MAX"]

NUMBERS_PER_HOLDER_MAX = 10


@dataclass(frozen=True)
class OwnedNumber:
    e164: str
    state: Literal["unproven", "proven"]
    created_at: dt.datetime
    proven_at: dt.datetime | None
    account: str | None          # the prepaid ledger account, once proven


def parse_number(text: str, field: str = "number") -> str:
    try:
        return to_e164(text)
    except InvalidNumber as e:
        raise Invalid(field, str(e), "number.format") from None


def _row(r: asyncpg.Record) -> OwnedNumber:
    return OwnedNumber(r["e164"], r["state"], r["created_at"], r["proven_at"],
                       directory.phone_account_id(r["e164"]) if r["state"] == "proven" else None)


async def numbers_of(conn: asyncpg.Connection, holder_id: uuid.UUID) -> list[OwnedNumber]:
    rows = await conn.fetch("SELECT * FROM family_number WHERE holder_id = $1 ORDER BY created_at,"
                            " e164", holder_id)
    return [_row(r) for r in rows]


async def claim(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *,
                now: dt.datetime) -> OwnedNumber:
    e164 = parse_number(number)
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM family_holder WHERE id = $1 FOR UPDATE", holder_id)
        count = await conn.fetchval("SELECT count(*) FROM family_number WHERE holder_id = $1",
                                    holder_id)
        prior = await conn.fetchrow("SELECT * FROM family_number WHERE holder_id = $1 AND "
                                    "e164 = $2", holder_id, e164)
        if prior is not None:
            return _row(prior)
        if count >= NUMBERS_PER_HOLDER_MAX:
            raise Refused("number", f"at most {NUMBERS_PER_HOLDER_MAX} numbers per account",
                          "number.too_many", max=NUMBERS_PER_HOLDER_MAX)
        if await conn.fetchval("SELECT true FROM family_number WHERE e164 = $1 AND "
                               "state = 'proven'", e164):
            raise Refused("number", f"{e164} is already proven by another account holder",
                          "number.taken", number=e164)
        r = await conn.fetchrow("INSERT INTO family_number (holder_id, e164, created_at) "
                                "VALUES ($1, $2, $3) RETURNING *", holder_id, e164, now)
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="number.claim", target=e164)
    return _row(r)


async def prove(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *, by: str,
                now: dt.datetime,
                currency: str = "USD") -> OwnedNumber:
    """The number is the holder's (an operator checked, or a call spoke the code): its prepaid
    account opens (or is taken over) under the holder's email."""
    e164 = parse_number(number)
    async with conn.transaction():
        r = await conn.fetchrow("SELECT n.*, h.email FROM family_number n JOIN family_holder h "
                                "ON h.id = n.holder_id WHERE n.holder_id = $1 AND n.e164 = $2 "
                                "FOR UPDATE OF n", holder_id, e164)
        if r is None:
            raise NotFound("number", f"the holder has not claimed {e164}", "number.not_claimed",
                           number=e164)
        if r["state"] == "proven":
            return _row(r)
        other = await conn.fetchval("SELECT holder_id FROM family_number WHERE e164 = $1 AND "
                                    "state = 'proven'", e164)
        if other is not None:
            raise Refused("number", f"{e164} is already proven by another account holder",
                          "number.taken", number=e164)
        r = await conn.fetchrow("UPDATE family_number SET state = 'proven', proven_by = $3, "
                                "proven_at = $4 WHERE holder_id = $1 AND e164 = $2 RETURNING *",
                                holder_id, e164, by, now)
        await directory.add_phone_account(conn, e164, r_email := await conn.fetchval(
            "SELECT email FROM family_holder WHERE id = $1", holder_id), currency=currency)
        await audit.record(conn, at=now, actor=by, action="number.prove", target=e164,
                           detail={"holder": str(holder_id), "owner": r_email})
    return _row(r)


async def remove(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str, *,
                 now: dt.datetime) -> None:
    """The holder gives a number up: its balance stays on the account (refund it first)."""
    e164 = parse_number(number)
    async with conn.transaction():
        done = await conn.fetchval("DELETE FROM family_number WHERE holder_id = $1 AND e164 = $2 "
                                   "RETURNING state", holder_id, e164)
        if done is None:
            raise NotFound("number", f"{e164} is not one of your numbers", "number.not_yours",
                       number=e164)
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action="number.remove", target=e164)


async def proven_owner(conn: asyncpg.Connection, holder_id: uuid.UUID, number: str,
                       field: str = "number") -> str:
    """The number in E.164 if this holder has proven it; else NotFound/Refused naming `field`."""
    e164 = parse_number(number, field)
    state = await conn.fetchval("SELECT state FROM family_number WHERE holder_id = $1 AND "
                                "e164 = $2", holder_id, e164)
    if state is None:
        raise NotFound(field, f"{e164} is not one of your numbers", "number.not_yours",
                       number=e164)
    if state != "proven":
        raise Refused(field, f"{e164} is not proven yet: an operator or a call must prove it",
                      "number.not_proven", number=e164)
    return e164
