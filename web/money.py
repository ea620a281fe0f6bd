"""Prepaid accounts as operators handle them: addressed by number or id, statements by date range
in keyset pages, adjustments (a second operator approves large ones) and refunds of unused
balance to the funding reference. Every movement is one ledger transfer whose id is derived from
its idempotency key, written with its audit row in one transaction.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

import ledger
from ledger.money import format_amount
from switch.provisioning.directory import Invalid, normalize_ref, phone_account_id
from switch.rules.numbers import InvalidNumber, to_e164
from web import audit
from web.errors import WebError

__all__ = ["PrepaidAccount", "MoneyRefused", "AccountUnknown", "resolve", "StatementLine",
           "statement_page", "Adjustment", "request_adjustment", "decide_adjustment",
           "RefundDone", "refund", "REVENUE", "REFUNDS_PAYABLE"]

REVENUE = "revenue"                       # adjustments come out of, or go back to, the operator
REFUNDS_PAYABLE = "refunds_payable"       # refunds owed back to the payment processor
MONEY_NAMESPACE = uuid.UUID("8d3c6f2e-0b8a-4e51-9a61-7e0c5b2a9d41")
PREPAID_PREFIX = "prepaid:"


class AccountUnknown(WebError, LookupError):
    """No prepaid or inmate account answers to what was given."""


class MoneyRefused(WebError):
    """The movement conflicts with the account's state; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, where=field)
        self.field = field


@dataclass(frozen=True)
class PrepaidAccount:
    e164: str
    ledger_account: str
    owner: str


async def resolve(conn: asyncpg.Connection, ref: str) -> PrepaidAccount:
    """One way to address an account everywhere: its phone number (any common spelling) or its
    id (``prepaid:+12125550142``)."""
    text = ref[len(PREPAID_PREFIX):] if ref.startswith(PREPAID_PREFIX) else ref
    try:
        e164 = to_e164(text)
    except InvalidNumber as e:
        raise AccountUnknown(f"{ref!r} is neither a phone number nor an account id ({e})") from None
    row = await conn.fetchrow("SELECT e164, ledger_account, owner FROM phone_account "
                              "WHERE e164 = $1", e164)
    if row is None:
        raise AccountUnknown(f"no prepaid account {phone_account_id(e164)}")
    return PrepaidAccount(row["e164"], row["ledger_account"], row["owner"])


@dataclass(frozen=True)
class StatementLine:
    seq: int
    at: dt.datetime
    transfer_id: uuid.UUID
    kind: str
    code: str
    ref: str
    counterparty: str
    posted_change: int
    pending_change: int
    balance: int
    available: int


# Per transfer as the account sees it: the signed change to posted, to net pending, and to held
# debits (which lower what is available). As ledger.statements computes them. `{side}` is the
# account's column in this branch: a page is two index-ordered scans, one per side (an OR of the
# two would read every later line of the account and sort them, for every page).
_BRANCH = """
    (SELECT t.seq, t.created_at, t.id, t.kind, t.code, t.ref,
            t.{other} AS counterparty,
            {sign} * CASE WHEN t.kind IN (1, 3) THEN t.amount ELSE 0 END AS posted,
            {sign} * CASE t.kind WHEN 2 THEN t.amount WHEN 1 THEN 0 ELSE -h.amount END
                AS pending,
            {held} AS held
     FROM ledger_transfer t
     LEFT JOIN ledger_transfer h ON h.id = t.pending_id
     WHERE t.{side} = $1 {where}
     ORDER BY t.seq {limit})"""
_HELD = "CASE t.kind WHEN 2 THEN t.amount WHEN 1 THEN 0 ELSE -h.amount END"


def _lines_sql(where: str, limit: str = "") -> str:
    debit = _BRANCH.format(side="debit_account_id", other="credit_account_id", sign="-1",
                           held=_HELD, where=where, limit=limit)
    credit = _BRANCH.format(side="credit_account_id", other="debit_account_id", sign="1",
                            held="0", where=where, limit=limit)
    return f"{debit} UNION ALL {credit}"


