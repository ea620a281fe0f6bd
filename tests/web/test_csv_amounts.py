"""The CDR export formats amounts inside PostgreSQL (for its rows/s); it must write exactly what
ledger.money.format_amount writes, for every amount a CDR can hold."""
import random

from ledger.money import AMOUNT_MAX, format_amount
from web.cdrs import _money_sql


async def test_the_exports_sql_amounts_are_the_money_modules_text(db):
    rng = random.Random(20261202)
    edges = [0, 1, 9, 10, 99, 100, 9_999, 10_000, 10_001, 99_999, 100_000, 999_999, 1_000_000,
             1_000_001, 1_010_000, 1_234_567, AMOUNT_MAX - 1, AMOUNT_MAX]
    amounts = edges + [rng.randrange(0, AMOUNT_MAX + 1) for _ in range(2000)] + [
        rng.randrange(0, 10**8) * 10**k for k in range(7) for _ in range(50)]
    rows = await db.fetch(f"SELECT a, {_money_sql('a')} AS text FROM unnest($1::bigint[]) a",
                          amounts)
    wrong = [(r["a"], r["text"], format_amount(r["a"])) for r in rows
             if r["text"] != format_amount(r["a"])]
    assert wrong == []
