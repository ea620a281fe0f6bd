"""Refunds of unused prepaid balance, back to the payments it came from; the inactivity clock; and
low-balance notices.

A refund takes the account's available balance (never more, invariant F4) back to its confirmed
payments, newest first, each at most what it deposited minus what was refunded of it, as one
ledger transfer per payment (prepaid account -> refunds payable) whose id derives from the request
and the payment; then the provider returns each amount to the payment's own reference, retried
until it does (families.refund_delivery). Nothing is kept: no fee is charged on a refund.

Inactivity: an account with a balance and no deposit, call or request from its holder for the
profile's period (180 days) is refunded, and the holder told through the outbox.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import asyncpg

import ledger
from families import audit, outbox, refund_delivery
from families.errors import Refused
from families.payments import PAYMENT_NAMESPACE, Fees
from families.providers import PaymentProvider
from families.settings import FamilySettings
from switch.provisioning import directory

__all__ = ["RefundLine", "refund_balance", "refund_inactive", "idle_candidates", "last_activity",
           "low_balance_notices"]

log = logging.getLogger("ics.family")
REFUNDS_PAYABLE = "refunds_payable"


@dataclass(frozen=True)
class RefundLine:
    id: uuid.UUID
    payment_id: uuid.UUID
    provider_ref: str
    amount: int
    reason: str


async def refund_balance(pool: asyncpg.Pool, provider: PaymentProvider, *, e164: str, reason: str,
                         now: dt.datetime,
                         actor: str, request_id: uuid.UUID | None = None) -> list[RefundLine]:
    """Refund the available balance of the prepaid account of `e164` to its payments."""
    request_id = request_id or uuid.uuid4()
    account = directory.phone_account_id(e164)
    lines: list[RefundLine] = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            pays = await conn.fetch(
                "SELECT id, amount, refunded, provider_ref FROM family_payment WHERE account = $1 "
                "AND state = 'confirmed' AND amount > refunded ORDER BY created_at DESC, id "
                "FOR UPDATE", account)
            try:
                available = (await ledger.balance(conn, account)).available
            except ledger.AccountNotFound:
                raise Refused("number", f"{e164} has no prepaid account",
                              "refund.no_prepaid_account") from None
            if available <= 0:
                raise Refused("number", f"{e164} has no unused balance to refund",
                              "refund.nothing_to_refund")
            if not pays:
                raise Refused("number", "the balance came from no card payment of the family "
                              "portal: ask an operator to refund it", "refund.not_from_portal")
            left = available
            transfers = []
            for p in pays:
                take = min(left, p["amount"] - p["refunded"])
                if take <= 0:
                    break
                rid = uuid.uuid5(PAYMENT_NAMESPACE, f"refund:{request_id}:{p['id']}")
                transfers.append(ledger.Transfer(
                    id=rid, kind=ledger.TransferKind.SINGLE, debit=account, credit=REFUNDS_PAYABLE,
                    amount=take, code=ledger.TransferCode.REFUND, ref=p["provider_ref"]))
                lines.append(RefundLine(rid, p["id"], p["provider_ref"], take, reason))
                left -= take
            currency = await conn.fetchval("SELECT currency FROM ledger_account WHERE id = $1",
                                           account) or "USD"
            await directory.ensure_house_accounts(conn, currency)
            results = await ledger.submit(conn, transfers)
            if not all(r.succeeded for r in results):
                raise Refused("number", "the ledger refused the refund: "
                              + ", ".join(r.result.name.lower() for r in results),
                              "refund.ledger_refused")
            for ln in lines:
                await conn.execute(
                    "INSERT INTO family_refund (id, request_id, payment_id, amount, reason, "
                    "provider_ref, created_at, state, next_attempt_at) VALUES ($1, $2, $3, $4, "
                    "$5, $6, $7, 'pending', $7)",
                    ln.id, request_id, ln.payment_id, ln.amount, reason, ln.provider_ref, now)
                await conn.execute("UPDATE family_payment SET refunded = refunded + $2 "
                                   "WHERE id = $1", ln.payment_id, ln.amount)
            await audit.record(conn, at=now, actor=actor, action=f"refund.{reason}",
                               target=account, detail={"request": str(request_id), "lines": [
                                   {"payment": str(ln.payment_id), "amount": ln.amount,
                                    "provider_ref": ln.provider_ref} for ln in lines]})
    # After the commit: the money is owed (refunds payable) whatever the provider says now. A
    # failure leaves the line pending; the family sweep sends it again (refund_delivery).
    await refund_delivery.deliver(pool, provider, now=now, ids=[ln.id for ln in lines])
    return lines


async def last_activity(conn: asyncpg.Connection, e164: str) -> dt.datetime | None:
    """The last deposit, call or request from the number's holder: restarts the clock."""
    account = directory.phone_account_id(e164)
    last: dt.datetime | None = await conn.fetchval(
        """SELECT greatest(
               (SELECT max(created_at) FROM family_payment WHERE account = $1),
               (SELECT max(ended_at) FROM cdr WHERE funding_account = $1),
               (SELECT max(h.last_request_at) FROM family_number n JOIN family_holder h
                  ON h.id = n.holder_id WHERE n.e164 = $2 AND n.state = 'proven'),
               (SELECT max(proven_at) FROM family_number WHERE e164 = $2))""", account, e164)
    return last


