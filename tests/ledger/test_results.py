"""Every result code, one row each: what provokes it, and that a rejection applies nothing."""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from importlib import resources

import pytest

from ledger import (AMOUNT_MAX, Account, AccountKind, AccountResult, BatchTooLarge, InvalidAccount,
                    InvalidTransfer, Transfer, TransferCode, TransferKind as K, TransferResult as R,
                    balances, create_accounts, submit, sweep_expired, verify)
from ledger.transfers import BATCH_SIZE_MAX

T0 = dt.datetime(2031, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
NIL = uuid.UUID(int=0)
BIGINT_MAX = 2**63 - 1


@dataclasses.dataclass
class Book:
    """A small ledger: a funded family account, and holds in every state."""
    single: Transfer
    open_hold: Transfer
    posted_hold: Transfer
    post: Transfer
    voided_hold: Transfer
    expired_hold: Transfer


async def _book(conn) -> Book:
    await create_accounts(conn, [
        Account("fund", AccountKind.FUNDING_CLEARING), Account("fam", AccountKind.PREPAID_PHONE),
        Account("clr", AccountKind.CALL_CLEARING), Account("rev", AccountKind.REVENUE),
        Account("eur", AccountKind.PREPAID_PHONE, currency="EUR")])
    single = Transfer(uuid.uuid4(), K.SINGLE, "fund", "fam", 1_000_000, code=TransferCode.DEPOSIT,
                      ref="card 1")
    hold = lambda amount, expires_in=60: Transfer(uuid.uuid4(), K.HOLD, "fam", "clr", amount,
                                                  expires_in=expires_in,
                                                  code=TransferCode.CALL_CHARGE, ref="call 7")
    book = Book(single, hold(100_000), hold(50_000), None, hold(40_000), hold(30_000, expires_in=1))
    book.post = Transfer(uuid.uuid4(), K.POST, hold=book.posted_hold.id, amount=20_000)
    void = Transfer(uuid.uuid4(), K.VOID, hold=book.voided_hold.id)
    results = await submit(conn, [single, book.open_hold, book.posted_hold, book.voided_hold,
                                  book.expired_hold, book.post, void], now=T0)
    assert [r.result for r in results] == [R.OK] * 7
    assert await sweep_expired(conn, T0 + dt.timedelta(seconds=1)) == 1
    return book


def fresh(**fields) -> Transfer:
    base = dict(id=uuid.uuid4(), kind=K.SINGLE, debit="fam", credit="rev", amount=1_000)
    base.update(fields)
    return Transfer(**base)


def resolve(kind: K, hold: Transfer, **fields) -> Transfer:
    return Transfer(uuid.uuid4(), kind, hold=hold.id, **fields)


# Row name: the result code it provokes (or that code and a variant). Each row gives the expected
# results of the batch, the batch (built on the book) and when it is submitted (seconds after T0).
CASES: dict[str, tuple] = {
    "ok": ([R.OK], lambda b: [fresh()], 5),
    "linked_event_failed": ([R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_BE_POSITIVE],
                            lambda b: [fresh(linked=True), fresh(amount=0)], 5),
    "linked_event_chain_open": ([R.OK, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN],
                                lambda b: [fresh(), fresh(linked=True), fresh(linked=True)], 5),
    "id_must_not_be_zero": ([R.ID_MUST_NOT_BE_ZERO], lambda b: [fresh(id=NIL)], 5),
    "hold_id_must_be_null": ([R.HOLD_ID_MUST_BE_NULL], lambda b: [fresh(hold=b.open_hold.id)], 5),
    "debit_account_required": ([R.DEBIT_ACCOUNT_REQUIRED], lambda b: [fresh(debit=None)], 5),
    "credit_account_required": ([R.CREDIT_ACCOUNT_REQUIRED], lambda b: [fresh(credit=None)], 5),
    "hold_id_required": ([R.HOLD_ID_REQUIRED], lambda b: [fresh(kind=K.POST, debit=None,
                                                                credit=None)], 5),
    "hold_id_must_be_different": ([R.HOLD_ID_MUST_BE_DIFFERENT],
                                  lambda b: [Transfer(b.single.id, K.VOID, hold=b.single.id)], 5),
    "accounts_must_be_different": ([R.ACCOUNTS_MUST_BE_DIFFERENT], lambda b: [fresh(credit="fam")], 5),
    "amount_must_be_positive": ([R.AMOUNT_MUST_BE_POSITIVE], lambda b: [fresh(amount=-1)], 5),
    "amount_out_of_range": ([R.AMOUNT_OUT_OF_RANGE], lambda b: [fresh(amount=AMOUNT_MAX + 1)], 5),
    "expiry_reserved_for_hold": ([R.EXPIRY_RESERVED_FOR_HOLD], lambda b: [fresh(expires_in=60)], 5),
    "expiry_out_of_range": ([R.EXPIRY_OUT_OF_RANGE], lambda b: [fresh(kind=K.HOLD)], 5),
    "exists_with_different_kind": ([R.EXISTS_WITH_DIFFERENT_KIND],
                                   lambda b: [dataclasses.replace(b.single, kind=K.HOLD,
                                                                  expires_in=60)], 5),
    "exists_with_different_flags": ([R.EXISTS_WITH_DIFFERENT_FLAGS, R.LINKED_EVENT_FAILED],
                                    lambda b: [dataclasses.replace(b.single, linked=True),
                                               fresh()], 5),
    "exists_with_different_hold": ([R.EXISTS_WITH_DIFFERENT_HOLD],
                                   lambda b: [dataclasses.replace(b.post, hold=b.open_hold.id)], 5),
    "exists_with_different_expiry": ([R.EXISTS_WITH_DIFFERENT_EXPIRY],
                                     lambda b: [dataclasses.replace(b.open_hold, expires_in=61)], 5),
    "exists_with_different_debit_account": (
        [R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT],
        lambda b: [dataclasses.replace(b.single, debit="rev")], 5),
    "exists_with_different_credit_account": (
        [R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT],
        lambda b: [dataclasses.replace(b.single, credit="rev")], 5),
    "exists_with_different_amount": ([R.EXISTS_WITH_DIFFERENT_AMOUNT],
                                     lambda b: [dataclasses.replace(b.post, amount=20_001)], 5),
    "exists_with_different_code": ([R.EXISTS_WITH_DIFFERENT_CODE],
                                   lambda b: [dataclasses.replace(b.single, code=TransferCode.REFUND)], 5),
    "exists_with_different_ref": ([R.EXISTS_WITH_DIFFERENT_REF],
                                  lambda b: [dataclasses.replace(b.single, ref="card 2")], 5),
    "exists": ([R.EXISTS, R.EXISTS], lambda b: [b.single, dataclasses.replace(b.post, amount=None)], 5),
    "debit_account_not_found": ([R.DEBIT_ACCOUNT_NOT_FOUND], lambda b: [fresh(debit="nobody")], 5),
    "credit_account_not_found": ([R.CREDIT_ACCOUNT_NOT_FOUND], lambda b: [fresh(credit="nobody")], 5),
    "currency_mismatch": ([R.CURRENCY_MISMATCH], lambda b: [fresh(credit="eur")], 5),
    "hold_not_found": ([R.HOLD_NOT_FOUND], lambda b: [fresh(kind=K.POST, debit=None, credit=None,
                                                            hold=uuid.uuid4())], 5),
    "not_a_hold": ([R.NOT_A_HOLD], lambda b: [resolve(K.POST, b.single)], 5),
    "hold_has_different_debit_account": ([R.HOLD_HAS_DIFFERENT_DEBIT_ACCOUNT],
                                         lambda b: [resolve(K.POST, b.open_hold, debit="rev")], 5),
    "hold_has_different_credit_account": ([R.HOLD_HAS_DIFFERENT_CREDIT_ACCOUNT],
                                          lambda b: [resolve(K.POST, b.open_hold, credit="rev")], 5),
    "exceeds_hold_amount": ([R.EXCEEDS_HOLD_AMOUNT],
                            lambda b: [resolve(K.POST, b.open_hold, amount=100_001)], 5),
    "hold_has_different_amount": ([R.HOLD_HAS_DIFFERENT_AMOUNT],
                                  lambda b: [resolve(K.VOID, b.open_hold, amount=5)], 5),
    "hold_already_posted": ([R.HOLD_ALREADY_POSTED], lambda b: [resolve(K.VOID, b.posted_hold)], 5),
    "hold_already_voided": ([R.HOLD_ALREADY_VOIDED], lambda b: [resolve(K.POST, b.voided_hold)], 5),
    "hold_expired": ([R.HOLD_EXPIRED], lambda b: [resolve(K.POST, b.expired_hold)], 5),
    "hold_expired_before_the_sweeper_ran": ([R.HOLD_EXPIRED],
                                            lambda b: [resolve(K.POST, b.open_hold)], 60),
    "hold_not_expired": ([R.HOLD_NOT_EXPIRED], lambda b: [resolve(K.EXPIRE, b.open_hold)], 59),
    "insufficient_funds": ([R.INSUFFICIENT_FUNDS], lambda b: [fresh(amount=1_000_000)], 5),
}


def test_every_result_code_has_a_row():
    codes = {R[name.upper()] for name in CASES if name.upper() in R.__members__}
    overflow_rows = {R.OVERFLOWS_DEBITS, R.OVERFLOWS_CREDITS}   # test_overflow_* below
    assert set(R) - overflow_rows == codes


@pytest.mark.parametrize("case", list(CASES))
async def test_result_code(conn, case):
    expected, build, seconds = CASES[case]
    assert any(case.startswith(code.name.lower()) for code in expected)
    book = await _book(conn)
    before = [b.as_dict() for b in await balances(conn)]
    count = await conn.fetchval("SELECT count(*) FROM ledger_transfer")
    got = [r.result for r in await submit(conn, build(book), now=T0 + dt.timedelta(seconds=seconds))]
    assert got == expected
    if not any(r == R.OK for r in got):
        # A rejected transfer (and an exists) applies nothing.
        assert [b.as_dict() for b in await balances(conn)] == before
        assert await conn.fetchval("SELECT count(*) FROM ledger_transfer") == count
    assert (await verify(conn)).ok


async def test_overflow_of_the_debit_accounts_debits_is_refused(conn):
    await create_accounts(conn, [Account("big", AccountKind.FUNDING_CLEARING),
                                 Account("fam", AccountKind.PREPAID_PHONE)])
    await conn.execute("UPDATE ledger_balance SET debits_posted = $1 WHERE account_id = 'big'",
                       BIGINT_MAX - 10)
    t = Transfer(uuid.uuid4(), K.SINGLE, "big", "fam", 11)
    assert [r.result for r in await submit(conn, [t])] == [R.OVERFLOWS_DEBITS]
    assert await conn.fetchval("SELECT debits_posted FROM ledger_balance WHERE account_id = 'big'") \
        == BIGINT_MAX - 10
    assert [r.result for r in await submit(conn, [dataclasses.replace(t, id=uuid.uuid4(), amount=10)])] \
        == [R.OK]


async def test_overflow_of_the_credit_accounts_credits_is_refused(conn):
    await create_accounts(conn, [Account("fund", AccountKind.FUNDING_CLEARING),
                                 Account("sink", AccountKind.REFUNDS_PAYABLE)])
    await conn.execute("UPDATE ledger_balance SET credits_pending = $1 WHERE account_id = 'sink'",
                       BIGINT_MAX - 10)
    t = Transfer(uuid.uuid4(), K.HOLD, "fund", "sink", 11, expires_in=60)
    assert [r.result for r in await submit(conn, [t])] == [R.OVERFLOWS_CREDITS]


async def test_a_rejected_id_keeps_its_first_result_after_the_state_changes(conn):
    book = await _book(conn)
    spend = fresh(amount=2_000_000)
    assert [r.result for r in await submit(conn, [spend], now=T0)] == [R.INSUFFICIENT_FUNDS]
    await submit(conn, [fresh(debit="fund", credit="fam", amount=5_000_000)], now=T0)
    assert [r.result for r in await submit(conn, [spend], now=T0)] == [R.INSUFFICIENT_FUNDS]
    # Other content under the rejected id gets the same answer.
    assert [r.result for r in await submit(conn, [dataclasses.replace(spend, amount=1)], now=T0)] \
        == [R.INSUFFICIENT_FUNDS]
    assert book.single.id   # the book is there; nothing else changed
    assert (await verify(conn)).ok


async def test_a_post_without_amount_posts_the_whole_hold_and_a_partial_post_releases_the_rest(conn):
    book = await _book(conn)
    whole = resolve(K.POST, book.open_hold)
    assert [r.result for r in await submit(conn, [whole], now=T0)] == [R.OK]
    row = await conn.fetchrow("SELECT amount FROM ledger_transfer WHERE id = $1", whole.id)
    assert row["amount"] == 100_000
    fam = {b.account_id: b for b in await balances(conn)}["fam"]
    # 1_000_000 funded, 20_000 posted earlier (of a 50_000 hold), 100_000 now; nothing held.
    assert (fam.posted, fam.pending, fam.available) == (880_000, 0, 880_000)


# -- the Python and SQL mirrors of the result codes agree --------------------------------------------
def _migration_sql() -> str:
    """Every migration that (re)defines ledger_submit, in order: the last one's constants win."""
    root = resources.files("ledger") / "migrations"
    texts = [f.read_text() for f in sorted(root.iterdir(), key=lambda f: f.name)
             if f.name.endswith(".sql")]
    return "".join(t for t in texts if "FUNCTION ledger_submit(" in t)


def test_sql_result_constants_mirror_the_python_enum():
    constants = dict(re.findall(r"R_([A-Z_]+) CONSTANT smallint := (\d+);", _migration_sql()))
    assert {name: int(v) for name, v in constants.items()} == {r.name: r.value for r in R}


async def test_result_names_table_mirrors_the_python_enum(conn):
    rows = await conn.fetch("SELECT code, name FROM ledger_result")
    assert {r["code"]: r["name"] for r in rows} == {r.value: r.name.lower() for r in R}


# -- accounts --------------------------------------------------------------------------------------
ACCOUNT_CASES = {
    AccountResult.OK: Account("new", AccountKind.PREPAID_PHONE),
    AccountResult.EXISTS: Account("fam", AccountKind.PREPAID_PHONE),
    AccountResult.EXISTS_WITH_DIFFERENT_KIND: Account("fam", AccountKind.INMATE_DEBIT),
    AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY: Account("fam", AccountKind.PREPAID_PHONE, "EUR"),
    AccountResult.EXISTS_WITH_DIFFERENT_OVERDRAFT: Account("fam", AccountKind.PREPAID_PHONE,
                                                           no_overdraft=False),
    AccountResult.EXISTS_WITH_DIFFERENT_SHARDS: Account("fam", AccountKind.PREPAID_PHONE,
                                                        no_overdraft=False, shards=1),
}


@pytest.mark.parametrize("expected", list(AccountResult))
async def test_account_result(conn, expected):
    await create_accounts(conn, [Account("fam", AccountKind.PREPAID_PHONE),
                                 Account("rev", AccountKind.REVENUE)])
    account = ACCOUNT_CASES[expected]
    if expected == AccountResult.EXISTS_WITH_DIFFERENT_SHARDS:
        account = Account("rev", AccountKind.REVENUE, shards=3)
    assert await create_accounts(conn, [account]) == [expected]


async def test_a_repeated_account_in_one_call_is_compared_with_its_first_occurrence(conn):
    got = await create_accounts(conn, [Account("a", AccountKind.PREPAID_PHONE),
                                       Account("a", AccountKind.PREPAID_PHONE),
                                       Account("a", AccountKind.REVENUE)])
    assert got == [AccountResult.OK, AccountResult.EXISTS, AccountResult.EXISTS_WITH_DIFFERENT_KIND]


async def test_hot_accounts_are_spread_over_shards_and_people_money_is_not(conn):
    await create_accounts(conn, [Account("rev", AccountKind.REVENUE),
                                 Account("fam", AccountKind.PREPAID_PHONE)], default_shards=8)
    rows = dict(await conn.fetch("SELECT account_id, count(*) FROM ledger_balance GROUP BY 1"))
    assert rows == {"rev": 8, "fam": 1}


@pytest.mark.parametrize("field,kwargs", [
    ("id", dict(id="", kind="revenue")),
    ("id", dict(id="has space", kind="revenue")),
    ("id", dict(id="x" * 129, kind="revenue")),
    ("kind", dict(id="a", kind="piggy_bank")),
    ("currency", dict(id="a", kind="revenue", currency="usd")),
    ("no_overdraft", dict(id="a", kind="revenue", no_overdraft="yes")),
    ("shards", dict(id="a", kind="revenue", shards=0)),
    ("no_overdraft", dict(id="a", kind="prepaid_phone", no_overdraft=True, shards=4)),
])
def test_an_unusable_account_is_refused_naming_the_field(field, kwargs):
    with pytest.raises(InvalidAccount) as e:
        Account(**kwargs)
    assert e.value.field == field


@pytest.mark.parametrize("field,kwargs", [
    ("id", dict(id="not-a-uuid")),
    ("kind", dict(kind=9)),
    ("debit", dict(debit=5)),
    ("credit", dict(credit=b"rev")),
    ("amount", dict(amount=1.5)),
    ("amount", dict(amount=True)),
    ("hold", dict(hold="h")),
    ("expires_in", dict(expires_in="60")),
    ("linked", dict(linked=1)),
    ("code", dict(code="bribe")),
    ("ref", dict(ref="r" * 201)),
    # Near misses of the exact types the cheap checks test first.
    ("id", dict(id=str(uuid.uuid4()))),
    ("id", dict(id=None)),
    ("kind", dict(kind="hold")),
    ("debit", dict(debit=b"a")),
    ("credit", dict(credit=1)),
    ("amount", dict(amount=False)),
    ("amount", dict(amount="5")),
    ("hold", dict(hold=str(uuid.uuid4()))),
    ("expires_in", dict(expires_in=True)),
    ("expires_in", dict(expires_in=1.0)),
    ("linked", dict(linked=None)),
    ("linked", dict(linked=0)),
    ("code", dict(code=3)),
    ("ref", dict(ref=7)),
    ("ref", dict(ref=type("Text", (str,), {})("r" * 201))),     # a str subclass, too long
])
def test_an_ill_typed_transfer_is_refused_naming_the_field(field, kwargs):
    base = dict(id=uuid.uuid4(), kind=K.SINGLE, debit="a", credit="b", amount=1)
    base.update(kwargs)
    with pytest.raises(InvalidTransfer) as e:
        Transfer(**base)
    assert e.value.field == field


async def test_a_batch_over_the_limit_is_refused_before_the_database(conn):
    batch = [fresh(debit="a", credit="b") for _ in range(BATCH_SIZE_MAX + 1)]
    with pytest.raises(BatchTooLarge):
        await submit(conn, batch)
    assert await conn.fetchval("SELECT count(*) FROM ledger_rejection") == 0


# -- the database itself refuses what breaks an invariant -------------------------------------------
async def test_invariant_2_a_buggy_update_cannot_overdraw_a_no_overdraft_account(conn):
    import asyncpg
    await _book(conn)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("UPDATE ledger_balance SET debits_posted = credits_posted + 1 "
                           "WHERE account_id = 'fam'")


async def test_invariant_5_transfers_cannot_be_updated_or_deleted(conn):
    import asyncpg
    book = await _book(conn)
    for sql in ("UPDATE ledger_transfer SET amount = 1 WHERE id = $1",
                "DELETE FROM ledger_transfer WHERE id = $1"):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="immutable"):
            await conn.execute(sql, book.single.id)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="immutable"):
        await conn.execute("TRUNCATE ledger_transfer CASCADE")


async def test_invariant_4_the_database_refuses_a_second_resolution_of_a_hold(conn):
    import asyncpg
    book = await _book(conn)
    with pytest.raises(asyncpg.UniqueViolationError, match="resolves_once"):
        await conn.execute(
            "INSERT INTO ledger_transfer (id, kind, debit_account_id, debit_shard, credit_account_id,"
            " credit_shard, amount, pending_id, linked, code, ref, created_at)"
            " SELECT gen_random_uuid(), 4, debit_account_id, debit_shard, credit_account_id,"
            " credit_shard, amount, id, false, code, ref, now() FROM ledger_transfer WHERE id = $1",
            book.posted_hold.id)


async def test_verify_names_the_invariants_a_tampered_ledger_breaks(conn):
    await _book(conn)
    assert (await verify(conn)).ok
    await conn.execute("UPDATE ledger_balance SET credits_posted = credits_posted + 7 "
                       "WHERE account_id = 'fam'")
    await conn.execute("DELETE FROM ledger_hold_open")
    report = await verify(conn)
    assert not report.ok
    assert report.failed() == {1, 3, 7}
