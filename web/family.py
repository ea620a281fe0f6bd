"""What the family API needs beside the operations API's services: the families' settings, the
fee schedules, the payment provider, the webhook key, and the sweeps a node runs periodically
(reconcile pending payments, refunds the provider has not taken yet, low-balance notices,
inactivity refunds, proof calls whose worker died, outbox by SMTP)."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import asyncpg

from families.payments import Fees
from families.proof_rules import ProofRules
from families.providers import TestProvider
from families.settings import FamilySettings

__all__ = ["FamilyServices", "webhook_key", "SWEEP_INTERVAL_SECONDS"]

log = logging.getLogger("ics.family")
SWEEP_INTERVAL_SECONDS = 30.0
INACTIVITY_SWEEP_INTERVAL = dt.timedelta(minutes=15)   # idle-balance refunds: days, not seconds
WEBHOOK_KEY_NAME = "payment_webhook"


@dataclass
class FamilyServices:
    settings: FamilySettings
    fees: Fees
    provider: Any
    cache: dict[str, Any] = field(default_factory=dict)
    proof: ProofRules = field(default_factory=ProofRules)     # proof calls (number_proof)
    proof_caller_name: str = ""      # "This is <name> calling": empty for the prompt's default

    @classmethod
    def make(cls, pool: asyncpg.Pool, settings: FamilySettings, clock: Callable[[], dt.datetime]
             ) -> "FamilyServices":
        return cls(settings, Fees(settings), TestProvider(pool, clock))


async def webhook_key(conn: asyncpg.Connection, fam: FamilyServices) -> bytes:
    """The key the provider signs webhooks with: configured, or made once and kept in the
    database (shared by every node on it; `api_secret` row 'payment_webhook')."""
    if fam.settings.webhook_secret:
        return fam.settings.webhook_secret.encode()
    if WEBHOOK_KEY_NAME not in fam.cache:
        await conn.execute("INSERT INTO api_secret (name, key) VALUES ($1, $2) "
                           "ON CONFLICT (name) DO NOTHING", WEBHOOK_KEY_NAME, os.urandom(32))
        fam.cache[WEBHOOK_KEY_NAME] = bytes(await conn.fetchval(
            "SELECT key FROM api_secret WHERE name = $1", WEBHOOK_KEY_NAME))
    key: bytes = fam.cache[WEBHOOK_KEY_NAME]
    return key


async def sweep_once(pool: asyncpg.Pool, fam: FamilyServices, now: dt.datetime,
                     observe: Callable[[str, str], None] | None = None) -> None:
    from families import number_proof, outbox, payments, refund_delivery, refunds
    await payments.reconcile(pool, fam.provider, now=now)
    async with pool.acquire() as conn:
        lost = await number_proof.close_lost(conn, now=now, rules=fam.proof)
    if lost:
        log.warning("proof calls lost with their worker: %s", ", ".join(map(str, lost)))
        if observe is not None:
            for _ in lost:
                observe("proof_call", "lost")
    await refund_delivery.deliver(pool, fam.provider, now=now, observe=observe)
    async with pool.acquire() as conn:
        await refunds.low_balance_notices(conn, fam.settings, now=now)
    # Inactivity is counted in days: looking every INACTIVITY_SWEEP_INTERVAL is plenty.
    last = fam.cache.get("inactivity_swept_at")
    if last is None or now - last >= INACTIVITY_SWEEP_INTERVAL:
        await refunds.refund_inactive(pool, fam.fees, fam.provider, now=now)
        fam.cache["inactivity_swept_at"] = now
    if fam.settings.smtp_host:
        async with pool.acquire() as conn:
            await outbox.send_pending(conn, host=fam.settings.smtp_host,
                                      port=fam.settings.smtp_port,
                                      sender=fam.settings.mail_from, now=now)


def start_sweeps(pool: asyncpg.Pool, fam: FamilyServices, clock: Callable[[], dt.datetime],
                 interval: float = SWEEP_INTERVAL_SECONDS,
                 observe: Callable[[str, str], None] | None = None) -> asyncio.Task[None]:
    """Reconcile at once (payments a crash left pending), then every `interval` seconds."""
    async def loop() -> None:
        while True:
            try:
                await sweep_once(pool, fam, clock(), observe)
            except asyncio.CancelledError:
                raise
            except Exception:       # noqa: BLE001 - the next round tries again
                log.exception("family sweep failed")
            await asyncio.sleep(interval)
    return asyncio.ensure_future(loop())
