"""Prepaid accounts over HTTP: open, balance, statement pages, funding, adjustments, refunds.
An account is addressed by its number (+12125550142, URL-encoded or not) or its id
(prepaid:+12125550142), the same everywhere."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import asyncpg
from pydantic import Field, StringConstraints, model_validator

from ledger.money import AmountInvalid, format_amount, parse_amount
from switch.provisioning import directory
from web import cursors
from web import money as money_
from web.endpoints import REGISTRY
from web.endpoints.common import (PAGE_SIZE_DEFAULT, AmountIn, Cursor, Model, Money, PageLimit, Ref,
                                  Text, UtcDateTime)
from web.operations import Serialized
from web.problems import Conflict, NotFoundProblem, invalid
from web.roles import Right

AccountRef = Annotated[str, StringConstraints(min_length=1, max_length=64,
                                              pattern=r"^[A-Za-z0-9:+() .-]+$")]


class AccountPath(Model):
    account: AccountRef = Field(description="a phone number or an account id (prepaid:+1...)",
                                examples=["+12125550111", "prepaid:+12125550111"])


class AccountIn(Model):
    number: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    owner: Annotated[Text, StringConstraints(min_length=1, max_length=200)]


class AccountOut(Model):
    id: str
    number: str
    owner: str
    currency: str
    posted: Money
    pending: Money
    available: Money


async def _resolve(conn, ref: str) -> money_.PrepaidAccount:
    try:
        return await money_.resolve(conn, ref)
    except money_.AccountUnknown as e:
        raise NotFoundProblem(str(e)) from None


async def _account_out(conn, a: money_.PrepaidAccount) -> AccountOut:
    import ledger
    b = await ledger.balance(conn, a.ledger_account)
    return AccountOut(id=a.ledger_account, number=a.e164, owner=a.owner, currency=b.currency,
                      posted=format_amount(b.posted), pending=format_amount(b.pending),
                      available=format_amount(b.available))


def _positive(field: str, text: str) -> int:
    try:
        return parse_amount(text)
    except AmountInvalid as e:
        raise invalid("body", field, str(e)) from None


def _refused(e: money_.MoneyRefused) -> Conflict:
    return Conflict(f"{e.field}: {e}")


@REGISTRY.operation("POST", "/accounts", right=Right.MONEY_WRITE, tag="money",
                    summary="Open a prepaid account for a called number", body=AccountIn,
                    response=AccountOut, status=201)
async def open_account(call):
    b = call.body
    async with call.change() as conn:
        try:
            e164 = await directory.add_phone_account(conn, b.number, b.owner,
                                                     currency=call.services.currency)
        except directory.Invalid as e:
            field = "number" if str(e).startswith("number") else "owner"
            raise invalid("body", field, str(e)) from None
        acct = await money_.resolve(conn, e164)
        await call.audit(conn, "account.open", acct.ledger_account,
                         after={"number": e164, "owner": acct.owner})
        return await _account_out(conn, acct)


@REGISTRY.operation("GET", "/accounts/{account}", right=Right.MONEY_READ, tag="money",
                    summary="An account and its balance", path_model=AccountPath,
                    response=AccountOut)
async def get_account(call):
    async with call.pool.acquire() as conn:
        return await _account_out(conn, await _resolve(conn, call.path.account))


STATEMENT_CURSOR = ">qqq"        # last seq shown, posted balance and held after it


class StatementQuery(Model):
    since: UtcDateTime | None = None
    until: UtcDateTime | None = None
    cursor: Cursor | None = Field(None, description="next_cursor of the last page")
    limit: PageLimit = PAGE_SIZE_DEFAULT

    @model_validator(mode="after")
    def _range(self):
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class StatementLineOut(Model):
    seq: int
    at: dt.datetime
    transfer_id: uuid.UUID
    kind: Literal["single", "hold", "post", "void", "expire"]
    code: str
    ref: str
    counterparty: str
    posted_change: Money
    pending_change: Money
    balance: Money
    available: Money


class StatementPage(Model):
    account: str
    lines: list[StatementLineOut]
    next_cursor: str | None


@REGISTRY.operation("GET", "/accounts/{account}/statement", right=Right.MONEY_READ, tag="money",
                    summary="Statement lines by date range, oldest first, in keyset pages",
                    path_model=AccountPath, query=StatementQuery, response=StatementPage)
async def account_statement(call):
    q = call.query
    async with call.pool.acquire() as conn:
        acct = await _resolve(conn, call.path.account)
        key = await cursors.cursor_key(conn, call.services.cache)
        after = None
        if q.cursor is not None:
            try:
                after = cursors.unseal(key, STATEMENT_CURSOR, q.cursor)
            except cursors.CursorInvalid as e:
                raise invalid("query", "cursor", str(e)) from None
        lines, nxt = await money_.statement_page(conn, acct.ledger_account, since=q.since,
                                                 until=q.until, after=after, limit=q.limit)
    return Serialized(StatementPage, {
        "account": acct.ledger_account,
        "next_cursor": None if nxt is None else cursors.seal(key, STATEMENT_CURSOR, *nxt),
        "lines": [{"seq": ln.seq, "at": ln.at, "transfer_id": str(ln.transfer_id), "kind": ln.kind,
                   "code": ln.code, "ref": ln.ref, "counterparty": ln.counterparty,
                   "posted_change": format_amount(ln.posted_change),
                   "pending_change": format_amount(ln.pending_change),
                   "balance": format_amount(ln.balance),
                   "available": format_amount(ln.available)} for ln in lines]})


class FundIn(Model):
    amount: AmountIn
    ref: Ref = Field(description="the payment's reference: funding is idempotent on it")


class FundOut(Model):
    account: str
    amount: Money
    ref: str
    transfer_id: uuid.UUID
    result: Literal["ok", "exists"]


@REGISTRY.operation("POST", "/accounts/{account}/fund", right=Right.MONEY_WRITE, tag="money",
                    summary="Credit a payment; the same reference again changes nothing",
                    path_model=AccountPath, body=FundIn, response=FundOut)
async def fund_account(call):
    amount = _positive("amount", call.body.amount)
    try:       # the reference as the ledger keys it: `PAY-1 ` and `pay-1` are one payment
        ref = directory.normalize_ref(call.body.ref)
    except directory.Invalid as e:
        raise invalid("body", "ref", str(e)) from None
    async with call.change() as conn:
        acct = await _resolve(conn, call.path.account)
        prior = await conn.fetchrow("SELECT account, amount FROM funding_credit WHERE ref = $1",
                                    ref)
        if prior is not None and (prior["account"], prior["amount"]) != (acct.ledger_account,
                                                                         amount):
            raise Conflict(f"ref: reference {ref!r} was already used for another deposit "
                           f"({format_amount(prior['amount'])} to {prior['account']})")
        r = await directory.fund_phone_account(conn, acct.e164, amount, ref)
        if r.result == "ok":
            await call.audit(conn, "account.fund", acct.ledger_account,
                             after={"amount": amount, "ref": ref,
                                    "transfer_id": str(r.transfer_id)})
    return FundOut(account=acct.ledger_account, amount=format_amount(amount), ref=ref,
                   transfer_id=r.transfer_id, result=r.result)


class AdjustIn(Model):
    amount: AmountIn = Field(description="> 0 credits the account, < 0 debits it")
    reason: Annotated[Text, StringConstraints(min_length=1)]
    ref: Ref = Field(description="idempotency key of this adjustment")


class AdjustmentOut(Model):
    id: uuid.UUID
    ref: str
    account: str
    amount: Money
    reason: str
    state: Literal["pending", "applied", "rejected"]
    requested_by: str
    requested_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    transfer_id: uuid.UUID | None


def _adj_out(a: money_.Adjustment) -> AdjustmentOut:
    return AdjustmentOut(id=a.id, ref=a.ref, account=a.account, amount=format_amount(a.amount),
                         reason=a.reason, state=a.state, requested_by=a.requested_by,
                         requested_at=a.requested_at, decided_by=a.decided_by,
                         decided_at=a.decided_at, transfer_id=a.transfer_id)


@REGISTRY.operation("POST", "/accounts/{account}/adjustments", right=Right.MONEY_WRITE,
                    tag="money", summary="Adjust a balance with a reason (large ones wait for a "
                    "second operator)", path_model=AccountPath, body=AdjustIn,
                    response=AdjustmentOut)
async def adjust_account(call):
    try:
        amount = parse_amount(call.body.amount, allow_negative=True, allow_zero=True)
    except AmountInvalid as e:
        raise invalid("body", "amount", str(e)) from None
    if amount == 0:
        raise invalid("body", "amount", "must not be 0")
    async with call.pool.acquire() as conn:
        acct = await _resolve(conn, call.path.account)
        try:
            a = await money_.request_adjustment(
                conn, acct, amount=amount, reason=call.body.reason, ref=call.body.ref,
                actor=call.principal.actor, via="http",
                approval_above=call.services.settings.adjustment_approval_micros)
        except money_.MoneyRefused as e:
            raise _refused(e) from None
    return _adj_out(a)


class AdjustmentQuery(Model):
    state: Literal["pending", "applied", "rejected"] | None = None
    limit: PageLimit = PAGE_SIZE_DEFAULT


class AdjustmentList(Model):
    adjustments: list[AdjustmentOut]


@REGISTRY.operation("GET", "/adjustments", right=Right.MONEY_READ, tag="money",
                    summary="Adjustments, newest first (state=pending: those awaiting approval)",
                    query=AdjustmentQuery, response=AdjustmentList)
async def list_adjustments(call):
    async with call.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM adjustment WHERE $1::text IS NULL OR state = $1 "
                                "ORDER BY requested_at DESC, id LIMIT $2",
                                call.query.state, call.query.limit)
    return AdjustmentList(adjustments=[_adj_out(money_._adjustment(r)) for r in rows])


class AdjustmentPath(Model):
    adjustment: uuid.UUID


class DecisionIn(Model):
    decision: Literal["approve", "reject"]


@REGISTRY.operation("POST", "/adjustments/{adjustment}/decision", right=Right.MONEY_APPROVE,
                    tag="money", summary="A second operator approves or rejects an adjustment",
                    path_model=AdjustmentPath, body=DecisionIn, response=AdjustmentOut)
async def decide_adjustment(call):
    async with call.pool.acquire() as conn:
        try:
            a = await money_.decide_adjustment(conn, call.path.adjustment,
                                               approve=call.body.decision == "approve",
                                               actor=call.principal.actor, via="http")
        except money_.AccountUnknown as e:
            raise NotFoundProblem(str(e)) from None
        except money_.MoneyRefused as e:
            raise _refused(e) from None
    return _adj_out(a)


class RefundIn(Model):
    funding_ref: Ref = Field(description="the deposit's reference: the money goes back there")
    amount: AmountIn | None = Field(None, description="omitted: as much as may be refunded")


class RefundOut(Model):
    account: str
    funding_ref: str
    amount: Money
    transfer_id: uuid.UUID
    result: Literal["ok", "exists"]


@REGISTRY.operation("POST", "/accounts/{account}/refunds", right=Right.MONEY_WRITE, tag="money",
                    summary="Refund unused balance to the deposit it came from",
                    path_model=AccountPath, body=RefundIn, response=RefundOut)
async def refund_account(call):
    amount = None if call.body.amount is None else _positive("amount", call.body.amount)
    async with call.pool.acquire() as conn:
        acct = await _resolve(conn, call.path.account)
        try:
            r = await money_.refund(conn, acct, funding_ref=call.body.funding_ref, amount=amount,
                                    actor=call.principal.actor, via="http")
        except money_.MoneyRefused as e:
            raise _refused(e) from None
    return RefundOut(account=r.account, funding_ref=r.funding_ref, amount=format_amount(r.amount),
                     transfer_id=r.transfer_id, result=r.result)
