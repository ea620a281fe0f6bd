"""The simulated worker keeps a grant the way switch.worker does (pure: no core, no database).

Each test drives one SimCall on a tiny scheduler and answers its asks by hand, so what is checked
is the worker's own behaviour: when it asks for more time, what talk it reports, and that it
never talks past its grant when the core is silent.
"""
from __future__ import annotations

import heapq
import random

from switch.wire import protocol as wire

from .worker import CallPlan, SimCall, SimWorker, WorkerSettings


class _Scheduler:
    def __init__(self):
        self.now, self._heap, self._seq = 0, [], 0
        self.rng = random.Random(0)
        self.sent = []                     # (ms, command name, kwargs, ask)

    def at(self, ms, fn, *args):
        self._seq += 1
        t = _T(max(ms, self.now), self._seq, fn, args)
        heapq.heappush(self._heap, t)
        return t

    def after(self, delay, fn, *args):
        return self.at(self.now + delay, fn, *args)

    def soon(self, fn, *args):
        return self.at(self.now, fn, *args)

    def send(self, worker, ask):
        self.sent.append((self.now, ask.command.__name__, dict(ask.kw), ask))

    def reconnect(self, worker):
        pass

    def run_until(self, ms):
        while self._heap and self._heap[0].ms <= ms:
            t = heapq.heappop(self._heap)
            if not t.cancelled:
                self.now = t.ms
                t.fn(*t.args)
        self.now = ms


class _T:
    def __init__(self, ms, seq, fn, args):
        self.ms, self.seq, self.fn, self.args, self.cancelled = ms, seq, fn, args, False

    def cancel(self):
        self.cancelled = True

    def __lt__(self, other):
        return (self.ms, self.seq) < (other.ms, other.seq)


def _talking_call(hangup_ms=10_000_000, grant=(60, False)):
    sim = _Scheduler()
    w = SimWorker(sim, "w1", WorkerSettings())
    w.greeted(proto=object())
    call = SimCall(w, CallPlan(0, 0, "30001", "+19515550301", 1_000, "accept", hangup_ms))
    call.start()
    _answer(w, sim, "CheckPin", {"ok": True, "locked": False, "attempts_left": 3,
                                 "inmate_id": "30001"})
    _answer(w, sim, "Authorize", {"allow": True, "call_id": "c1"})
    sim.run_until(1_000)
    _answer(w, sim, "Accept", {"grant_until": grant[0], "last": grant[1]})
    return sim, w, call


def _answer(w, sim, command, answer, error=None):
    ms, name, kw, ask = [s for s in sim.sent if s[1] == command][-1]
    w.answered(ask.id, ask.gen, answer, error)


def test_the_pin_comes_first_then_authorize_for_the_inmate_it_named():
    sim, w, call = _talking_call()
    (_, first, pin, _), (_, second, auth, _) = [s for s in sim.sent if s[1] != "Heartbeat"][:2]
    assert (first, pin["pin"], pin["source"]) == ("CheckPin", "300012468", "sip_header")
    assert (second, auth["inmate_id"], auth["number"]) == ("Authorize", "30001", "+19515550301")


def test_continue_goes_five_seconds_before_the_grant_ends_with_the_talk_so_far():
    sim, w, call = _talking_call()
    sim.run_until(1_000 + 54_999)
    assert not [s for s in sim.sent if s[1] == "Continue"]
    sim.run_until(1_000 + 55_000)
    [(ms, _, kw, _)] = [s for s in sim.sent if s[1] == "Continue"]
    assert (ms, kw["period"], kw["talk_seconds"]) == (56_000, 1, 55)


def test_a_hang_up_inside_the_continue_lead_reports_the_seconds_talked_not_the_period():
    sim, w, call = _talking_call(hangup_ms=57_300)
    sim.run_until(1_000 + 55_000)
    _answer(w, sim, "Continue", {"grant_until": 120, "last": False})
    sim.run_until(1_000 + 58_000)
    [(_, _, kw, _)] = [s for s in sim.sent if s[1] == "End"]
    assert (kw["talk_seconds"], kw["disposition"]) == (58, "completed")


def test_without_an_answer_the_worker_ends_the_call_at_its_grant():
    sim, w, call = _talking_call()
    sim.run_until(1_000 + 120_000)
    (ms, _, kw, _), *resent = [s for s in sim.sent if s[1] == "End"]    # unanswered: resent
    assert ms == 61_000
    assert (kw["talk_seconds"], kw["disposition"]) == (60, "core_unreachable")
    assert call.record.talk == 60


def test_a_failed_continue_is_retried_until_too_little_grant_is_left():
    sim, w, call = _talking_call()
    sim.run_until(1_000 + 55_000)
    _answer(w, sim, "Continue", None, wire.CoreUnavailable("db"))
    sim.run_until(1_000 + 55_250)
    assert len([s for s in sim.sent if s[1] == "Continue"]) == 2


def test_the_last_grant_ends_the_call_as_grant_exhausted():
    sim, w, call = _talking_call(grant=(45, True))
    sim.run_until(1_000 + 100_000)
    assert not [s for s in sim.sent if s[1] == "Continue"]
    (ms, _, kw, _), *resent = [s for s in sim.sent if s[1] == "End"]
    assert (ms, kw["talk_seconds"], kw["disposition"]) == (46_000, 45, "grant_exhausted")
    assert all(r[2] == kw for r in resent)


def test_an_end_refused_by_a_core_error_is_resent_until_answered():
    sim, w, call = _talking_call(hangup_ms=30_000)
    sim.run_until(31_000)
    _answer(w, sim, "End", None, wire.CoreUnavailable("db"))
    sim.run_until(31_000 + 999)
    assert len([s for s in sim.sent if s[1] == "End"]) == 1
    sim.run_until(32_000)
    assert len([s for s in sim.sent if s[1] == "End"]) == 2
    _answer(w, sim, "End", {"billed_seconds": 30, "charged_micros": 1, "cdr_id": "c1"})
    assert call.record.ended and not w.busy
