"""The family API, money: owned numbers, fee quotes, payments (prepaid accounts and inmates'
debit accounts), the provider's signed webhook, and refunds of unused balance."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import asyncpg
from pydantic import Field, StringConstraints

import ledger
from families import numbers, payments, refunds
from families.fees import Channel
from families.settings import parse_amount
from families.providers import ChargeState, ProviderAnswer, WebhookRefused, verify_webhook
from web import problems
from web.dispatch import Call
from web.endpoints import REGISTRY
from ledger.money import format_amount as money
from web.endpoints.common import Model, Money
from web.endpoints.family_common import (Amount, IdemKey, NumberText, fam, family_problems,
                                         holder, micros_of)
from web.family import webhook_key
from web.roles import Right

TAG = "family"
CardToken = Annotated[str, StringConstraints(pattern=r"^tok_[a-z0-9_]{1,60}$"),
                      Field(description="the provider's card token (test provider: tok_approve, "
                                        "tok_decline, tok_error, tok_timeout)")]
InmateId = Annotated[str, StringConstraints(pattern=r"^[0-9]{3,15}$")]


class NumberIn(Model):
    number: NumberText


class NumberOut(Model):
    number: str
    state: Literal["unproven", "proven"]
    created_at: dt.datetime
    proven_at: dt.datetime | None
    account: str | None
    balance: Money | None


class NumberList(Model):
    numbers: list[NumberOut]


class NumberPath(Model):
    number: NumberText


async def _number_out(conn: asyncpg.Connection, n: numbers.OwnedNumber) -> NumberOut:
    bal = None
    if n.account is not None:
        try:
            bal = money((await ledger.balance(conn, n.account)).available)
        except ledger.AccountNotFound:
            bal = None
    return NumberOut(number=n.e164, state=n.state, created_at=n.created_at,
                     proven_at=n.proven_at, account=n.account, balance=bal)


@REGISTRY.operation("GET", "/family/numbers", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Your numbers and their prepaid balances", response=NumberList)
async def family_numbers(call: Call) -> NumberList:
    async with call.pool.acquire() as conn:
        return NumberList(numbers=[await _number_out(conn, n)
                                   for n in await numbers.numbers_of(conn, holder(call))])


@REGISTRY.operation("POST", "/family/numbers", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Claim a number you own (an operator or a call proves it)",
                    body=NumberIn, response=NumberOut, status=201)
async def family_claim_number(call: Call) -> NumberOut:
    async with call.pool.acquire() as conn:
        with family_problems():
            n = await numbers.claim(conn, holder(call), call.body.number,
                                    now=call.services.clock())
        return await _number_out(conn, n)


@REGISTRY.operation("DELETE", "/family/numbers/{number}", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Give a number up", path_model=NumberPath,
                    response=NumberList)
async def family_remove_number(call: Call) -> NumberList:
    async with call.pool.acquire() as conn:
        with family_problems("path"):
            await numbers.remove(conn, holder(call), call.path.number,
                                 now=call.services.clock())
        return NumberList(numbers=[await _number_out(conn, n)
                                   for n in await numbers.numbers_of(conn, holder(call))])


class ProveIn(Model):
    holder: uuid.UUID
    number: NumberText


@REGISTRY.operation("POST", "/family-numbers/prove", right=Right.MONEY_WRITE, tag="family-staff",
                    summary="An operator proves that a holder owns a number (opens its prepaid "
                    "account)", body=ProveIn, response=NumberOut)
async def prove_family_number(call: Call) -> NumberOut:
    async with call.pool.acquire() as conn:
        with family_problems():
            n = await numbers.prove(conn, call.body.holder, call.body.number,
                                    by=call.principal.actor, now=call.services.clock(),
                                    currency=call.services.currency)
        return await _number_out(conn, n)


# -- payments -------------------------------------------------------------------------------

class QuoteQuery(Model):
    amount: Amount
    number: NumberText | None = None
    inmate: InmateId | None = None


class QuoteOut(Model):
    amount: Money
    fee: Money
    total: Money
    profile: str
    rule: str


@REGISTRY.operation("GET", "/family/quote", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="What a payment would cost: the fee its regulatory profile allows",
                    query=QuoteQuery, response=QuoteOut)
async def family_quote(call: Call) -> QuoteOut:
    q, f = call.query, fam(call)
    amount = micros_of("amount", q.amount)
    if (q.number is None) == (q.inmate is None):
        raise problems.invalid("query", "number", "give a number or an inmate (one of them)")
    async with call.pool.acquire() as conn:
        with family_problems("query"):
            if q.number is not None:
                fee = await payments.quote_prepaid(conn, f.fees, numbers.parse_number(q.number))
            else:
                fee = await payments.quote_inmate(conn, f.fees, q.inmate)
    return QuoteOut(amount=money(amount), fee=money(fee.amount), total=money(amount + fee.amount),
                    profile=fee.profile, rule=fee.rule)


class DepositIn(Model):
    amount: Amount
    card_token: CardToken
    idempotency_key: IdemKey


class PaymentOut(Model):
    id: uuid.UUID
    purpose: Literal["prepaid", "inmate"]
    target: str
    amount: Money
    fee: Money
    total: Money
    profile: str
    fee_rule: str
    state: Literal["pending", "confirmed", "declined", "failed"]
    reason: str
    provider_ref: str | None
    refunded: Money
    created_at: dt.datetime
    decided_at: dt.datetime | None


class PaymentList(Model):
    payments: list[PaymentOut]


def _payment_out(p: payments.Payment) -> PaymentOut:
    return PaymentOut(id=p.id, purpose=p.purpose, target=p.target, amount=money(p.amount),
                      fee=money(p.fee), total=money(p.total), profile=p.profile,
                      fee_rule=p.fee_rule, state=p.state, reason=p.reason,
                      provider_ref=p.provider_ref, refunded=money(p.refunded),
                      created_at=p.created_at, decided_at=p.decided_at)


async def _pay(call: Call, purpose: str, target: str) -> PaymentOut:
    f = fam(call)
    amount = micros_of("amount", call.body.amount)
    with family_problems():
        p = await payments.pay(call.pool, f.fees, f.provider, holder_id=holder(call),
                               purpose=purpose, target=target, amount=amount,
                               idem_key=call.body.idempotency_key, token=call.body.card_token,
                               now=call.services.clock())
    return _payment_out(p)


@REGISTRY.operation("POST", "/family/numbers/{number}/deposits", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Fund the prepaid account of a proven number (the "
                    "same idempotency key pays once)", path_model=NumberPath, body=DepositIn,
                    response=PaymentOut, status=201)
async def family_fund_number(call: Call) -> PaymentOut:
    async with call.pool.acquire() as conn:
        with family_problems("path"):
            e164 = await numbers.proven_owner(conn, holder(call), call.path.number)
    return await _pay(call, "prepaid", e164)


class InmatePath(Model):
    inmate: InmateId


@REGISTRY.operation("POST", "/family/inmates/{inmate}/deposits", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Send money to an inmate's debit account (within the "
                    "facility's monthly limit)", path_model=InmatePath, body=DepositIn,
                    response=PaymentOut, status=201)
async def family_fund_inmate(call: Call) -> PaymentOut:
    return await _pay(call, "inmate", call.path.inmate)


@REGISTRY.operation("GET", "/family/payments", right=Right.FAMILY, tag=TAG, auth="holder",
                    summary="Your payments, newest first", response=PaymentList)
async def family_payments(call: Call) -> PaymentList:
    async with call.pool.acquire() as conn:
        return PaymentList(payments=[_payment_out(p) for p in
                                     await payments.payments_of(conn, holder(call))])


class PaymentPath(Model):
    payment: uuid.UUID


@REGISTRY.operation("GET", "/family/payments/{payment}", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="One of your payments (a pending one is asked about "
                    "again)", path_model=PaymentPath, response=PaymentOut)
async def family_payment(call: Call) -> PaymentOut:
    f = fam(call)
    async with call.pool.acquire() as conn:
        with family_problems("path"):
            p = await payments.get_payment(conn, call.path.payment, holder(call))
    if p.state == "pending":        # a poll: what became of it at the provider
        answer = await f.provider.status(idem_key=str(p.id))
        if answer is not None:
            async with call.pool.acquire() as conn:
                with family_problems():
                    p = await payments.settle(conn, p.id, answer, now=call.services.clock(),
                                              actor="node:poll")
    return _payment_out(p)


class WebhookIn(Model):
    idem_key: uuid.UUID = Field(description="the payment id the node charged under")
    ref: Annotated[str, StringConstraints(min_length=1, max_length=100,
                                          pattern=r"^[\x21-\x7e]+$")]
    state: Literal["approved", "declined"]
    amount: Annotated[int, Field(gt=0, le=10**12, description="micro-units charged")]


class WebhookOut(Model):
    payment: uuid.UUID
    state: str
    replay: bool


@REGISTRY.operation("POST", "/family/provider/webhook", right=Right.FAMILY, tag=TAG,
                    auth="public", summary="The payment provider confirms a charge (signed: "
                    "X-ICS-Signature: t=<unix>,v1=<hex HMAC-SHA256 of 't.' + body>)",
                    body=WebhookIn, response=WebhookOut)
async def family_provider_webhook(call: Call) -> WebhookOut:
    f = fam(call)
    now = call.services.clock()
    call.http.content.seek(0)
    raw = call.http.content.read()
    header = call.http.getHeader(b"x-ics-signature")
    async with call.pool.acquire() as conn:
        key = await webhook_key(conn, f)
        try:
            verify_webhook(key, raw, header.decode("latin-1") if header else None, now=now,
                           window_seconds=f.settings.webhook_window_seconds)
        except WebhookRefused as e:
            raise problems.Unauthorized(str(e), [problems.field_error(
                "header", "X-ICS-Signature", str(e))]) from None
        signature = header.decode("latin-1")
        fresh = await conn.fetchval("INSERT INTO family_webhook_seen (signature, at) VALUES "
                                    "($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                                    signature, now)
        b = call.body
        with family_problems():
            if not fresh:
                p = await payments.get_payment(conn, b.idem_key)
                return WebhookOut(payment=p.id, state=p.state, replay=True)
            p = await payments.settle(conn, b.idem_key, ProviderAnswer(
                ChargeState(b.state), b.ref, b.amount), now=now, actor="provider:webhook")
    return WebhookOut(payment=p.id, state=p.state, replay=False)


class AgentDepositIn(Model):
    holder: uuid.UUID
    number: NumberText
    amount: Amount
    card_token: CardToken
    idempotency_key: IdemKey


@REGISTRY.operation("POST", "/family-payments", right=Right.MONEY_WRITE, tag="family-staff",
                    summary="A live agent takes a holder's payment by phone (the profile's live "
                    "agent fee applies)", body=AgentDepositIn, response=PaymentOut, status=201)
async def agent_fund_number(call: Call) -> PaymentOut:
    f, b = fam(call), call.body
    amount = micros_of("amount", b.amount)
    async with call.pool.acquire() as conn:
        with family_problems():
            e164 = await numbers.proven_owner(conn, b.holder, b.number)
    with family_problems():
        p = await payments.pay(call.pool, f.fees, f.provider, holder_id=b.holder,
                               purpose="prepaid", target=e164, amount=amount,
                               idem_key=f"agent:{b.idempotency_key}", token=b.card_token,
                               now=call.services.clock(), channel=Channel.LIVE_AGENT,
                               actor=call.principal.actor)
    return _payment_out(p)


class ThirdPartyIn(Model):
    provider: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$"),
                        Field(description="the third party's name, e.g. moneygram, cash-retail")]
    ref: Annotated[str, StringConstraints(min_length=1, max_length=100,
                                          pattern=r"^[\x21-\x7e]+$"),
                   Field(description="the third party's reference of the payment (the same "
                                     "reference again answers the same payment)")]
    holder: uuid.UUID
    number: NumberText | None = None
    inmate: InmateId | None = None
    amount: Amount
    third_party_fee: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,7}(\.[0-9]{1,2})?$"),
                   Field(description="the third party's own fee as it reported it (0 where the "
                                     "facility's profile allows no fees); passed on exactly")]


@REGISTRY.operation("POST", "/family-payments/third-party", right=Right.MONEY_WRITE,
                    tag="family-staff", summary="Record a payment a third party took itself "
                    "(cash at a retailer, a money transmitter), with its own fee passed through "
                    "exactly", body=ThirdPartyIn, response=PaymentOut, status=201)
async def third_party_payment(call: Call) -> PaymentOut:
    f, b = fam(call), call.body
    if (b.number is None) == (b.inmate is None):
        raise problems.invalid("body", "number", "give a number or an inmate (one of them)")
    amount = micros_of("amount", b.amount)
    try:
        fee = parse_amount(b.third_party_fee, field="third_party_fee", allow_zero=True)
    except ValueError as e:
        raise problems.invalid("body", "third_party_fee", str(e)) from None
    async with call.pool.acquire() as conn:
        with family_problems():
            if b.number is not None:
                purpose, target = "prepaid", await numbers.proven_owner(conn, b.holder, b.number)
            else:
                purpose, target = "inmate", b.inmate
    with family_problems():
        p = await payments.record_third_party(
            call.pool, f.fees, provider=b.provider, ref=b.ref, holder_id=b.holder,
            purpose=purpose, target=target, amount=amount, reported_fee=fee,
            now=call.services.clock(), actor=call.principal.actor)
    return _payment_out(p)


class RefundLineOut(Model):
    payment: uuid.UUID
    provider_ref: str
    amount: Money


class RefundOut(Model):
    number: str
    refunded: Money
    lines: list[RefundLineOut]


@REGISTRY.operation("POST", "/family/numbers/{number}/refund", right=Right.FAMILY, tag=TAG,
                    auth="holder", summary="Refund the unused balance to the payments it came "
                    "from", path_model=NumberPath, response=RefundOut)
async def family_refund(call: Call) -> RefundOut:
    f = fam(call)
    now = call.services.clock()
    async with call.pool.acquire() as conn:
        with family_problems("path"):
            e164 = await numbers.proven_owner(conn, holder(call), call.path.number)
    with family_problems("path"):
        lines = await refunds.refund_balance(call.pool, f.provider, e164=e164, reason="requested",
                                             now=now, actor=call.principal.actor)
    return RefundOut(number=e164, refunded=money(sum(ln.amount for ln in lines)),
                     lines=[RefundLineOut(payment=ln.payment_id, provider_ref=ln.provider_ref,
                                          amount=money(ln.amount)) for ln in lines])

