"""Payment providers: the interface the node pays through, and the built-in test provider.

A provider charges a card token for an amount under the node's idempotency key (the payment id):
(a third party that takes the money itself reports the payment and its own fee instead);
the same key twice charges once. Its answer is approved or declined with the provider's reference;
an error or a timeout leaves the outcome unknown, and the node asks again later (`status`) or
waits for the provider's signed webhook. Refunds go back to a charge's reference.

The test provider keeps its books in `test_provider_charge`, written on a connection and a
transaction of its own, as a processor commits on its side before it answers: so a node that
crashes after the charge finds it there on restart. Its tokens:

    tok_approve  approved          tok_decline  declined (nothing charged)
    tok_error    the provider fails before charging (nothing charged)
    tok_timeout  charged and approved, but the answer never arrives (the webhook or a poll tells)
"""
from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from families.errors import FamilyError

__all__ = ["ChargeState", "ProviderAnswer", "ProviderError", "ProviderTimeout",
           "PaymentProvider", "TestProvider", "sign_webhook", "verify_webhook", "WebhookRefused",
           "TEST_TOKENS"]

TEST_TOKENS = ("tok_approve", "tok_decline", "tok_error", "tok_timeout")


class ChargeState(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"


@dataclass(frozen=True)
class ProviderAnswer:
    state: ChargeState
    ref: str                     # the provider's reference of the charge
    amount: int                  # what the payer was charged in all (principal and fees)
    reason: str = ""
    # A third party (a money transmitter, cash at a retailer) reports its own fee, included in
    # `amount`: the node passes it on exactly, never more (invariant F3). None: no such fee.
    third_party_fee: int | None = None


class ProviderError(FamilyError):
    """The provider answered with an error: the charge may not have happened (ask `status`)."""

    def __init__(self, message: str) -> None:
        super().__init__("payment", message)


class ProviderTimeout(ProviderError):
    """No answer in time: the charge may have happened (ask `status`, or wait for the webhook)."""


class PaymentProvider(Protocol):
    name: str

    async def charge(self, *, idem_key: str, token: str, amount: int) -> ProviderAnswer: ...

    async def status(self, *, idem_key: str) -> ProviderAnswer | None:
        """The charge made under this key, or None if the provider never made one."""

    # A third party that takes payments itself (cash at a retailer, a money transmitter) does not
    # charge through `charge`: it reports each payment it took, with its own fee, and the node
    # records it (families.payments.record_third_party) as a ProviderAnswer carrying that fee.

    async def refund(self, *, ref: str, amount: int, idem_key: str) -> None:
        """Return `amount` of the charge `ref`. The same `idem_key` again must be taken once: the
        node retries a refund under its first key until the provider takes it."""


class TestProvider:
    """The built-in provider for tests and the demo (see the module docstring for its tokens)."""
    name = "test"

    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], dt.datetime]) -> None:
        self.pool, self.clock = pool, clock
        self.refund_failures_left = 0

    async def _record(self, idem_key: str, token: str, amount: int, state: str) -> ProviderAnswer:
        ref = "TP-" + uuid.uuid5(uuid.NAMESPACE_URL, "test-provider:" + idem_key).hex[:20].upper()
        async with self.pool.acquire() as conn:
            r = await conn.fetchrow(
                "INSERT INTO test_provider_charge (ref, idem_key, token, amount, state, "
                "created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idem_key) DO UPDATE "
                "SET idem_key = EXCLUDED.idem_key RETURNING ref, amount, state",
                ref, idem_key, token, amount, state, self.clock())
        return ProviderAnswer(ChargeState(r["state"]), r["ref"], r["amount"],
                              "" if r["state"] == "approved" else "card declined")

    async def charge(self, *, idem_key: str, token: str, amount: int) -> ProviderAnswer:
        if token == "tok_error":
            raise ProviderError("the test provider failed (tok_error): nothing was charged")
        if token == "tok_timeout":
            await self._record(idem_key, token, amount, "approved")
            raise ProviderTimeout("the test provider did not answer in time (tok_timeout)")
        return await self._record(idem_key, token, amount,
                                  "approved" if token == "tok_approve" else "declined")

    async def status(self, *, idem_key: str) -> ProviderAnswer | None:
        async with self.pool.acquire() as conn:
            r = await conn.fetchrow("SELECT ref, amount, state FROM test_provider_charge "
                                    "WHERE idem_key = $1", idem_key)
        if r is None:
            return None
        return ProviderAnswer(ChargeState(r["state"]), r["ref"], r["amount"])

    def fail_next_refunds(self, count: int) -> None:
        """The next `count` refunds fail before the provider takes them (as an outage would)."""
        self.refund_failures_left = count

    async def refund(self, *, ref: str, amount: int, idem_key: str) -> None:
        """Return `amount` of charge `ref`; the same `idem_key` again is taken once."""
        if self.refund_failures_left > 0:
            self.refund_failures_left -= 1
            raise ProviderError("the test provider is unavailable: the refund was not taken")
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                prior = await conn.fetchrow("SELECT ref, amount FROM test_provider_refund "
                                            "WHERE idem_key = $1", idem_key)
                if prior is not None:
                    if (prior["ref"], prior["amount"]) != (ref, amount):
                        raise ProviderError(f"the test provider's refund {idem_key} was for "
                                            f"{prior['amount']} on {prior['ref']}")
                    return
                done = await conn.fetchval(
                    "UPDATE test_provider_charge SET refunded = refunded + $2 WHERE ref = $1 "
                    "AND state = 'approved' AND refunded + $2 <= amount RETURNING true",
                    ref, amount)
                if not done:
                    raise ProviderError(f"the test provider cannot refund {amount} on {ref}")
                await conn.execute("INSERT INTO test_provider_refund (idem_key, ref, amount, "
                                   "created_at) VALUES ($1, $2, $3, $4)", idem_key, ref, amount,
                                   self.clock())


# -- signed webhooks ------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-ICS-Signature"


class WebhookRefused(FamilyError, ValueError):
    """A webhook that is not the provider's, or is too old or new (a replay): names why."""

    def __init__(self, message: str) -> None:
        super().__init__("webhook", message)


def sign_webhook(secret: bytes, body: bytes, at: int) -> str:
    mac = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify_webhook(secret: bytes, body: bytes, header: str | None, *, now: dt.datetime,
                   window_seconds: int) -> dict[str, Any]:
    """The webhook's JSON if `header` signs `body` with `secret` at a time within the window."""
    if not header or len(header) > 200:
        raise WebhookRefused(f"no {SIGNATURE_HEADER} header")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        at = int(parts.get("t", ""))
    except ValueError:
        raise WebhookRefused(f"{SIGNATURE_HEADER}: t= must be the signing time in seconds") from None
    given = parts.get("v1", "")
    want = sign_webhook(secret, body, at).split("v1=")[1]
    if not hmac.compare_digest(given.encode(), want.encode()):
        raise WebhookRefused(f"{SIGNATURE_HEADER}: the signature does not match the body")
    if abs(now.timestamp() - at) > window_seconds:
        raise WebhookRefused(f"{SIGNATURE_HEADER}: signed at {at}, outside the {window_seconds} s "
                             "window (a replay, or a clock far off)")
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRefused("the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused("the body is not a JSON object")
    return data
