"""The simulated facility: the demo facility, inmates and numbers sharing prepaid accounts, a
first tariff, all drawn from the seed and written through the product's own loaders."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rating import store
from rating.tariff import (Band, Line, PaymentType, RateGroup, Surcharge, SurchargeKind,
                           TariffVersion)
from switch.provisioning import directory
from ops.seed import DEMO_DIR, load_directory

from .worker import PIN_SECRET

__all__ = ["World", "build_world", "draw_version", "inmate_id", "FACILITY", "PREPAID_NUMBERS",
           "DEBIT_NUMBERS"]

FACILITY = "riverside"
DESTINATIONS = ("local", "intrastate", "interstate", "international")
# Numbers called: local and out of state. Families fund the prepaid ones; the rest are paid from
# the inmate's debit account.
PREPAID_NUMBERS = ("+19515550301", "+19515550302", "+12125550303")
DEBIT_NUMBERS = ("+13125550304",)


def inmate_id(n: int) -> str:
    return str(30001 + n)


@dataclass
class World:
    inmates: list[str]
    numbers: list[str]
    funded: dict[str, int]                      # ledger account -> micro-units deposited
    versions: list[TariffVersion] = field(default_factory=list)


def draw_version(rng: random.Random, effective_from: datetime, base_rate: int | None = None
                 ) -> tuple[tuple[Line, ...], tuple[Surcharge, ...]]:
    """Lines and taxes of one tariff version: per-minute, per-second, six-second or
    first-minute-then-six-second billing, sometimes a connect fee, a percentage tax."""
    style = rng.choice(("per_minute", "per_second", "six_second", "first_minute"))
    lines = []
    for dest in DESTINATIONS:
        rate = base_rate if base_rate is not None else rng.choice((21_000, 50_000, 60_000, 137_000,
                                                                   250_000))
        rate = max(1_000, rate + rng.randint(-5_000, 5_000))
        groups = {"per_minute": (RateGroup(0, rate, 60, 60),),
                  "per_second": (RateGroup(0, rate, 60, 1),),
                  "six_second": (RateGroup(0, rate, 60, 6),),
                  "first_minute": (RateGroup(0, rate, 60, 60), RateGroup(60, rate, 60, 6))}[style]
        connect = rng.choice((0, 0, 0, 25_000))
        lines.append(Line(dest, dest, PaymentType.ANY, Band(), groups, connect_micros=connect))
    taxes = (Surcharge(SurchargeKind.TAX, "state tax",
                       percent_ppm=rng.choice((0, 35_000, 55_000, 77_777))),)
    return tuple(lines), taxes


async def build_world(conn, rng: random.Random, epoch: datetime, *, inmates: int) -> World:
    await load_directory(conn, DEMO_DIR / "directory.toml")
    # The simulated worker's kiosk calls from loopback, and sends the PIN in its INVITE: a trusted
    # kiosk's PIN header counts only from its registered networks.
    await conn.execute("UPDATE kiosk SET sources = ARRAY['127.0.0.1/32'::cidr] WHERE id = $1",
                       "kiosk-a1")
    ids = [inmate_id(i) for i in range(inmates)]
    for i in ids:
        await directory.add_inmate(conn, i, f"Inmate {i}", FACILITY, PIN_SECRET, unit="A")
    numbers = list(PREPAID_NUMBERS + DEBIT_NUMBERS)
    for i in ids:
        for n in numbers:
            await directory.add_contact(conn, i, n, status="approved")
    funded: dict[str, int] = {}
    for n in PREPAID_NUMBERS:
        await directory.add_phone_account(conn, n, f"Family of {n}")
        amount = rng.choice((150_000, 400_000, 1_500_000, 3_000_000, 9_000_000))
        await directory.fund_phone_account(conn, n, amount, f"sim:{n}")
        funded[directory.phone_account_id(n)] = amount
    for i in ids:
        amount = rng.choice((200_000, 800_000, 5_000_000))
        await directory.fund_inmate(conn, i, amount, f"sim:{i}")
        funded[directory.inmate_account_id(i)] = amount
    lines, taxes = draw_version(rng, epoch)
    first = await store.save_version(conn, FACILITY, epoch - timedelta(days=1), lines, taxes,
                                     source="sim v1")
    return World(ids, numbers, funded, [first])