async def statement_page(conn: asyncpg.Connection, account: str, *, since: dt.datetime | None,
                         until: dt.datetime | None, after: tuple[int, int, int] | None,
                         limit: int) -> tuple[list[StatementLine], tuple[int, int, int] | None]:
    """Lines in order (oldest first) within [since, until) with the running posted and available
    balances, and where the next page starts: (last seq, posted balance, held) or None.

    `after` is the previous page's continuation, balances included, so a page costs the same
    however deep it is. Only the first page of a range that starts after the account's first
    line sums what came before it (once)."""
    after_seq = None if after is None else after[0]
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        rows = await conn.fetch(
            "SELECT * FROM (" + _lines_sql(
                "AND t.seq > coalesce($2::bigint, 0) "
                "AND t.created_at >= coalesce($3::timestamptz, '-infinity') "
                "AND t.created_at < coalesce($4::timestamptz, 'infinity')", "LIMIT $5")
            + ") page ORDER BY seq LIMIT $5",
            account, after_seq, since, until, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if not rows:
            return [], None
        if after is not None:
            balance, held = after[1], after[2]
        elif since is None:
            balance, held = 0, 0          # the range starts at the account's first line
        else:
            opening = await conn.fetchrow(
                "SELECT coalesce(sum(posted), 0) AS posted, coalesce(sum(held), 0) AS held "
                "FROM (" + _lines_sql("AND t.seq < $2") + ") before", account, rows[0]["seq"])
            balance, held = int(opening["posted"]), int(opening["held"])
    lines = []
    for r in rows:
        balance += int(r["posted"])
        held += int(r["held"])
        lines.append(StatementLine(r["seq"], r["created_at"], r["id"],
                                   ledger.TransferKind(r["kind"]).name.lower(), r["code"],
                                   r["ref"], r["counterparty"], int(r["posted"]),
                                   int(r["pending"]), balance, balance - held))
    return lines, ((lines[-1].seq, balance, held) if more else None)


@dataclass(frozen=True)
class Adjustment:
    id: uuid.UUID
    ref: str
    account: str
    amount: int
    reason: str
    state: str                  # pending | applied | rejected
    requested_by: str
    requested_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    transfer_id: uuid.UUID | None
    created: bool = False       # this request made it (False: an earlier request with this ref)

    def as_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, uuid.UUID) else
                    v.isoformat() if isinstance(v, dt.datetime) else v)
                for k, v in self.__dict__.items() if k != "created"}


def _adjustment(r, created: bool = False) -> Adjustment:
    return Adjustment(r["id"], r["ref"], r["account"], r["amount"], r["reason"], r["state"],
                      r["requested_by"], r["requested_at"], r["decided_by"], r["decided_at"],
                      r["transfer_id"], created)


async def _move(conn, transfer_id: uuid.UUID, debit: str, credit: str, amount: int,
                code: ledger.TransferCode, ref: str, field: str) -> None:
    currency = await conn.fetchval("SELECT currency FROM ledger_account WHERE id = $1", debit)
    from switch.provisioning.directory import ensure_house_accounts
    await ensure_house_accounts(conn, currency or "USD")
    [result] = await ledger.submit(conn, [ledger.Transfer(
        id=transfer_id, kind=ledger.TransferKind.SINGLE, debit=debit, credit=credit,
        amount=amount, code=code, ref=ref[:200])])
    if not result.succeeded:
        raise MoneyRefused(field, f"the ledger refused it: {result.result.name.lower()}")


async def _apply(conn, adj_id: uuid.UUID, account: str, amount: int, ref: str) -> uuid.UUID:
    transfer_id = uuid.uuid5(MONEY_NAMESPACE, f"adjustment:{adj_id}")
    debit, credit = (REVENUE, account) if amount > 0 else (account, REVENUE)
    await _move(conn, transfer_id, debit, credit, abs(amount), ledger.TransferCode.ADJUSTMENT,
                ref, "amount")
    return transfer_id


async def request_adjustment(conn: asyncpg.Connection, acct: PrepaidAccount, *, amount: int,
                             reason: str, ref: str, actor: str, via: str,
                             approval_above: int) -> Adjustment:
    """Credit (> 0) or debit (< 0) an account with a reason. At most `approval_above` in size it
    applies now; larger, it waits for another operator. Idempotent on `ref`."""
    if amount == 0:
        raise MoneyRefused("amount", "an adjustment moves a non-zero amount")
    if not reason.strip():
        raise MoneyRefused("reason", "give the reason for the adjustment")
    async with conn.transaction():
        prior = await conn.fetchrow("SELECT * FROM adjustment WHERE ref = $1", ref)
        if prior is not None:
            if (prior["account"], prior["amount"]) != (acct.ledger_account, amount):
                raise MoneyRefused("ref", f"reference {ref!r} was used for another adjustment "
                                   f"({format_amount(prior['amount'])} to {prior['account']})")
            return _adjustment(prior)
        adj_id = uuid.uuid5(MONEY_NAMESPACE, f"adjustment-ref:{ref}")
        pending = abs(amount) > approval_above
        transfer_id = None if pending else await _apply(conn, adj_id, acct.ledger_account,
                                                        amount, ref)
        row = await conn.fetchrow(
            "INSERT INTO adjustment (id, ref, account, amount, reason, state, requested_by, "
            "transfer_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            adj_id, ref, acct.ledger_account, amount, reason.strip(),
            "pending" if pending else "applied", actor, transfer_id)
        adj = _adjustment(row, created=True)
        await audit.record(conn, actor=actor, via=via, action="account.adjust",
                           target=acct.ledger_account, after=adj.as_dict())
    return adj


