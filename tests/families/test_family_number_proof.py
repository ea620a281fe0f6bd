"""Proof of a number by a call that speaks a code, on the real PostgreSQL: the request's ladder
(one test per refusal), the limits, expiry, attempts, single use, replays, and another holder's
number. The call itself is a dialler stand-in that records what the switch would dial: the
end-to-end test (tests/e2e/test_proof_call.py) places it over real SIP."""
from __future__ import annotations

import datetime as dt
import itertools
import uuid

import asyncpg
import pytest

from families import number_proof, numbers
from families.errors import NotFound
from families.number_proof import CodeRefused, ProofCallRefused
from families.proof_rules import CodeRefusal, ProofRules, ProofState, RequestRefusal
from switch.provisioning import directory
from tests.families.conftest import T0, Clock

OTHER = "+12125550199"          # claimed by nobody
RULES = ProofRules()
TEMPLATE_DB = "ics_t_template"  # tests/conftest.py's migrated template
_TESTS = itertools.count(1)


class Dialler:
    """What the switch was asked to dial (the real one is switch.control.proof_calls.ProofDialer)."""

    def __init__(self, worker: str | None = "w1") -> None:
        self.worker, self.placed = worker, []

    async def __call__(self, **kw):
        self.placed.append(kw)
        return self.worker


async def add_holder(conn, email: str, now, language: str = "en") -> uuid.UUID:
    hid = uuid.uuid4()
    await conn.execute("INSERT INTO family_holder (id, email, password_hash, language, "
                       "created_at, last_request_at, verified_at) VALUES ($1, $2, 'scrypt$x', $3,"
                       " $4, $4, $4)", hid, email, language, now)
    return hid


@pytest.fixture(scope="module")
async def pool(pg_template):
    """One database for the module (a clone per test costs seconds here): each test has its own
    holders, number and day (`clock`), so limits and owners never meet across tests."""
    from urllib.parse import urlsplit, urlunsplit
    name = f"ics_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_template)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    dsn = urlunsplit(urlsplit(pg_template)._replace(path="/" + name))
    p = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    async with p.acquire() as conn:
        await directory.ensure_house_accounts(conn, "USD")
        await conn.execute("INSERT INTO route (prefix, trunk) VALUES "
                           "('+1212', 'sip:{e164}@127.0.0.1:5099'), ('+44', 'sip:{e164}@x')")
    yield p
    await p.close()
    admin = await asyncpg.connect(pg_template)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
def clock():
    return Clock(T0 + dt.timedelta(days=3 * next(_TESTS)))


@pytest.fixture
async def world(pool, clock):
    """Holders a and b (b speaks Spanish) who both claimed this test's own NUMBER."""
    global NUMBER
    NUMBER = f"+121255501{clock().toordinal() % 100:02d}"   # New York: "interstate" from nowhere
    async with pool.acquire() as conn:
        a = await add_holder(conn, f"a{uuid.uuid4().hex[:8]}@example.org", clock())
        b = await add_holder(conn, f"b{uuid.uuid4().hex[:8]}@example.org", clock(), "es")
        for holder in (a, b):
            await numbers.claim(conn, holder, NUMBER, now=clock())
    return a, b


async def ask(pool, clock, holder, number=None, rules=RULES, dialler=None):
    async with pool.acquire() as conn:
        ticket = await number_proof.request(conn, holder, number or NUMBER, now=clock(),
                                            rules=rules)
    await number_proof.dispatch(pool, ticket, dialler or Dialler(), now=clock())
    return ticket


async def ended(pool, clock, ticket, outcome="spoken", worker="w1"):
    async with pool.acquire() as conn:
        return await number_proof.call_ended(conn, str(ticket.proof_id), worker_id=worker,
                                             outcome=outcome, talk_seconds=12, trunk="sip:x",
                                             sip_code=200, now=clock())


async def enter(pool, clock, holder, code, number=None, rules=RULES):
    async with pool.acquire() as conn:
        return await number_proof.enter_code(conn, holder, number or NUMBER, code, now=clock(),
                                             rules=rules)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**len(code):0{len(code)}d}"


async def audit_actions(pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["action"] for r in await conn.fetch(
            "SELECT action FROM family_audit WHERE target = $1 ORDER BY seq", NUMBER)]


