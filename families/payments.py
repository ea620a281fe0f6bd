"""Payments: a family funds a prepaid phone account (AdvancePay) or an inmate's debit account
through a provider, with the fee its regulatory profile allows.

Three steps, each its own transaction, so a crash between any two loses nothing:
1. `start`: check the limits, price the fee, and commit a `pending` payment keyed on the holder's
   idempotency key (a resent form finds the same payment);
2. the provider charges under the payment's id (its own idempotency key);
3. `settle`: an approved charge moves the principal and the fee as two ledger transfers (ids
   derived from the payment id) and marks the payment `confirmed`; a declined one moves nothing.
A payment left `pending` (an error, a timeout, a crash) is settled by the provider's webhook or
by `reconcile`, which asks the provider what became of it (invariants F1, F2).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Any, Literal

import asyncpg

import ledger
from families import audit
from families.errors import FamilyLedgerRefused, Invalid, NotApproved, NotFound, Refused
from families.fees import Channel, Fee, FeeSchedule, fee_for, load_schedules, strictest
from families.providers import (
    ChargeState,
    PaymentProvider,
    ProviderAnswer,
    ProviderError,
    ProviderTimeout,
)
from families.settings import FamilySettings
from switch.provisioning import directory

__all__ = ["Payment", "Fees", "start", "settle", "pay", "reconcile", "quote_prepaid",
           "quote_inmate", "record_third_party", "get_payment", "payments_of", "PAYMENT_NAMESPACE", "THIRD_PARTY_FEES",
           "REVENUE", "FUNDING", "local_day_start", "local_month_start",
           "deposit_time_zone"]

PAYMENT_NAMESPACE = uuid.UUID("3f2a9c1e-7d54-4b0e-8a16-5c9e0d7b1f22")
REVENUE = "revenue"
FUNDING = directory.FUNDING_SOURCE
THIRD_PARTY_FEES = "third_party_fees"    # fees collected for a third party, owed on to it
RECONCILE_AFTER = dt.timedelta(minutes=2)   # a pending payment younger than this is left alone
NEVER_CHARGED_AFTER = dt.timedelta(minutes=30)  # unknown to the provider this long: failed
IDEM_KEY_LENGTH_MAX = 100


class Fees:
    """Every profile's fee schedule, loaded once (rating's profiles and config/fees)."""

    def __init__(self, settings: FamilySettings, schedules: dict[str, FeeSchedule] | None = None):
        if schedules is None:
            from rating.profiles import load_profiles
            schedules = load_schedules(load_profiles())
        self.settings, self.schedules = settings, schedules

    def schedule(self, profile: str) -> FeeSchedule:
        try:
            return self.schedules[profile]
        except KeyError:
            raise Refused("profile", f"no fee schedule for regulatory profile {profile!r}",
                          "profile.no_fee_schedule", profile=profile) from None

    async def for_number(self, conn: asyncpg.Connection, e164: str) -> FeeSchedule:
        """A prepaid account pays for calls from every facility that has the number as a contact:
        the profile kindest to the family among them applies; with none, the node's default."""
        profiles = await conn.fetch(
            "SELECT DISTINCT f.profile FROM contact c JOIN inmate i ON i.id = c.inmate_id "
            "JOIN facility f ON f.id = i.facility_id WHERE c.e164 = $1 AND c.status IN "
            "('requested', 'approved')", e164)
        names = [r["profile"] for r in profiles] or [self.settings.default_profile]
        return strictest([self.schedule(n) for n in names])

    async def for_inmate(self, conn: asyncpg.Connection, inmate_id: str) -> FeeSchedule:
        profile = await conn.fetchval("SELECT f.profile FROM inmate i JOIN facility f ON "
                                      "f.id = i.facility_id WHERE i.id = $1", inmate_id)
        if profile is None:
            raise NotFound("inmate", f"no inmate {inmate_id}", "inmate.unknown")
        return self.schedule(profile)


@dataclass(frozen=True)
class Payment:
    id: uuid.UUID
    holder_id: uuid.UUID | None
    idem_key: str
    purpose: Literal["prepaid", "inmate"]
    target: str
    account: str
    amount: int
    fee: int
    channel: str
    profile: str
    fee_rule: str
    provider: str
    provider_ref: str | None
    state: Literal["pending", "confirmed", "declined", "failed"]
    reason: str
    refunded: int
    created_at: dt.datetime
    decided_at: dt.datetime | None

    @property
    def total(self) -> int:
        return self.amount + self.fee


