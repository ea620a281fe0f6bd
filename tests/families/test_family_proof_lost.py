"""A proof call whose worker died mid-call (no end report, ever) is closed by the family sweep,
on the real PostgreSQL: failed with outcome lost once older than the longest call, not before;
the holder sees it and may ask again; a report that still comes records the real outcome."""
from __future__ import annotations

import dataclasses

import pytest

from families import number_proof
from families.errors import Refused
from families.proof_rules import (
    END_REPORT_SLACK_SECONDS,
    PROOF_TRUNKS_MAX,
    ProofRules,
    ProofState,
    longest_call_seconds,
)
from families.settings import FamilySettings
from tests.families.test_family_number_proof import (  # noqa: F401 - fixtures
    Dialler,
    clock,
    pool,
    world,
)
from tests.families import test_family_number_proof as proofs
from web.endpoints import family_proof
from web.pages.portal_messages import PORTAL_EN, PORTAL_ES
from web.family import FamilyServices, sweep_once

RULES = ProofRules(call_seconds_max=300, calls_per_holder_per_day=1, gap_seconds=0)


async def ask(pool, clock, holder, rules=RULES):
    async with pool.acquire() as conn:
        ticket = await number_proof.request(conn, holder, proofs.NUMBER, now=clock(),
                                            rules=rules)
    await number_proof.dispatch(pool, ticket, Dialler(), now=clock())
    return ticket


async def row(pool, ticket):
    async with pool.acquire() as conn:
        return await conn.fetchrow("SELECT state, outcome, ended_at FROM family_number_proof "
                                   "WHERE id = $1", ticket.proof_id)


@pytest.fixture
def fam(pool, clock):
    services = FamilyServices.make(pool, FamilySettings(), clock)
    services.proof = RULES
    return services


async def test_a_calling_proof_older_than_the_longest_call_is_lost_and_may_be_asked_again(
        pool, clock, world, fam):
    a, _ = world
    ticket = await ask(pool, clock, a)
    seen = []
    clock.advance(seconds=RULES.call_seconds_max - 1)       # the call may still be going
    await sweep_once(pool, fam, clock(), lambda what, outcome: seen.append((what, outcome)))
    assert (await row(pool, ticket))["state"] == "calling" and seen == []
    clock.advance(seconds=2)
    await sweep_once(pool, fam, clock(), lambda what, outcome: seen.append((what, outcome)))
    r = await row(pool, ticket)
    assert (r["state"], r["outcome"], r["ended_at"]) == ("failed", "lost", clock())
    assert ("proof_call", "lost") in seen
    async with pool.acquire() as conn:
        s = await number_proof.status(conn, a, proofs.NUMBER, rules=RULES)
        assert (s.state, s.outcome) == (ProofState.FAILED, "lost")
        said = family_proof._out(s)                # what the API and the portal tell the holder
        assert said.message == family_proof.MESSAGES["lost"] and "another call" in said.message
        assert PORTAL_EN["portal.proof.lost"] == said.message and "portal.proof.lost" in PORTAL_ES
        assert await conn.fetchval(
            "SELECT detail->>'proof' FROM family_audit WHERE action = 'number.proof_call_lost' "
            "AND target = $1", proofs.NUMBER) == str(ticket.proof_id)
        with pytest.raises(Refused) as e:         # the call spoke nothing anyone can enter
            await number_proof.enter_code(conn, a, proofs.NUMBER, ticket.code, now=clock(),
                                          rules=RULES)
    assert e.value.code == "proof_code.not_spoken"
    again = await ask(pool, clock, a)     # a lost call is not the holder's: it does not count
    assert (await row(pool, again))["state"] == "calling"
    await sweep_once(pool, fam, clock())                       # a second sweep: nothing more
    assert (await row(pool, again))["state"] == "calling"


async def test_a_report_after_the_sweep_records_the_real_outcome_and_keeps_it_failed(
        pool, clock, world, fam):
    a, _ = world
    ticket = await ask(pool, clock, a)
    clock.advance(seconds=RULES.call_seconds_max + 1)
    async with pool.acquire() as conn:
        assert ticket.proof_id in await number_proof.close_lost(conn, now=clock(), rules=RULES)
        assert await number_proof.call_ended(
            conn, str(ticket.proof_id), worker_id="w1", outcome="hung_up", talk_seconds=3,
            trunk="sip:x", sip_code=200, now=clock())
        assert not await number_proof.call_ended(           # still only its own worker's
            conn, str(ticket.proof_id), worker_id="w2", outcome="spoken", talk_seconds=3,
            trunk="sip:x", sip_code=200, now=clock())
    r = await row(pool, ticket)
    assert (r["state"], r["outcome"]) == ("failed", "hung_up")


async def test_ended_and_unplaced_proofs_are_not_lost(pool, clock, world):
    a, b = world
    spoken = await ask(pool, clock, a)
    await proofs.ended(pool, clock, spoken)
    async with pool.acquire() as conn:
        waiting = await number_proof.request(conn, b, proofs.NUMBER, now=clock(), rules=RULES)
    clock.advance(seconds=RULES.call_seconds_max + 1)
    async with pool.acquire() as conn:
        closed = await number_proof.close_lost(conn, now=clock(), rules=RULES)
    assert spoken.proof_id not in closed and waiting.proof_id not in closed
    assert (await row(pool, spoken))["state"] == "spoken"
    assert (await row(pool, waiting))["state"] == "requested"


def test_the_longest_call_rings_every_trunk_then_says_the_words():
    assert longest_call_seconds(trunks=2, trunk_setup_seconds=5, trunk_answer_seconds=45,
                                prompt_seconds=60) == 2 * 45 + 60 + END_REPORT_SLACK_SECONDS
    assert longest_call_seconds(trunks=1, trunk_setup_seconds=9, trunk_answer_seconds=4.5,
                                prompt_seconds=1) == 9 + 1 + END_REPORT_SLACK_SECONDS


def test_the_node_sets_the_longest_call_from_the_worker_timers():
    from ops.config import FamiliesSection
    from switch.settings import WorkerSettings
    section = dataclasses.replace(FamiliesSection(), proof_prompt_seconds=40)
    rules = ProofRules.from_section(section, WorkerSettings(trunk_answer_seconds=20.0))
    assert rules.call_seconds_max == PROOF_TRUNKS_MAX * 20 + 40 + END_REPORT_SLACK_SECONDS
    assert ProofRules.from_section(section).call_seconds_max == ProofRules().call_seconds_max


def test_the_families_trunk_bound_is_the_workers():
    from switch.worker import proof_place
    assert proof_place.TRUNKS_MAX == PROOF_TRUNKS_MAX