async def test_a_spoken_code_proves_the_number_and_opens_its_prepaid_account(pool, clock, world):
    a, _ = world
    dialler = Dialler()
    ticket = await ask(pool, clock, a, dialler=dialler)
    [placed] = dialler.placed
    assert placed["e164"] == NUMBER and placed["trunks"] == [f"sip:{NUMBER}@127.0.0.1:5099"]
    assert placed["code"] == ticket.code and len(ticket.code) == 6 and ticket.code.isdigit()
    assert placed["language"] == "en"
    await ended(pool, clock, ticket)
    owned = await enter(pool, clock, a, ticket.code)
    assert owned.state == "proven" and owned.account == f"prepaid:{NUMBER}"
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM family_number_proof WHERE id = $1",
                                  ticket.proof_id)
        assert await conn.fetchval("SELECT proven_by FROM family_number WHERE holder_id = $1",
                                   a) == f"call:{ticket.proof_id}"
    assert row["state"] == "proven" and row["outcome"] == "spoken" and row["worker_id"] == "w1"
    assert row["sip_code"] == 200 and row["talk_seconds"] == 12
    assert ticket.code.encode() not in bytes(row["code_hash"]) and len(row["code_hash"]) == 32
    assert await audit_actions(pool) == [
        "number.claim", "number.claim", "number.proof_call_requested",
        "number.proof_call_placed", "number.proof_call_ended", "number.proof_code_ok",
        "number.prove"]


async def test_the_code_is_stored_only_as_a_salted_hash(pool, clock, world):
    a, _ = world
    t1 = await ask(pool, clock, a)
    clock.advance(seconds=RULES.gap_seconds)
    async with pool.acquire() as conn:
        stored = await conn.fetch("SELECT code_salt FROM family_number_proof")
        dump = " ".join(str(dict(r)) for r in await conn.fetch(
            "SELECT * FROM family_number_proof WHERE holder_id = $1", a))
    assert t1.code not in dump
    assert len({bytes(r["code_salt"]) for r in stored}) == len(stored)


async def test_a_code_is_single_use_a_replay_is_refused(pool, clock, world):
    a, _ = world
    ticket = await ask(pool, clock, a)
    await ended(pool, clock, ticket)
    await enter(pool, clock, a, ticket.code)
    with pytest.raises(CodeRefused) as e:
        await enter(pool, clock, a, ticket.code)
    assert e.value.reason is CodeRefusal.USED


async def test_a_code_expires(pool, clock, world):
    a, _ = world
    ticket = await ask(pool, clock, a)
    await ended(pool, clock, ticket)
    clock.advance(seconds=RULES.code_seconds)
    with pytest.raises(CodeRefused) as e:
        await enter(pool, clock, a, ticket.code)
    assert e.value.reason is CodeRefusal.EXPIRED
    async with pool.acquire() as conn:
        assert (await numbers.numbers_of(conn, a))[0].state == "unproven"


async def test_wrong_codes_use_up_the_attempts_and_then_even_the_right_one_fails(pool, clock,
                                                                                 world):
    a, _ = world
    ticket = await ask(pool, clock, a)
    await ended(pool, clock, ticket)
    for left in range(RULES.attempts_max - 1, -1, -1):
        with pytest.raises(CodeRefused) as e:
            await enter(pool, clock, a, wrong(ticket.code))
        assert e.value.reason is CodeRefusal.WRONG_CODE and e.value.attempts_left == left
    with pytest.raises(CodeRefused) as e:
        await enter(pool, clock, a, ticket.code)
    assert e.value.reason is CodeRefusal.ATTEMPTS_USED
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT state, attempts FROM family_number_proof "
                                  "WHERE id = $1", ticket.proof_id)
    assert (row["state"], row["attempts"]) == ("exhausted", RULES.attempts_max)


async def test_a_malformed_code_costs_an_attempt(pool, clock, world):
    a, _ = world
    ticket = await ask(pool, clock, a)
    await ended(pool, clock, ticket)
    with pytest.raises(CodeRefused) as e:
        await enter(pool, clock, a, "12ab")
    assert e.value.reason is CodeRefusal.MALFORMED
    assert e.value.attempts_left == RULES.attempts_max - 1
    owned = await enter(pool, clock, a, f"{ticket.code[:3]} {ticket.code[3:]}")  # spaces ok
    assert owned.state == "proven"


async def test_no_code_is_taken_before_the_call_spoke_it(pool, clock, world):
    a, _ = world
    ticket = await ask(pool, clock, a, dialler=Dialler(worker=None))   # no worker took it
    with pytest.raises(CodeRefused) as e:
        await enter(pool, clock, a, ticket.code)
    assert e.value.reason is CodeRefusal.NOT_SPOKEN
    clock.advance(seconds=1)
    t2 = await ask(pool, clock, a)        # no worker: the holder may ask again at once
    await ended(pool, clock, t2, outcome="no_answer")
    with pytest.raises(CodeRefused) as e:
        await enter(pool, clock, a, t2.code)
    assert e.value.reason is CodeRefusal.NOT_SPOKEN


