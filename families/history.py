"""A holder's history: the calls their proven numbers received (date, number, duration, cost,
facility) and their money (deposits, fees, refunds), as rows, as CSV, and per month."""
from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg

from families.errors import FieldInvalid

if TYPE_CHECKING:
    from families.payments import Fees

__all__ = ["calls", "money_lines", "to_csv", "month_range", "CALLS_MAX"]

CALLS_MAX = 1000


def month_range(month: str) -> tuple[dt.datetime, dt.datetime]:
    """'2026-03' -> [2026-03-01, 2026-04-01) in UTC."""
    try:
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise FieldInvalid("month", "give a month as YYYY-MM", "month.format",
                           value=month) from None
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


async def calls(conn: asyncpg.Connection, holder_id: uuid.UUID, *, since: dt.datetime | None = None,
                until: dt.datetime | None = None, limit: int = CALLS_MAX) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT c.ended_at AS date, c.e164 AS number, c.talk_seconds AS duration_seconds,
                  c.total_micros AS cost, f.name AS facility, c.disposition
           FROM cdr c JOIN family_number n ON n.e164 = c.e164 AND n.state = 'proven'
           JOIN facility f ON f.id = c.facility_id
           WHERE n.holder_id = $1 AND c.ended_at >= coalesce($2, '-infinity'::timestamptz)
             AND c.ended_at < coalesce($3, 'infinity'::timestamptz)
           ORDER BY c.ended_at DESC, c.call_id LIMIT $4""", holder_id, since, until, limit)
    return [dict(r) for r in rows]


async def money_lines(conn: asyncpg.Connection, holder_id: uuid.UUID, *,
                      since: dt.datetime | None = None,
                      until: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Deposits and their fees (confirmed payments), and refunds, newest first."""
    rows = await conn.fetch(
        """SELECT * FROM (
             SELECT p.decided_at AS date, 'deposit' AS kind, p.target, p.amount, p.provider_ref
               FROM family_payment p WHERE p.holder_id = $1 AND p.state = 'confirmed'
             UNION ALL
             SELECT p.decided_at, 'fee', p.target, p.fee, p.provider_ref
               FROM family_payment p WHERE p.holder_id = $1 AND p.state = 'confirmed'
                AND p.fee > 0
             UNION ALL
             SELECT r.created_at, 'refund', p.target, r.amount, r.provider_ref
               FROM family_refund r JOIN family_payment p ON p.id = r.payment_id
              WHERE p.holder_id = $1) m
           WHERE date >= coalesce($2, '-infinity'::timestamptz)
             AND date < coalesce($3, 'infinity'::timestamptz)
           ORDER BY date DESC, kind""", holder_id, since, until)
    return [dict(r) for r in rows]


def _money(micros: int) -> str:
    sign = "-" if micros < 0 else ""
    micros = abs(int(micros))
    return f"{sign}{micros // 1_000_000}.{micros % 1_000_000 // 10_000:02d}"


def _cell(v: object) -> str:
    text = v.isoformat() if isinstance(v, dt.datetime) else str(v)
    # A cell a spreadsheet would run as a formula is quoted as text (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and \
        not text.lstrip("+-").replace(".", "").isdigit() else text


def to_csv(rows: list[dict[str, Any]], columns: list[str], money_columns: tuple[str,
           ...] = ()) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_money(r[c]) if c in money_columns else _cell(r[c]) for c in columns])
    return out.getvalue()


async def order_statement(conn: asyncpg.Connection, fees: Fees, *, holder_id: uuid.UUID,
                          e164: str, month: str, delivery: str,
                          now: dt.datetime) -> dict[str, Any]:
    """A month's statement of one proven number, mailed (electronic: free) or posted (paper: the
    profile's fee, taken from the prepaid balance). Ordering the same month and delivery again
    charges nothing more (the fee's transfer id derives from them)."""
    import uuid

    import ledger
    from families import audit, outbox
    from families.errors import Invalid, Refused
    from families.fees import Channel, fee_for
    from families.payments import PAYMENT_NAMESPACE, REVENUE
    from switch.provisioning import directory
    try:
        since, until = month_range(month)
    except FieldInvalid as e:
        raise Invalid("month", e.message, "month.format", value=month) from None
    if delivery not in ("paper", "electronic"):
        raise Invalid("delivery", "paper or electronic", "statement.delivery")
    channel = Channel.PAPER_STATEMENT if delivery == "paper" else Channel.ELECTRONIC_STATEMENT
    fee = fee_for(await fees.for_number(conn, e164), channel, fees.settings)
    account = directory.phone_account_id(e164)
    async with conn.transaction():
        cs = [c for c in await calls(conn, holder_id, since=since, until=until)
              if c["number"] == e164]
        lines = [f"{c['date']:%Y-%m-%d %H:%M} {c['facility']}: {c['duration_seconds']} s, "
                 f"{_money(c['cost'])}" for c in cs]
        text = (f"Statement of {e164} for {month}\n\n" + ("\n".join(lines) or "no calls")
                + f"\n\ncalls: {len(cs)}, total {_money(sum(c['cost'] for c in cs))}"
                + (f"\nstatement fee: {_money(fee.amount)} ({fee.profile}: {fee.rule})"
                   if fee.amount else ""))
        transfer = None
        if fee.amount:
            transfer = uuid.uuid5(PAYMENT_NAMESPACE, f"statement:{e164}:{month}:{delivery}")
            [r] = await ledger.submit(conn, [ledger.Transfer(
                id=transfer, kind=ledger.TransferKind.SINGLE, debit=account, credit=REVENUE,
                amount=fee.amount, code=ledger.TransferCode.FEE, ref=f"statement {month}")])
            if not r.succeeded:
                raise Refused("delivery", f"the paper statement costs {_money(fee.amount)} "
                              f"and the balance cannot pay it ({r.result.name.lower()})",
                              "statement.fee_unpaid", fee=_money(fee.amount))
            if r.result.name == "EXISTS":
                return {"fee": fee.amount, "profile": fee.profile, "calls": len(cs),
                        "repeat": True}
        h = await conn.fetchrow("SELECT email FROM family_holder WHERE id = $1", holder_id)
        await outbox.enqueue(conn, at=now, holder_id=holder_id, recipient=h["email"],
                             kind=f"{delivery}_statement", subject=f"Statement {month} ({e164})",
                             body=text)
        await audit.record(conn, at=now, actor=audit.holder_actor(holder_id),
                           action=f"statement.{delivery}", target=account,
                           detail={"month": month, "fee": fee.amount,
                                   "transfer": str(transfer) if transfer else None})
    return {"fee": fee.amount, "profile": fee.profile, "calls": len(cs), "repeat": False}