_NOTICE = {"en": ("Your unused balance is being refunded",
                  "Your prepaid account for {number} has had no deposit, call or request for "
                  "{days} days, so its unused balance of {amount} is being returned to the card "
                  "it came from. Nothing is kept."),
           "es": ("Le estamos reembolsando su saldo no usado",
                  "Su cuenta prepagada de {number} no tuvo depósitos, llamadas ni solicitudes "
                  "en {days} días, así que su saldo no usado de {amount} se devuelve a la tarjeta "
                  "de origen. No se retiene nada.")}


def _fmt(micros: int) -> str:
    return f"${micros // 1_000_000}.{micros % 1_000_000 // 10_000:02d}"


async def idle_candidates(conn: asyncpg.Connection, *, idle_since: dt.datetime
                          ) -> list[asyncpg.Record]:
    """Proven numbers with money left and no deposit, call, request or proof after `idle_since`
    (the shortest inactivity period of any profile): the only ones the inactivity sweep needs to
    look at closely. One query on indexes (family_payment_account, cdr_funding_account), however
    many numbers there are."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT n.e164, n.holder_id, h.email, h.language
           FROM family_number n JOIN family_holder h ON h.id = n.holder_id
           JOIN ledger_account_balance b ON b.id = 'prepaid:' || n.e164
           WHERE n.state = 'proven' AND n.proven_at <= $1
             AND coalesce(h.last_request_at, '-infinity') <= $1
             AND b.credits_posted - b.debits_posted - b.debits_pending > 0
             AND NOT EXISTS (SELECT 1 FROM family_payment p WHERE p.account = b.id
                             AND p.created_at > $1)
             AND NOT EXISTS (SELECT 1 FROM cdr c WHERE c.funding_account = b.id
                             AND c.ended_at > $1)
           ORDER BY n.e164""", idle_since)
    return rows


async def refund_inactive(pool: asyncpg.Pool, fees: Fees, provider: PaymentProvider, *,
                          now: dt.datetime) -> list[RefundLine]:
    """Refund every proven number's balance idle past its profile's period; tell its holder."""
    shortest = min((s.inactivity_refund_days for s in fees.schedules.values()), default=180)
    async with pool.acquire() as conn:
        rows = await idle_candidates(conn, idle_since=now - dt.timedelta(days=shortest))
    done: list[RefundLine] = []
    for r in rows:
        async with pool.acquire() as conn:
            # The candidate's own profile may give it longer: the exact check, one number.
            schedule = await fees.for_number(conn, r["e164"])
            last = await last_activity(conn, r["e164"])
            try:
                available = (await ledger.balance(
                    conn, directory.phone_account_id(r["e164"]))).available
            except ledger.AccountNotFound:
                continue
        if available <= 0 or last is None or \
                now - last < dt.timedelta(days=schedule.inactivity_refund_days):
            continue
        try:
            lines = await refund_balance(pool, provider, e164=r["e164"], reason="inactivity",
                                         now=now, actor="node:inactivity")
        except Refused as e:
            log.info("inactivity refund of %s skipped: %s", r["e164"], e)
            continue
        subject, body = _NOTICE[r["language"]]
        async with pool.acquire() as conn:
            await outbox.enqueue(conn, at=now, holder_id=r["holder_id"], recipient=r["email"],
                                 kind="inactivity_refund", subject=subject, body=body.format(
                                     number=r["e164"], days=schedule.inactivity_refund_days,
                                     amount=_fmt(sum(ln.amount for ln in lines))))
        done += lines
    return done


_LOW = {"en": ("Your prepaid balance is low",
               "The prepaid account for {number} has {amount} left. Calls stop when it runs out."),
        "es": ("Su saldo prepagado es bajo",
               "La cuenta prepagada de {number} tiene {amount}. Las llamadas se detienen cuando "
               "se agota.")}


async def low_balance_notices(conn: asyncpg.Connection, settings: FamilySettings, *,
                              now: dt.datetime) -> int:
    """Mail each holder whose funded number fell below `low_balance`, once per dip (a deposit
    clears the notice)."""
    rows = await conn.fetch(
        """SELECT n.e164, n.holder_id, h.email, h.language, b.credits_posted - b.debits_posted
                  - b.debits_pending AS available, n.e164 AS number
           FROM family_number n JOIN family_holder h ON h.id = n.holder_id
           JOIN ledger_account_balance b ON b.id = 'prepaid:' || n.e164
           WHERE n.state = 'proven'
             AND b.credits_posted - b.debits_posted - b.debits_pending < $1
             AND EXISTS (SELECT 1 FROM family_payment p WHERE p.account = b.id
                         AND p.state = 'confirmed')
             AND NOT EXISTS (SELECT 1 FROM family_notice x WHERE x.account = b.id
                             AND x.kind = 'low_balance')""", settings.low_balance)
    for r in rows:
        account = directory.phone_account_id(r["e164"])
        async with conn.transaction():
            made = await conn.fetchval("INSERT INTO family_notice (account, kind, at) VALUES "
                                       "($1, 'low_balance', $2) ON CONFLICT DO NOTHING "
                                       "RETURNING true", account, now)
            if made:
                subject, body = _LOW[r["language"]]
                await outbox.enqueue(conn, at=now, holder_id=r["holder_id"],
                                     recipient=r["email"], kind="low_balance", subject=subject,
                                     body=body.format(number=r["e164"],
                                                      amount=_fmt(int(r["available"]))))
    return len(rows)