async def test_a_newer_request_supersedes_the_older_code(pool, clock, world):
    a, _ = world
    old = await ask(pool, clock, a)
    await ended(pool, clock, old)
    clock.advance(seconds=RULES.gap_seconds)
    new = await ask(pool, clock, a)
    await ended(pool, clock, new)
    if old.code != new.code:
        with pytest.raises(CodeRefused):
            await enter(pool, clock, a, old.code)
    assert (await enter(pool, clock, a, new.code)).state == "proven"


async def test_another_holders_code_does_not_prove_my_claim(pool, clock, world):
    a, b = world
    ta = await ask(pool, clock, a)
    await ended(pool, clock, ta)
    with pytest.raises(NotFound):          # b asked for no call: a's code is not b's
        await enter(pool, clock, b, ta.code)
    assert (await enter(pool, clock, a, ta.code)).state == "proven"
    clock.advance(seconds=RULES.gap_seconds)
    with pytest.raises(ProofCallRefused) as e:   # and b cannot have the switch ring it now
        await ask(pool, clock, b)
    assert e.value.reason is RequestRefusal.PROVEN_BY_OTHER


async def test_an_end_report_from_another_worker_or_for_an_unknown_proof_is_not_recorded(
        pool, clock, world):
    a, _ = world
    ticket = await ask(pool, clock, a)
    assert not await ended(pool, clock, ticket, worker="w2")
    async with pool.acquire() as conn:
        assert not await number_proof.call_ended(
            conn, str(uuid.uuid4()), worker_id="w1", outcome="spoken", talk_seconds=1,
            trunk=None, sip_code=None, now=clock())
        assert await conn.fetchval("SELECT state FROM family_number_proof WHERE id = $1",
                                   ticket.proof_id) == "calling"
    assert await ended(pool, clock, ticket) and await ended(pool, clock, ticket)   # resent: ok


async def test_a_late_end_report_does_not_reopen_a_used_proof(pool, clock, world):
    a, _ = world
    ticket = await ask(pool, clock, a)
    await enter(pool, clock, a, ticket.code)       # typed while the repeat still plays
    await ended(pool, clock, ticket, outcome="hung_up")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT state, outcome FROM family_number_proof "
                                  "WHERE id = $1", ticket.proof_id)
    assert tuple(row) == ("proven", "hung_up")


# -- the request's ladder: one test per refusal --------------------------------------------------

async def refused(pool, clock, holder, number=None, rules=RULES) -> RequestRefusal:
    dialler = Dialler()
    with pytest.raises(ProofCallRefused) as e:
        await ask(pool, clock, holder, number, rules, dialler)
    assert dialler.placed == []
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT detail->>'reason' FROM family_audit WHERE action = "
            "'number.proof_call_refused' ORDER BY seq DESC LIMIT 1") == e.value.reason.value
    return e.value.reason


async def test_refused_not_claimed(pool, clock, world):
    a, _ = world
    assert await refused(pool, clock, a, OTHER) is RequestRefusal.NOT_CLAIMED


async def test_refused_already_proven(pool, clock, world):
    a, _ = world
    async with pool.acquire() as conn:
        await numbers.prove(conn, a, NUMBER, by="op", now=clock())
    assert await refused(pool, clock, a) is RequestRefusal.ALREADY_PROVEN


@pytest.mark.parametrize("number", ["+18005550100", "+19005550123", "+442079460018"],
                         ids=["toll_free", "premium", "international"])
async def test_refused_number_class(pool, clock, world, number):
    a, _ = world
    async with pool.acquire() as conn:
        await numbers.claim(conn, a, number, now=clock())
    assert await refused(pool, clock, a, number) is RequestRefusal.REFUSED_NUMBER_CLASS


async def test_international_is_rung_where_the_rules_allow(pool, clock, world):
    a, _ = world
    async with pool.acquire() as conn:
        await numbers.claim(conn, a, "+442079460018", now=clock())
    await ask(pool, clock, a, "+442079460018", ProofRules(international=True))


async def test_refused_blocked(pool, clock, world):
    a, _ = world
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO block (pattern, is_prefix, scope, requested_by) VALUES "
                           "($1, false, 'global', 'staff')", NUMBER)
    assert await refused(pool, clock, a) is RequestRefusal.BLOCKED


