"""Ledger accounts: what they are for, their overdraft rule, and creating them idempotently."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import asyncpg

from ledger.errors import InvalidAccount
from ledger.results import AccountResult

__all__ = [
    "AccountKind",
    "Account",
    "create_accounts",
    "SHARDED_KINDS",
    "DEFAULT_SHARDS",
    "SHARDS_MAX",
    "ACCOUNT_ID_PATTERN",
]

ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
DEFAULT_SHARDS = 16  # config: ledger.revenue_shards
SHARDS_MAX = 256


class AccountKind(enum.StrEnum):
    INMATE_DEBIT = "inmate_debit"  # an inmate's own funds, for calls they pay
    PREPAID_PHONE = "prepaid_phone"  # a family's prepaid calling balance
    REVENUE = "revenue"  # what the operator earned from calls
    TAX_PAYABLE = "tax_payable"  # taxes collected, owed to the authorities
    FUNDING_CLEARING = "funding_clearing"  # money received from payments, before it is credited
    REFUNDS_PAYABLE = "refunds_payable"  # balances owed back to account holders
    CALL_CLEARING = "call_clearing"  # call charges held and posted, before revenue and tax
    CALL_SHORTFALL = "call_shortfall"  # call charges that could no longer be collected


# Credited by every call: spread over several balance rows so that calls never queue on one row.
SHARDED_KINDS = frozenset({AccountKind.REVENUE, AccountKind.TAX_PAYABLE, AccountKind.CALL_CLEARING})
# Money that belongs to people: never overdrawn.
NO_OVERDRAFT_KINDS = frozenset(
    {AccountKind.INMATE_DEBIT, AccountKind.PREPAID_PHONE, AccountKind.REFUNDS_PAYABLE}
)


@dataclass(frozen=True)
class Account:
    """An account to create. ``no_overdraft`` (default by kind: people's money) means its debits,
    pending and posted, may never exceed its posted credits. ``shards`` (default by kind: 1, or
    `DEFAULT_SHARDS` for revenue, tax and call clearing) is how many balance rows it spreads over;
    a sharded account cannot have the no-overdraft rule."""

    id: str
    kind: AccountKind
    currency: str = "USD"
    no_overdraft: bool | None = None
    shards: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ACCOUNT_ID_PATTERN.fullmatch(self.id):
            raise InvalidAccount(
                "id",
                self.id,
                "must be 1-128 letters, digits or ._:@/+- starting with a letter or digit",
            )
        try:
            object.__setattr__(self, "kind", AccountKind(self.kind))
        except ValueError:
            raise InvalidAccount(
                "kind", self.kind, "must be one of " + ", ".join(k.value for k in AccountKind)
            ) from None
        if not isinstance(self.currency, str) or not CURRENCY_PATTERN.fullmatch(self.currency):
            raise InvalidAccount("currency", self.currency, "must be an ISO 4217 code like USD")
        if self.no_overdraft is not None and not isinstance(self.no_overdraft, bool):
            raise InvalidAccount("no_overdraft", self.no_overdraft, "must be true or false")
        if self.shards is not None and (
            isinstance(self.shards, bool)
            or not isinstance(self.shards, int)
            or not 1 <= self.shards <= SHARDS_MAX
        ):
            raise InvalidAccount("shards", self.shards, f"must be an integer 1..{SHARDS_MAX}")
        if self.no_overdraft and (self.shards or 1) > 1:
            raise InvalidAccount(
                "no_overdraft",
                self.no_overdraft,
                "an account spread over shards cannot have the no-overdraft rule",
            )

    def resolved(self, default_shards: int = DEFAULT_SHARDS) -> tuple[bool, int]:
        """(no_overdraft, shards) with the kind's defaults filled in."""
        no_overdraft = (
            self.kind in NO_OVERDRAFT_KINDS if self.no_overdraft is None else self.no_overdraft
        )
        if self.shards is not None:
            shards = self.shards
        elif self.kind in SHARDED_KINDS and not no_overdraft:
            shards = default_shards
        else:
            shards = 1
        return no_overdraft, shards


_CREATE = """
WITH wanted AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::smallint[])
        WITH ORDINALITY w(id, kind, currency, no_overdraft, shards, ord)
), made AS (
    INSERT INTO ledger_account (id, kind, currency, no_overdraft, shards)
    SELECT DISTINCT ON (id) id, kind, currency, no_overdraft, shards FROM wanted ORDER BY id, ord
    ON CONFLICT (id) DO NOTHING
    RETURNING id, no_overdraft, shards
), rows AS (
    INSERT INTO ledger_balance (account_id, shard, no_overdraft)
    SELECT m.id, g.shard, m.no_overdraft FROM made m, generate_series(0, m.shards - 1) g(shard)
)
SELECT w.ord, m.id IS NOT NULL AS made, a.kind, a.currency, a.no_overdraft, a.shards
FROM wanted w
LEFT JOIN made m ON m.id = w.id
LEFT JOIN ledger_account a ON a.id = w.id
ORDER BY w.ord
"""


async def create_accounts(
    conn: asyncpg.Connection, accounts: list[Account], *, default_shards: int = DEFAULT_SHARDS
) -> list[AccountResult]:
    """Create accounts in one statement; results in input order. An id that exists answers
    ``EXISTS`` when it agrees with the stored account, else the first difference."""
    if not accounts:
        return []
    resolved = [a.resolved(default_shards) for a in accounts]
    rows = await conn.fetch(
        _CREATE,
        [a.id for a in accounts],
        [a.kind.value for a in accounts],
        [a.currency for a in accounts],
        [r[0] for r in resolved],
        [r[1] for r in resolved],
    )
    results: list[AccountResult] = []
    made: dict[str, tuple[str, str, bool, int]] = {}
    for account, (no_overdraft, shards), row in zip(accounts, resolved, rows, strict=False):
        mine = (account.kind.value, account.currency, no_overdraft, shards)
        if row["made"]:
            # Made by this call; a repeated id is compared with its first occurrence.
            if account.id not in made:
                made[account.id] = mine
                results.append(AccountResult.OK)
                continue
            stored = made[account.id]
        elif row["kind"] is None:
            # Created by a concurrent call after this statement's snapshot: read it now.
            again = await conn.fetchrow(
                "SELECT kind, currency, no_overdraft, shards FROM ledger_account WHERE id = $1",
                account.id,
            )
            stored = (again["kind"], again["currency"], again["no_overdraft"], again["shards"])
        else:
            stored = (row["kind"], row["currency"], row["no_overdraft"], row["shards"])
        results.append(_compare(mine, stored))
    return results


def _compare(mine: tuple[str, str, bool, int], stored: tuple[str, str, bool, int]) -> AccountResult:
    if mine[0] != stored[0]:
        return AccountResult.EXISTS_WITH_DIFFERENT_KIND
    if mine[1] != stored[1]:
        return AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY
    if mine[2] != stored[2]:
        return AccountResult.EXISTS_WITH_DIFFERENT_OVERDRAFT
    if mine[3] != stored[3]:
        return AccountResult.EXISTS_WITH_DIFFERENT_SHARDS
    return AccountResult.EXISTS