def _payment(r: asyncpg.Record) -> Payment:
    return Payment(**{k: r[k] for k in Payment.__dataclass_fields__})


async def get_payment(conn: asyncpg.Connection, payment_id: uuid.UUID,
                      holder_id: uuid.UUID | None = None) -> Payment:
    r = await conn.fetchrow("SELECT * FROM family_payment WHERE id = $1 AND "
                            "($2::uuid IS NULL OR holder_id = $2)", payment_id, holder_id)
    if r is None:
        raise NotFound("payment", "no such payment", "payment.unknown")
    return _payment(r)


async def payments_of(conn: asyncpg.Connection, holder_id: uuid.UUID,
                      limit: int = 100) -> list[Payment]:
    rows = await conn.fetch("SELECT * FROM family_payment WHERE holder_id = $1 ORDER BY "
                            "created_at DESC, id LIMIT $2", holder_id, limit)
    return [_payment(r) for r in rows]


def _fee(schedule: FeeSchedule, channel: Channel, settings: FamilySettings,
         third_party_fee: int | None) -> Fee:
    from families.fees import FeeError
    try:
        return fee_for(schedule, channel, settings, third_party_fee=third_party_fee)
    except FeeError as e:
        code = e.code if e.code != "invalid" else (
            "third_party.fee_prohibited" if e.field == "third_party_fee" else None)
        raise Invalid(e.field, str(e), code, **e.params) from None


async def quote_prepaid(conn: asyncpg.Connection, fees: Fees, e164: str,
                        channel: Channel = Channel.AUTOMATED,
                        third_party_fee: int | None = None) -> Fee:
    return _fee(await fees.for_number(conn, e164), channel, fees.settings, third_party_fee)


async def quote_inmate(conn: asyncpg.Connection, fees: Fees, inmate_id: str,
                       channel: Channel = Channel.AUTOMATED,
                       third_party_fee: int | None = None) -> Fee:
    return _fee(await fees.for_inmate(conn, inmate_id), channel, fees.settings, third_party_fee)


def _fmt(micros: int) -> str:
    """Micro-units as currency text, in integers (no float near money)."""
    micros = int(micros)
    return f"{micros // 1_000_000}.{micros % 1_000_000 // 10_000:02d}"


def local_day_start(now: dt.datetime, zone: str) -> dt.datetime:
    """The instant the day containing `now` began in time zone `zone` (a facility's): limits
    per day and per month follow the family's and the facility's calendar, not UTC's."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    # Midnight may not exist (a DST jump at 00:00): fold=0 and a round trip through UTC give the
    # first instant of the local date either way.
    start = dt.datetime(local.year, local.month, local.day, tzinfo=tz)
    return start.astimezone(dt.timezone.utc)


def local_month_start(now: dt.datetime, zone: str) -> dt.datetime:
    """The instant the month containing `now` began in time zone `zone`."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    return dt.datetime(local.year, local.month, 1, tzinfo=tz).astimezone(dt.timezone.utc)


async def deposit_time_zone(conn: asyncpg.Connection, purpose: str, target: str) -> str:
    """The time zone whose days and months a deposit's limits count in: the inmate's facility's;
    for a prepaid number, that of the facility it is a contact at (the first by id when several);
    UTC for a number no facility has yet."""
    if purpose == "inmate":
        zone = await conn.fetchval("SELECT f.time_zone FROM inmate i JOIN facility f ON "
                                   "f.id = i.facility_id WHERE i.id = $1", target)
    else:
        zone = await conn.fetchval(
            "SELECT f.time_zone FROM contact c JOIN inmate i ON i.id = c.inmate_id JOIN facility "
            "f ON f.id = i.facility_id WHERE c.e164 = $1 AND c.status IN ('requested', "
            "'approved') ORDER BY f.id LIMIT 1", target)
    if not zone:
        return "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"            # a zone this node cannot read (facility import checks it)
    return str(zone)


