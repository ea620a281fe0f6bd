"""A call's RTP port cannot be predicted from the last one: each leg binds a random free pair of
the worker's range (pjsua alone draws once, then counts up by two), and never a port outside it.
Pure rules of the draw first, then real calls to a real worker."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from switch.worker.rtp_ports import pick_pair
from tests.security.worker_rig import WAIT, eventually, peers, reactor, start_worker  # noqa: F401
from tests.security.rawsip import sdp_audio_port, status
from tests.switch.fakecore import Script

NUMBER = "+15552345678"
CALLS = 12


@given(lo=st.integers(1024, 60000).map(lambda p: p - p % 2),
       pairs=st.integers(1, 30),
       busy=st.sets(st.integers(0, 60)),
       avoid=st.none() | st.integers(0, 60),
       seed=st.integers(0, 2**32))
def test_a_drawn_pair_is_free_even_and_inside_the_range_and_its_window_stays_inside(
        lo, pairs, busy, avoid, seed):
    hi = lo + 2 * pairs - 1                      # inclusive, as the supervisor plans ranges
    busy_ports = {lo + b for b in busy}
    window = pick_pair(lo, hi, lambda p: p not in busy_ports,
                       avoid=None if avoid is None else lo + avoid, rng=random.Random(seed))
    free_pairs = [p for p in range(lo, hi, 2) if p not in busy_ports and p + 1 not in busy_ports]
    if not free_pairs:
        assert window is None
        return
    assert window.port in free_pairs
    assert window.port + window.port_range == hi          # pjsua binds up to port + range
    if avoid is not None and lo + avoid in free_pairs and len(free_pairs) > 1:
        assert window.port != lo + avoid                  # the current start only as last resort


def test_every_free_pair_can_be_drawn():
    drawn = {pick_pair(40000, 40019, lambda p: True, rng=random.Random(i)).port
             for i in range(400)}
    assert drawn == set(range(40000, 40020, 2))


@pytest.mark.timeout(180)
async def test_successive_calls_get_unpredictable_ports_inside_the_worker_s_range(
        start_worker, peers, eventually):
    core, worker = await start_worker(Script(trunks=[]))
    kiosk = await peers()
    target = ("127.0.0.1", worker.sip_port)
    ports = []
    for _ in range(CALLS):               # one call at a time
        dialog = kiosk.invite(target, NUMBER)
        answer = await kiosk.final_response(dialog, timeout=WAIT)
        assert status(answer) == 200, answer
        kiosk.ack(dialog, answer, target)
        ports.append(sdp_audio_port(answer))
        kiosk.in_dialog(dialog, "BYE", target)
        await kiosk.final_response(dialog, "BYE", timeout=WAIT)
    lo, hi = worker.rtp
    assert all(lo <= p < hi and p % 2 == 0 for p in ports), (ports, worker.rtp)
    # Counting up by two (pjsua's own way) would make every step +2; a uniform draw over the
    # range's pairs does so about one step in ten.
    steps_of_two = sum(1 for a, b in zip(ports, ports[1:]) if b == a + 2)
    assert steps_of_two <= (CALLS - 1) // 2, ports
    assert len(set(ports)) >= 4, ports
    assert worker.proc.poll() is None