def _person(actor: str) -> str:
    """Who an actor is for the two-person rule. A shell user's `--operator NAME` is their own
    claim (``cli:alice as bob``), so from the CLI the OS user is the person: naming another
    operator does not make a second one."""
    return actor.split(" as ", 1)[0] if actor.startswith("cli:") else actor


async def decide_adjustment(conn: asyncpg.Connection, adj_id: uuid.UUID, *, approve: bool,
                            actor: str, via: str) -> Adjustment:
    """A second operator approves (the money moves now) or rejects a pending adjustment."""
    async with conn.transaction():
        row = await conn.fetchrow("SELECT * FROM adjustment WHERE id = $1 FOR UPDATE", adj_id)
        if row is None:
            raise AccountUnknown(f"no adjustment {adj_id}")
        before = _adjustment(row)
        if row["state"] != "pending":
            raise MoneyRefused("adjustment", f"adjustment {adj_id} is already {row['state']}")
        if _person(row["requested_by"]) == _person(actor):
            raise MoneyRefused("adjustment", "a second operator must decide: you requested it")
        transfer_id = None
        if approve:
            transfer_id = await _apply(conn, adj_id, row["account"], row["amount"], row["ref"])
        row = await conn.fetchrow(
            "UPDATE adjustment SET state = $2, decided_by = $3, decided_at = now(), "
            "transfer_id = $4 WHERE id = $1 RETURNING *",
            adj_id, "applied" if approve else "rejected", actor, transfer_id)
        after = _adjustment(row)
        await audit.record(conn, actor=actor, via=via,
                           action="adjustment.approve" if approve else "adjustment.reject",
                           target=row["account"], before=before.as_dict(), after=after.as_dict())
    return after


@dataclass(frozen=True)
class RefundDone:
    funding_ref: str
    account: str
    amount: int
    transfer_id: uuid.UUID
    result: str                 # ok | exists


async def refund(conn: asyncpg.Connection, acct: PrepaidAccount, *, funding_ref: str,
                 amount: int | None, actor: str, via: str) -> RefundDone:
    """Pay unused balance back to the payment it came from: at most that payment's amount and at
    most what the account has available. One refund per funding reference (a retry answers the
    first); `amount` None refunds as much as allowed."""
    if amount is not None and amount <= 0:
        raise MoneyRefused("amount", "a refund moves a positive amount")
    try:       # deposits are keyed by their normalized reference
        funding_ref = normalize_ref(funding_ref)
    except Invalid as e:
        raise MoneyRefused("funding_ref", str(e)) from None
    async with conn.transaction():
        funded = await conn.fetchrow("SELECT account, amount FROM funding_credit WHERE ref = $1",
                                     funding_ref)
        if funded is None or funded["account"] != acct.ledger_account:
            raise MoneyRefused("funding_ref", f"no deposit with reference {funding_ref!r} to "
                               f"{acct.ledger_account}")
        prior = await conn.fetchrow("SELECT * FROM refund WHERE funding_ref = $1 FOR UPDATE",
                                    funding_ref)
        if prior is not None:
            if amount is not None and amount != prior["amount"]:
                raise MoneyRefused("funding_ref", f"deposit {funding_ref!r} was already refunded "
                                   f"({format_amount(prior['amount'])})")
            return RefundDone(funding_ref, prior["account"], prior["amount"],
                              prior["transfer_id"], "exists")
        available = (await ledger.balance(conn, acct.ledger_account)).available
        limit = min(available, funded["amount"])
        want = limit if amount is None else amount
        if want <= 0:
            raise MoneyRefused("amount", "nothing to refund: the account has no available balance")
        if want > limit:
            raise MoneyRefused("amount", f"at most {format_amount(limit)} can be refunded "
                               f"(deposit {format_amount(funded['amount'])}, available "
                               f"{format_amount(available)})")
        transfer_id = uuid.uuid5(MONEY_NAMESPACE, f"refund:{funding_ref}")
        await _move(conn, transfer_id, acct.ledger_account, REFUNDS_PAYABLE, want,
                    ledger.TransferCode.REFUND, funding_ref, "amount")
        await conn.execute("INSERT INTO refund (funding_ref, account, amount, transfer_id, "
                           "requested_by) VALUES ($1, $2, $3, $4, $5)",
                           funding_ref, acct.ledger_account, want, transfer_id, actor)
        done = RefundDone(funding_ref, acct.ledger_account, want, transfer_id, "ok")
        await audit.record(conn, actor=actor, via=via, action="account.refund",
                           target=acct.ledger_account,
                           after={"funding_ref": funding_ref, "amount": want,
                                  "transfer_id": str(transfer_id)})
    return done