async def _check_limits(conn: asyncpg.Connection, s: FamilySettings, holder_id: uuid.UUID,
                        purpose: str, target: str,
                        account: str, amount: int, now: dt.datetime) -> None:
    if amount > s.deposit_max:
        raise Refused("amount", f"at most {_fmt(s.deposit_max)} per payment",
                      "deposit.per_payment_max", max=_fmt(s.deposit_max))
    zone = await deposit_time_zone(conn, purpose, target)
    today = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0)::bigint FROM family_payment WHERE holder_id = $1 AND "
        "state IN ('pending', 'confirmed') AND created_at >= $2", holder_id,
        local_day_start(now, zone))
    if today + amount > s.deposit_daily_max:
        left = max(0, s.deposit_daily_max - today)
        raise Refused("amount", f"the daily deposit limit is {_fmt(s.deposit_daily_max)}; "
                      f"{_fmt(left)} is left today", "deposit.daily_max",
                      max=_fmt(s.deposit_daily_max), left=_fmt(left))
    if purpose == "prepaid":
        try:
            bal = await ledger.balance(conn, account)
            posted = bal.posted
        except ledger.AccountNotFound:
            raise NotFound("number", "the number has no prepaid account yet",
                           "deposit.no_prepaid_account") from None
        pending = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0)::bigint FROM family_payment WHERE account = $1 AND "
            "state = 'pending'", account)
        if posted + pending + amount > s.balance_max:
            raise Refused("amount", f"an account may hold at most {_fmt(s.balance_max)}; "
                          f"it has {_fmt(posted)} (and {_fmt(pending)} on the way)",
                          "deposit.balance_max", max=_fmt(s.balance_max), has=_fmt(posted),
                          pending=_fmt(pending))
    else:
        policy = await facility_policy(conn, target)
        month = local_month_start(now, zone)
        used = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0)::bigint FROM family_payment WHERE purpose = 'inmate' AND "
            "target = $1 AND state IN ('pending', 'confirmed') AND created_at >= $2",
            target, month)
        if used + amount > policy["debit_monthly_max"]:
            left = max(0, policy["debit_monthly_max"] - used)
            raise Refused("amount", f"the facility allows {_fmt(policy['debit_monthly_max'])}"
                          f" a month to this inmate; {_fmt(left)} is left this month",
                          "deposit.inmate_monthly_max", max=_fmt(policy["debit_monthly_max"]),
                          left=_fmt(left))


async def facility_policy(conn: asyncpg.Connection, inmate_id: str) -> dict[str, Any]:
    r = await conn.fetchrow(
        "SELECT i.facility_id, coalesce(p.publishes_inmates, true) AS publishes_inmates, "
        "coalesce(p.deposits_approved_only, true) AS deposits_approved_only, "
        "coalesce(p.debit_monthly_max, 300000000) AS debit_monthly_max FROM inmate i "
        "LEFT JOIN family_facility_policy p ON p.facility_id = i.facility_id WHERE i.id = $1",
        inmate_id)
    if r is None:
        raise NotFound("inmate", f"no inmate {inmate_id}", "inmate.unknown")
    return dict(r)


async def start(conn: asyncpg.Connection, fees: Fees, *, holder_id: uuid.UUID, purpose: str,
                target: str, amount: int,
                idem_key: str, provider: str, now: dt.datetime,
                channel: Channel = Channel.AUTOMATED,
                third_party_fee: int | None = None,
                actor: str | None = None) -> tuple[Payment, bool]:
    """The pending payment for this idempotency key: (payment, True) when made now, (the earlier
    one, False) when the key was used before for the same deposit."""
    if not isinstance(idem_key, str) or not 0 < len(idem_key) <= IDEM_KEY_LENGTH_MAX \
            or not idem_key.isprintable():
        raise Invalid("idempotency_key", f"1-{IDEM_KEY_LENGTH_MAX} printable characters",
                      "deposit.key_format", max=IDEM_KEY_LENGTH_MAX)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise Invalid("amount", "must be greater than 0", "deposit.amount_positive")
    payment_id = uuid.uuid5(PAYMENT_NAMESPACE, f"{holder_id}:{idem_key}")
    async with conn.transaction():
        # One holder's payments are decided one at a time: the daily limit holds under races.
        await conn.execute("SELECT 1 FROM family_holder WHERE id = $1 FOR UPDATE", holder_id)
        prior = await conn.fetchrow("SELECT * FROM family_payment WHERE id = $1", payment_id)
        if prior is not None:
            p = _payment(prior)
            if (p.purpose, p.target, p.amount) != (purpose, target, amount):
                raise Refused("idempotency_key", "this key was used for another payment "
                              f"({_fmt(p.amount)} to {p.target})", "deposit.key_reused")
            return p, False
        if purpose == "prepaid":
            account = directory.phone_account_id(target)
            schedule = await fees.for_number(conn, target)
        elif purpose == "inmate":
            account = directory.inmate_account_id(target)
            schedule = await fees.for_inmate(conn, target)
            policy = await facility_policy(conn, target)
            if policy["deposits_approved_only"] and not await conn.fetchval(
                    "SELECT true FROM contact c JOIN family_number n ON n.e164 = c.e164 "
                    "WHERE c.inmate_id = $1 AND c.status = 'approved' AND n.holder_id = $2 "
                    "AND n.state = 'proven' LIMIT 1", target, holder_id):
                raise NotApproved("inmate", "this facility takes deposits only from approved "
                                  "contacts; none of your proven numbers is one",
                                  "deposit.approved_contacts_only")
        else:
            raise Invalid("purpose", "prepaid or inmate", "deposit.purpose")
        fee = _fee(schedule, channel, fees.settings, third_party_fee)
        await _check_limits(conn, fees.settings, holder_id, purpose, target, account, amount, now)
        r = await conn.fetchrow(
            "INSERT INTO family_payment (id, holder_id, idem_key, purpose, target, account, "
            "amount, fee, channel, profile, fee_rule, provider, state, created_at) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', $13) RETURNING *",
            payment_id, holder_id, idem_key, purpose, target, account, amount, fee.amount,
            channel.value, fee.profile, fee.rule, provider, now)
        await audit.record(conn, at=now, actor=actor or audit.holder_actor(holder_id),
                           action="payment.start", target=account,
                           detail={"payment": str(payment_id), "amount": amount,
                                   "fee": fee.amount, "profile": fee.profile})
    return _payment(r), True


