"""`verify`: check every numbered money invariant (see `ledger`) against the database."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

__all__ = ["Violation", "VerifyReport", "verify", "INVARIANTS", "VIOLATIONS_SHOWN_MAX"]

VIOLATIONS_SHOWN_MAX = 20  # per invariant: enough to diagnose, bounded for a broken ledger

INVARIANTS = {
    1: "double entry: debits equal credits, posted and pending, in every currency",
    2: "no account with the no-overdraft rule is overdrawn; no counter is negative",
    3: "every counter equals the sum of its transfers",
    4: "every hold is resolved at most once, by a transfer that matches it",
    5: "transfers are immutable",
    6: "every transfer moves a positive amount between two existing accounts of one currency",
    7: "the open holds are exactly the holds not yet resolved",
}


@dataclass(frozen=True)
class Violation:
    invariant: int
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"invariant": self.invariant, "detail": self.detail}


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    violations: list[Violation]
    counts: dict[str, int] = field(default_factory=dict)

    def failed(self) -> set[int]:
        return {v.invariant for v in self.violations}

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "invariants": {
                str(n): {"text": text, "ok": n not in self.failed()}
                for n, text in INVARIANTS.items()
            },
            "violations": [v.as_dict() for v in self.violations],
            "counts": self.counts,
        }


_CHECKS: dict[int, list[str]] = {
    1: [
        """SELECT a.currency, sum(b.debits_posted) AS dpo, sum(b.credits_posted) AS cpo,
              sum(b.debits_pending) AS dp, sum(b.credits_pending) AS cp
       FROM ledger_balance b JOIN ledger_account a ON a.id = b.account_id
       GROUP BY a.currency
       HAVING sum(b.debits_posted) <> sum(b.credits_posted)
           OR sum(b.debits_pending) <> sum(b.credits_pending)"""
    ],
    2: [
        """SELECT account_id, shard, debits_pending, debits_posted, credits_pending, credits_posted
       FROM ledger_balance
       WHERE (no_overdraft AND debits_pending::numeric + debits_posted > credits_posted)
          OR least(debits_pending, debits_posted, credits_pending, credits_posted) < 0""",
        """SELECT b.account_id, b.no_overdraft AS row_rule, a.no_overdraft AS account_rule
       FROM ledger_balance b JOIN ledger_account a ON a.id = b.account_id
       WHERE b.no_overdraft <> a.no_overdraft""",
    ],
    3: [
        """WITH open_holds AS (
           SELECT h.* FROM ledger_transfer h
           WHERE h.kind = 2 AND NOT EXISTS (SELECT 1 FROM ledger_transfer r WHERE r.pending_id = h.id)
       ), moves AS (
           SELECT debit_account_id AS a, debit_shard AS s, 0::numeric AS dp, amount::numeric AS dpo,
                  0::numeric AS cp, 0::numeric AS cpo
           FROM ledger_transfer WHERE kind IN (1, 3)
           UNION ALL
           SELECT credit_account_id, credit_shard, 0, 0, 0, amount FROM ledger_transfer WHERE kind IN (1, 3)
           UNION ALL
           SELECT debit_account_id, debit_shard, amount, 0, 0, 0 FROM open_holds
           UNION ALL
           SELECT credit_account_id, credit_shard, 0, 0, amount, 0 FROM open_holds
       ), sums AS (
           SELECT a, s, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo
           FROM moves GROUP BY a, s
       )
       SELECT coalesce(b.account_id, m.a) AS account_id, coalesce(b.shard, m.s) AS shard,
              b.debits_pending, coalesce(m.dp, 0) AS transfers_debits_pending,
              b.debits_posted, coalesce(m.dpo, 0) AS transfers_debits_posted,
              b.credits_pending, coalesce(m.cp, 0) AS transfers_credits_pending,
              b.credits_posted, coalesce(m.cpo, 0) AS transfers_credits_posted
       FROM ledger_balance b FULL JOIN sums m ON m.a = b.account_id AND m.s = b.shard
       WHERE b.account_id IS NULL
          OR b.debits_pending <> coalesce(m.dp, 0) OR b.debits_posted <> coalesce(m.dpo, 0)
          OR b.credits_pending <> coalesce(m.cp, 0) OR b.credits_posted <> coalesce(m.cpo, 0)"""
    ],
    4: [
        """SELECT pending_id, count(*) AS resolutions FROM ledger_transfer
       WHERE pending_id IS NOT NULL GROUP BY pending_id HAVING count(*) > 1""",
        """SELECT r.id, r.kind, r.pending_id, h.kind AS hold_kind
       FROM ledger_transfer r LEFT JOIN ledger_transfer h ON h.id = r.pending_id
       WHERE r.kind >= 3 AND (
             h.id IS NULL OR h.kind <> 2
          OR (r.debit_account_id, r.debit_shard, r.credit_account_id, r.credit_shard)
             <> (h.debit_account_id, h.debit_shard, h.credit_account_id, h.credit_shard)
          OR (r.kind = 3 AND r.amount > h.amount)
          OR (r.kind IN (4, 5) AND r.amount <> h.amount)
          OR (r.kind = 5 AND r.created_at < h.expires_at)
          OR r.seq < h.seq)""",
        """SELECT indexname FROM (VALUES ('ledger_transfer_resolves_once')) v(indexname)
       WHERE NOT EXISTS (SELECT 1 FROM pg_indexes i WHERE i.indexname = v.indexname)""",
    ],
    5: [
        """SELECT v.tgname FROM (VALUES ('ledger_transfer_immutable'),
                                     ('ledger_transfer_immutable_truncate')) v(tgname)
       WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t
                         WHERE t.tgname = v.tgname AND t.tgrelid = 'ledger_transfer'::regclass
                           AND t.tgenabled <> 'D')"""
    ],
    6: [
        """SELECT t.id, t.kind, t.debit_account_id, t.credit_account_id, t.amount,
              d.currency AS debit_currency, c.currency AS credit_currency
       FROM ledger_transfer t
       LEFT JOIN ledger_account d ON d.id = t.debit_account_id
       LEFT JOIN ledger_account c ON c.id = t.credit_account_id
       WHERE d.id IS NULL OR c.id IS NULL OR d.id = c.id OR d.currency <> c.currency
          OR t.amount <= 0 OR t.debit_shard NOT BETWEEN 0 AND d.shards - 1
          OR t.credit_shard NOT BETWEEN 0 AND c.shards - 1"""
    ],
    7: [
        """SELECT coalesce(o.id, h.id) AS hold_id, o.id IS NOT NULL AS listed_open,
              h.id IS NOT NULL AS unresolved
       FROM ledger_hold_open o
       FULL JOIN (SELECT h.id, h.expires_at FROM ledger_transfer h
                  WHERE h.kind = 2
                    AND NOT EXISTS (SELECT 1 FROM ledger_transfer r WHERE r.pending_id = h.id)) h
              ON h.id = o.id
       WHERE o.id IS NULL OR h.id IS NULL OR o.expires_at <> h.expires_at"""
    ],
}

_COUNTS = """SELECT (SELECT count(*) FROM ledger_account) AS accounts,
                    (SELECT count(*) FROM ledger_transfer) AS transfers,
                    (SELECT count(*) FROM ledger_hold_open) AS open_holds,
                    (SELECT count(*) FROM ledger_rejection) AS rejections,
                    -- Call charges that could not be collected, written off on the shortfall
                    -- account(s): not a violation, but never silent.
                    (SELECT coalesce(sum(b.debits_posted - b.credits_posted), 0)
                       FROM ledger_balance b JOIN ledger_account a ON a.id = b.account_id
                      WHERE a.kind = 'call_shortfall')::bigint AS shortfall_micros"""


def _describe(row: asyncpg.Record) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items())


async def verify(conn: asyncpg.Connection) -> VerifyReport:
    """Check invariants 1-7 on one snapshot; ``ok`` is true when none is violated."""
    violations: list[Violation] = []

    async def run() -> dict[str, int]:
        for number, queries in _CHECKS.items():
            for sql in queries:
                rows = await conn.fetch(f"SELECT * FROM ({sql}) v LIMIT {VIOLATIONS_SHOWN_MAX}")
                violations.extend(Violation(number, _describe(r)) for r in rows)
        return dict(await conn.fetchrow(_COUNTS))

    if conn.is_in_transaction():
        counts = await run()
    else:
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            counts = await run()
    return VerifyReport(not violations, violations, counts)