async def test_refused_no_route(pool, clock, world):
    a, _ = world
    chicago = "+13125550142"                     # no route for +1312
    async with pool.acquire() as conn:
        await numbers.claim(conn, a, chicago, now=clock())
    assert await refused(pool, clock, a, chicago) is RequestRefusal.NO_ROUTE


async def test_refused_too_soon_then_allowed_after_the_gap(pool, clock, world):
    a, b = world
    await ask(pool, clock, a)
    clock.advance(seconds=RULES.gap_seconds - 1)
    assert await refused(pool, clock, b) is RequestRefusal.TOO_SOON    # whoever asks
    clock.advance(seconds=1)
    await ask(pool, clock, b)


async def test_refused_number_daily_limit_across_holders(pool, clock, world):
    a, b = world
    for holder in [a, b, a][:RULES.calls_per_number_per_day]:
        await ask(pool, clock, holder)
        clock.advance(seconds=RULES.gap_seconds)
    assert await refused(pool, clock, b) is RequestRefusal.NUMBER_DAILY_LIMIT
    clock.advance(days=1)
    await ask(pool, clock, b)


async def test_refused_holder_daily_limit(pool, clock, world):
    a, _ = world
    rules = ProofRules(calls_per_number_per_day=100, gap_seconds=0)
    for i in range(rules.calls_per_holder_per_day):
        await ask(pool, clock, a, rules=rules)
    assert await refused(pool, clock, a, rules=rules) is RequestRefusal.HOLDER_DAILY_LIMIT


async def test_refused_node_hourly_limit(pool, clock, world):
    a, b = world
    rules = ProofRules(calls_per_node_per_hour=2, gap_seconds=0)
    await ask(pool, clock, a, rules=rules)
    await ask(pool, clock, b, rules=rules)
    assert await refused(pool, clock, a, rules=rules) is RequestRefusal.NODE_HOURLY_LIMIT


async def test_calls_no_worker_took_do_not_count_against_the_limits(pool, clock, world):
    a, _ = world
    rules = ProofRules(calls_per_holder_per_day=1)
    for _ in range(3):
        await ask(pool, clock, a, rules=rules, dialler=Dialler(worker=None))
    await ask(pool, clock, a, rules=rules)


async def test_a_malformed_number_is_refused_naming_the_field(pool, clock, world):
    a, _ = world
    from families.errors import Invalid
    async with pool.acquire() as conn:
        with pytest.raises(Invalid) as e:
            await number_proof.request(conn, a, "not a number", now=clock(), rules=RULES)
    assert e.value.field == "number"


async def test_the_status_shows_the_latest_proof(pool, clock, world):
    a, _ = world
    async with pool.acquire() as conn:
        assert await number_proof.status(conn, a, NUMBER, rules=RULES) is None
    ticket = await ask(pool, clock, a)
    await ended(pool, clock, ticket, outcome="busy")
    async with pool.acquire() as conn:
        s = await number_proof.status(conn, a, NUMBER, rules=RULES)
    assert (s.state, s.outcome, s.attempts_left) == (ProofState.UNANSWERED, "busy",
                                                     RULES.attempts_max)
    assert s.expires_at == s.created_at + dt.timedelta(seconds=RULES.code_seconds)


# -- races: parallel requests and guesses cannot outrun a limit ------------------------------------

async def test_parallel_requests_cannot_outrun_the_daily_limit_of_a_number(pool, clock, world):
    import asyncio
    a, b = world
    rules = ProofRules(gap_seconds=0)

    async def one(holder):
        try:
            await ask(pool, clock, holder, rules=rules)
            return "placed"
        except ProofCallRefused as e:
            return e.reason.value
    results = await asyncio.gather(*(one(h) for h in [a, b] * 4))
    assert results.count("placed") == rules.calls_per_number_per_day
    assert set(results) == {"placed", RequestRefusal.NUMBER_DAILY_LIMIT.value}


async def test_parallel_guesses_cannot_outrun_the_attempts(pool, clock, world):
    import asyncio
    a, _ = world
    ticket = await ask(pool, clock, a)
    await ended(pool, clock, ticket)

    async def guess():
        try:
            await enter(pool, clock, a, wrong(ticket.code))
        except CodeRefused as e:
            return e.reason
    reasons = await asyncio.gather(*(guess() for _ in range(RULES.attempts_max + 3)))
    assert reasons.count(CodeRefusal.WRONG_CODE) == RULES.attempts_max
    assert reasons.count(CodeRefusal.ATTEMPTS_USED) == 3
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT attempts FROM family_number_proof WHERE id = $1",
                                   ticket.proof_id) == RULES.attempts_max