def _transfers(p: Payment, ref: str) -> list[ledger.Transfer]:
    principal = ledger.Transfer(
        id=uuid.uuid5(PAYMENT_NAMESPACE, f"principal:{p.id}"), kind=ledger.TransferKind.SINGLE,
        debit=FUNDING, credit=p.account, amount=p.amount, code=ledger.TransferCode.DEPOSIT,
        ref=ref, linked=p.fee > 0)
    if p.fee == 0:
        return [principal]
    fee = ledger.Transfer(
        id=uuid.uuid5(PAYMENT_NAMESPACE, f"fee:{p.id}"), kind=ledger.TransferKind.SINGLE,
        debit=FUNDING, credit=THIRD_PARTY_FEES if p.channel == Channel.THIRD_PARTY else REVENUE,
        amount=p.fee, code=ledger.TransferCode.FEE, ref=ref)
    return [principal, fee]


async def settle(conn: asyncpg.Connection, payment_id: uuid.UUID, answer: ProviderAnswer | None, *,
                 now: dt.datetime, actor: str = "node") -> Payment:
    """Record what the provider said. Approved: principal and fee move, the payment is
    `confirmed`. Declined: `declined`, nothing moves. None (the provider never charged): `failed`.
    A payment already decided answers as it is (a webhook resent, a poll after it)."""
    async with conn.transaction():
        r = await conn.fetchrow("SELECT * FROM family_payment WHERE id = $1 FOR UPDATE",
                                payment_id)
        if r is None:
            raise NotFound("payment", "no such payment", "payment.unknown")
        p = _payment(r)
        if p.state != "pending":
            return p
        if answer is None:
            state, reason, ref = "failed", "the provider made no charge", None
        elif answer.state is ChargeState.DECLINED:
            state, reason, ref = "declined", answer.reason or "declined", answer.ref
        else:
            if p.channel == Channel.THIRD_PARTY and (answer.third_party_fee is None
                                                     or p.fee > answer.third_party_fee):
                raise Refused("third_party_fee", f"a fee of {_fmt(p.fee)} is above what the "
                              "third party reported: left pending for an operator",
                              "third_party.fee_above_reported", fee=_fmt(p.fee))
            if answer.amount != p.total:
                raise Refused("amount", f"the provider charged {answer.amount} for a payment of "
                              f"{p.total}: left pending for an operator",
                              "deposit.provider_amount_mismatch")
            state, reason, ref = "confirmed", "", answer.ref
            currency = await conn.fetchval("SELECT currency FROM ledger_account WHERE id = $1",
                                           p.account) or "USD"
            await directory.ensure_house_accounts(conn, currency)
            await ledger.create_accounts(conn, [ledger.Account(
                THIRD_PARTY_FEES, ledger.AccountKind.FUNDING_CLEARING, currency)])
            key = directory.normalize_ref(ref)
            results = await ledger.submit(conn, _transfers(p, key))
            bad = [x for x in results if not x.succeeded]
            if bad:
                raise FamilyLedgerRefused(p.id, [x.result.name for x in bad])
            # The deposit is refundable by an operator too (web.money.refund keys on it).
            await conn.execute("INSERT INTO funding_credit (ref, account, amount, transfer_id) "
                               "VALUES ($1, $2, $3, $4) ON CONFLICT (ref) DO NOTHING",
                               key, p.account, p.amount, results[0].id)
            await conn.execute("DELETE FROM family_notice WHERE account = $1 AND "
                               "kind = 'low_balance'", p.account)
        r = await conn.fetchrow(
            "UPDATE family_payment SET state = $2, reason = $3, provider_ref = $4, "
            "decided_at = $5 WHERE id = $1 RETURNING *", payment_id, state, reason, ref, now)
        await audit.record(conn, at=now, actor=actor, action=f"payment.{state}",
                           target=p.account, detail={"payment": str(p.id), "amount": p.amount,
                                                     "fee": p.fee, "provider_ref": ref})
    return _payment(r)


