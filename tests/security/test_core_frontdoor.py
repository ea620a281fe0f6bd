"""Hostile tests of the front door under load: INVITEs whose kiosk never follows the 302 cannot shut
the door. A reservation lapses after slot_reservation_seconds; one source can hold only
frontdoor_reservations_per_source_max of them (486 beyond); 503 means every worker is full. The
worker's table sees a kiosk arrive (and leave) by an immediate heartbeat. Datagrams alone, a
task.Clock and the real WorkerTable."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import task

from switch.processes.frontdoor import FrontDoor
from switch.processes.supervisor import SETUP_PREFIX, WorkerTable

from tests.security import core_edge  # noqa: F401  (puts tests/switch on the path)
from test_frontdoor import Wire, count, request

RESERVATION_SECONDS = 2.0
ATTACKER = ("10.66.6.6", 5060)


@pytest.fixture
def clock():
    c = task.Clock()
    c.advance(1000.0)
    return c


@pytest.fixture
def table(clock):
    t = WorkerTable(slot_reservation_seconds=RESERVATION_SECONDS, default_host="10.0.0.1")
    for i, wid in enumerate(("w1", "w2")):
        t.spawned(wid, host="10.0.0.1", sip_port=5071 + i, pid=1, now=clock.seconds())
        t.hello(wid, capacity=2, sip_port=5071 + i, pid=1, now=clock.seconds())
    return t


@pytest.fixture
def door(table, clock):
    d = FrontDoor(table, clock, retry_after_seconds=7, rate_per_second=1000.0, burst=1000,
                  sources_max=100, registry=CollectorRegistry(), reservations_per_source_max=2)
    d.transport = Wire()
    return d


def invite(door, source, call_id):
    before = len(door.transport.sent)
    door.datagramReceived(request(call_id=call_id), source)
    from switch.processes.frontdoor import parse_message
    return parse_message(door.transport.sent[before][0]).code


def test_one_source_cannot_reserve_every_slot(door, table, clock):
    codes = [invite(door, ATTACKER, f"flood-{i}") for i in range(10)]
    assert codes == [302, 302] + [486] * 8
    assert count(door, "dropped", reason="reservations_per_source") == 8
    # The slots the attacker did not take still serve real kiosks; 503 only once all are taken.
    assert [invite(door, (f"10.1.2.{i}", 5062), f"kiosk-{i}") for i in range(3)] == [302, 302, 503]


def test_a_source_whose_kiosks_follow_their_redirects_is_never_capped(door, table, clock):
    """A site's kiosks behind one address calling quickly: each arrival at a worker (its first
    question to the core) ends its redirect's pending state, so only unfollowed ones count."""
    site = ("10.1.2.1", 5062)
    for i in range(8):
        assert invite(door, site, f"site-{i}") == 302
        door.kiosk_arrived(site[0])
        clock.advance(0.05)
        for wid in ("w1", "w2"):            # the call reaches its worker's table, and ends
            table.heartbeat(wid, [f"{SETUP_PREFIX}{i}"], clock.seconds())
            table.heartbeat(wid, [], clock.seconds())
    assert count(door, "dropped", reason="reservations_per_source") == 0
    door.kiosk_arrived("10.77.0.1")                       # an arrival from nowhere changes nothing
    assert [invite(door, ATTACKER, f"flood-{i}") for i in range(3)] == [302, 302, 486]


def test_a_reservation_whose_kiosk_never_arrives_lapses(door, table, clock):
    for n in range(4):                      # four sources redirect and never follow: all full
        assert invite(door, (f"10.9.0.{n}", 5060), f"ghost-{n}") == 302
    assert invite(door, ("10.1.2.3", 5062), "real-1") == 503
    clock.advance(RESERVATION_SECONDS + 0.01)
    assert invite(door, ("10.1.2.3", 5062), "real-2") == 302
    assert invite(door, ATTACKER, "again-1") == 302       # the cap counts only live reservations


def test_the_kiosk_s_arrival_turns_its_reservation_into_a_call_without_double_counting(clock):
    table = WorkerTable(slot_reservation_seconds=RESERVATION_SECONDS)
    table.spawned("w1", host="10.0.0.1", sip_port=5071, pid=1, now=clock.seconds())
    w = table.hello("w1", capacity=2, sip_port=5071, pid=1, now=clock.seconds())
    now = clock.seconds()
    table.pick(now), table.pick(now)                                 # two kiosks redirected
    table.heartbeat("w1", [f"{SETUP_PREFIX}a"], now)                 # the first one arrived
    assert (w.reserved(now), len(w.active_calls)) == (1, 1)
    # Authorized: its placeholder gives way to the call id: the same call, not the second kiosk.
    table.heartbeat("w1", ["6f2a3b4c-0000-4000-8000-000000000001"], now)
    assert (w.reserved(now), len(w.active_calls)) == (1, 1)
    assert table.pick(now) is None                                    # really full
    table.heartbeat("w1", [], now)                                    # ended: free at once
    assert (w.reserved(now), w.free_slots(now)) == (1, 1)


def test_retransmissions_of_a_flooded_invite_reserve_nothing_more(door, table, clock):
    for _ in range(5):
        assert invite(door, ATTACKER, "same-call") == 302
    assert sum(w.reserved(clock.seconds()) for w in table) == 1