async def pay(pool: asyncpg.Pool, fees: Fees, provider: PaymentProvider, *, holder_id: uuid.UUID,
              purpose: str,
              target: str, amount: int, idem_key: str, token: str, now: dt.datetime,
              channel: Channel = Channel.AUTOMATED, actor: str | None = None) -> Payment:
    """Start, charge, settle. An error or timeout leaves the payment pending (the webhook or
    `reconcile` settles it); a resent request answers the payment as it stands, charging once."""
    async with pool.acquire() as conn:
        p, new = await start(conn, fees, holder_id=holder_id, purpose=purpose, target=target,
                             amount=amount, idem_key=idem_key, provider=provider.name, now=now,
                             channel=channel, actor=actor)
    if p.state != "pending":
        return p
    try:
        answer: ProviderAnswer | None = await provider.charge(idem_key=str(p.id), token=token,
                                                              amount=p.total)
    except ProviderTimeout:
        return p
    except ProviderError:
        try:
            answer = await provider.status(idem_key=str(p.id))
        except ProviderError:
            return p
    async with pool.acquire() as conn:
        return await settle(conn, p.id, answer, now=now)


async def record_third_party(pool: asyncpg.Pool, fees: Fees, *, provider: str, ref: str,
                             holder_id: uuid.UUID, purpose: str, target: str, amount: int,
                             reported_fee: int, now: dt.datetime, actor: str) -> Payment:
    """A payment a third party took itself (cash at a retailer, a money transmitter), reported
    with its own fee: the principal moves to `target`, and the fee exactly as reported (never
    more, invariant F3) to `third_party_fees`, owed on to the third party; under a profile that
    allows no ancillary fees the fee must be 0 (refused naming `third_party_fee` otherwise). The
    same (provider, ref) again answers the same payment; with other figures it is refused."""
    if isinstance(reported_fee, bool) or not isinstance(reported_fee, int) or reported_fee < 0:
        raise Invalid("third_party_fee", "the third party's fee must be 0 or more micro-units",
                      "third_party.fee_negative")
    async with pool.acquire() as conn:
        p, _ = await start(conn, fees, holder_id=holder_id, purpose=purpose, target=target,
                           amount=amount, idem_key=f"third-party:{provider}:{ref}",
                           provider=provider, now=now, channel=Channel.THIRD_PARTY,
                           third_party_fee=reported_fee, actor=actor)
        if p.fee != reported_fee:
            raise Refused("third_party_fee", "this payment was first reported with a fee of "
                          f"{_fmt(p.fee)}", "third_party.fee_changed", fee=_fmt(p.fee))
        return await settle(conn, p.id, ProviderAnswer(
            ChargeState.APPROVED, ref, amount + reported_fee, third_party_fee=reported_fee),
            now=now, actor=actor)


async def reconcile(pool: asyncpg.Pool, provider: PaymentProvider, *, now: dt.datetime,
                    older_than: dt.timedelta = RECONCILE_AFTER) -> list[Payment]:
    """Settle every pending payment at least `older_than` old from what the provider says (on
    start-up and periodically): a charge confirmed before a crash is recorded now."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, created_at FROM family_payment WHERE state = "
                                "'pending' AND provider = $1 AND created_at <= $2 ORDER BY "
                                "created_at", provider.name, now - older_than)
    out = []
    for r in rows:
        try:
            answer = await provider.status(idem_key=str(r["id"]))
        except ProviderError:
            continue
        if answer is None and now - r["created_at"] < NEVER_CHARGED_AFTER:
            continue          # the charge may still be on its way to the provider
        async with pool.acquire() as conn:
            try:
                out.append(await settle(conn, r["id"], answer, now=now, actor="node:reconcile"))
            except Refused:
                continue
    return out
