"""Hostile tests of PIN guessing: spraying one PIN over many inmates is throttled per source and per
kiosk; attempts while locked never extend the lock; parallel guesses cannot outrun the count;
an operator unlocks with an audited command; Authorize needs the PIN session of this very call.
Real PostgreSQL, the core's real AMP responder, an injected clock."""
import asyncio
import dataclasses
import os
import subprocess
import sys

import pytest

from switch.wire import protocol as wire
from switch.provisioning.directory import NotFound, add_inmate, unlock_pin
from switch.rules.pin import Lockout, Throttle
from switch.control.pin_verify import PinVerifier
from switch.control.setup_gate import SetupGate

from tests.security.core_edge import (  # noqa: F401  (reactor, rig: fixtures)
    audit, eventually, metric, pin_outcomes, reactor, rig, set_kiosk)
from rig import WORKER_ID, authenticated_client, wait

MOM = "+19515550101"
SPRAYER = "10.66.6.6"


def limits(rig, **kw):
    rig.core.s = dataclasses.replace(rig.core.s, **kw)
    rig.core.throttle = Throttle(rig.core.s.pin_kiosk_failures_max,
                                 rig.core.s.pin_source_failures_max,
                                 rig.core.s.pin_throttle_window_seconds)


async def pin(rig, keyed, kiosk="kiosk-a1", source_ip=SPRAYER):
    return await rig.call(wire.CheckPin, kiosk=kiosk, pin=keyed, source_ip=source_ip)


async def enrol(rig, n):
    async with rig.pool.acquire() as c:
        for i in range(n):
            await add_inmate(c, f"2{i:04d}", f"Inmate {i}", "riverside", "1111")


async def test_one_pin_sprayed_over_many_inmates_from_one_source_is_throttled_unchecked(rig):
    limits(rig, pin_source_failures_max=5, pin_kiosk_failures_max=1000)
    await enrol(rig, 12)
    answers = [await pin(rig, f"2{i:04d}" + "0000") for i in range(12)]
    assert [a["attempts_left"] for a in answers[:5]] == [2] * 5        # five real guesses
    assert all((a["ok"], a["locked"], a["attempts_left"]) == (False, False, 0)
               for a in answers[5:])
    # While throttled even the right PIN is not checked: the sprayer learns nothing.
    assert not (await pin(rig, "20011" + "1111"))["ok"]
    assert await pin_outcomes(rig) == ["wrong_secret"] * 5 + ["throttled"] * 8
    [row] = await audit(rig, "pin_throttled")            # audited once per window, counted each
    assert (str(row["source_ip"]), row["detail"]) == (
        SPRAYER, '{"scope": "source", "failures_max": 5, "window_seconds": 300}')
    assert metric(rig, "ics_pin_throttled_total", {"scope": "source"}) == 8
    # Other sources are unaffected; the sprayer is served again once its window has passed.
    assert (await pin(rig, "100011234", source_ip="10.1.1.1"))["ok"]
    rig.clock.advance(301)
    assert (await pin(rig, "100011234"))["ok"]


async def test_guessing_from_many_sources_on_one_kiosk_is_throttled_per_kiosk(rig):
    limits(rig, pin_kiosk_failures_max=4, pin_source_failures_max=1000)
    for i in range(4):
        await pin(rig, "100019999" if i % 2 else "99999" + "0000", source_ip=f"10.0.0.{i + 1}")
    a = await pin(rig, "100011234", source_ip="10.0.0.99")
    assert (a["ok"], a["attempts_left"]) == (False, 0)
    assert [r["detail"] for r in await audit(rig, "pin_throttled")] == [
        '{"scope": "kiosk", "failures_max": 4, "window_seconds": 300}']
    assert (await pin(rig, "100011234", kiosk="kiosk-seg", source_ip="10.0.0.99"))["ok"]


async def test_attempts_while_locked_do_not_extend_the_lock(rig):
    limits(rig, pin_source_failures_max=1000, pin_kiosk_failures_max=1000)
    answers = [await pin(rig, "100019999") for _ in range(3)]
    assert answers[-1]["locked"]
    [lockout] = await audit(rig, "pin_locked_out")
    assert lockout["inmate_id"] == "10001"
    assert metric(rig, "ics_pin_lockouts_total") == 1
    for _ in range(30):                       # an abuser keeps trying all through the window
        rig.clock.advance(29)
        a = await pin(rig, "100019999")
        assert a["locked"]
    rig.clock.advance(900 - 30 * 29 + 1)      # 901 s after the third failure
    assert (await pin(rig, "100011234"))["ok"]
    assert (await pin_outcomes(rig)).count("wrong_secret") == 3
    assert metric(rig, "ics_pin_lockouts_total") == 1


async def test_parallel_guesses_cannot_outrun_the_lockout(rig):
    limits(rig, pin_source_failures_max=1000, pin_kiosk_failures_max=1000,
           setup_wait_seconds_max=60)
    # Ten checks at once on a busy machine: room for all of them (none shed as busy).
    rig.core.setup_gate = SetupGate(concurrent_max=10, wait_seconds_max=60)
    rig.core.pin_verifier = PinVerifier(concurrent_max=10, wait_seconds_max=60,
                                        remembered_max=0, observe=rig.core._observe)
    for i in range(10):                       # ten kiosks, ten sources: only the inmate is shared
        await set_kiosk(rig, f"kiosk-p{i}")
    answers = await asyncio.gather(*(pin(rig, "100019999", kiosk=f"kiosk-p{i}",
                                         source_ip=f"10.2.0.{i + 1}") for i in range(10)))
    outcomes = await pin_outcomes(rig)
    assert outcomes.count("wrong_secret") == 3 and outcomes.count("locked") == 7
    assert sum(a["locked"] for a in answers) == 8        # the third failure, then seven refusals


async def test_a_kiosk_s_pin_checks_do_not_wait_for_each_other_s_scrypt(rig, monkeypatch):
    """The counts are reserved under the locks, the secret verified after them: while one check
    of a kiosk is inside scrypt, the next check from the same kiosk and source completes (with
    the lock held across scrypt it would wait, and this test would time out)."""
    import threading

    from switch.rules.pin import check_secret as real
    inside, release = threading.Event(), threading.Event()

    def first_one_stalls(secret, stored):
        if not inside.is_set():
            inside.set()
            release.wait(30)
        return real(secret, stored)
    monkeypatch.setattr(rig.core.pin_verifier, "_check", first_one_stalls)
    await set_kiosk(rig, "kiosk-a1", sources=["10.1.2.0/24"])
    first = asyncio.ensure_future(pin(rig, "100011234", source_ip="10.1.2.7"))
    while not inside.is_set():                 # the first check is inside scrypt now
        await asyncio.sleep(0.01)
    try:
        second = await asyncio.wait_for(pin(rig, "100021234", source_ip="10.1.2.7"), 20)
    finally:
        release.set()
    assert (await first)["ok"]
    assert second["locked"] is False and second["attempts_left"] == 2    # 10002's PIN differs
    assert sorted(await pin_outcomes(rig)) == ["ok", "wrong_secret"]    # none left `checking`


async def test_an_operator_unlock_is_audited_and_lets_the_inmate_in(rig):
    for _ in range(3):
        await pin(rig, "100019999")
    assert (await pin(rig, "100011234"))["locked"]
    async with rig.pool.acquire() as c:
        await unlock_pin(c, "10001", "sgt.baker", rig.clock.now)
        with pytest.raises(NotFound, match="'77777'"):
            await unlock_pin(c, "77777", "sgt.baker")
    assert (await pin(rig, "100011234"))["ok"]
    [row] = await audit(rig, "pin_unlocked")
    assert (row["inmate_id"], row["actor"]) == ("10001", "sgt.baker")


async def test_ics_inmate_unlock_from_the_command_line(rig, pg_dsn):
    for _ in range(3):
        await pin(rig, "100019999")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICS_")}
    env["ICS_DATABASE_URL"] = pg_dsn
    run = lambda *a: subprocess.run([sys.executable, "-m", "ops.cli", "inmate", "unlock", *a],
                                    env=env, capture_output=True, text=True, timeout=120)
    r = await asyncio.to_thread(run, "10001", "--by", "lt.ortiz")
    assert r.returncode == 0 and "unlocked by lt.ortiz" in r.stdout, r.stderr
    r = await asyncio.to_thread(run, "31337", "--by", "lt.ortiz")
    assert r.returncode == 2 and "'31337' does not exist" in r.stderr
    assert [row["actor"] for row in await audit(rig, "pin_unlocked")] == ["lt.ortiz"]


# -- PIN sessions ------------------------------------------------------------------------------

async def authorize(rig, session, *, inmate="10001", source_ip=None, client=None):
    return await wait((client or rig.client).callRemote(
        wire.Authorize, kiosk="kiosk-a1", inmate_id=inmate, number=MOM, source_ip=source_ip,
        pin_session=session))


async def test_authorize_without_a_pin_session_is_refused_and_audited(rig):
    for session in (None, "", "forged-token", "x" * 400):
        a = await authorize(rig, session)
        assert (a["allow"], a["reason"]) == (False, "pin_invalid")
    assert [r["detail"] for r in await audit(rig, "pin_session_refused")][:2] == [
        '{"refusal": "missing", "worker_id": "w1"}', '{"refusal": "missing", "worker_id": "w1"}']
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM call") == 0


async def test_a_pin_session_is_good_once_for_its_kiosk_inmate_source_and_worker(rig):
    async def fresh(source_ip=None, inmate="10001"):
        pin = "1234" if inmate == "10001" else "4321"
        a = await rig.call(wire.CheckPin, kiosk="kiosk-a1", pin=inmate + pin, source_ip=source_ip)
        return a["pin_session"]

    s = await fresh()
    first = await authorize(rig, s)
    assert first["allow"]
    assert (await authorize(rig, s))["reason"] == "pin_invalid"            # used up
    assert (await authorize(rig, await fresh(), inmate="10002"))["reason"] == "pin_invalid"
    assert (await authorize(rig, await fresh("10.1.1.1"), source_ip="10.1.1.2"))["reason"] \
        == "pin_invalid"
    other = await authenticated_client(reactor_of(rig), rig.port.getHost().port,
                                       rig.registry.key_for("w2"), "w2", 5998)
    assert (await authorize(rig, await fresh(), client=other))["reason"] == "pin_invalid"
    s = await fresh()
    rig.clock.advance(301)
    assert (await authorize(rig, s))["reason"] == "pin_invalid"           # expired
    refusals = [r["detail"] for r in await audit(rig, "pin_session_refused")]
    assert [d.split('"')[3] for d in refusals] == ["unknown", "binding_mismatch",
                                                   "binding_mismatch", "binding_mismatch",
                                                   "expired"]
    other.transport.loseConnection()
    await rig.call(wire.End, call_id=first["call_id"], talk_seconds=0, disposition="abandoned")


def reactor_of(rig):
    return rig.port.reactor


def test_lockout_and_throttle_limits_are_pure_and_bounded():
    from datetime import datetime, timedelta, timezone
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lock = Lockout(3, 900)
    assert lock.attempts_left([now - timedelta(seconds=s) for s in (10, 20)], now) == 1
    assert lock.locked([now - timedelta(seconds=s) for s in (10, 20, 30)], now)
    assert not lock.locked([now - timedelta(seconds=s) for s in (10, 20, 901)], now)
    t = Throttle(kiosk_failures_max=3, source_failures_max=2, window_seconds=60)
    assert [t.scope(k, s) for k, s in ((0, 0), (2, 1), (3, 0), (0, 2), (5, 5))] == [
        None, None, "kiosk", "source", "kiosk"]
    with pytest.raises(ValueError):
        Throttle(0, 1, 1)


def test_pin_sessions_are_bounded_swept_and_unguessable():
    from switch.rules.pin_session import PinSessions, SessionRefusal
    s = PinSessions(ttl_seconds=10, sessions_max=3)
    tokens = [s.issue("k", f"1000{i}", "10.0.0.1", "w1", now=float(i)) for i in range(4)]
    assert len(s) == 3 and len(set(tokens)) == 4 and all(len(t) >= 32 for t in tokens)
    assert s.redeem(tokens[0], "k", "10000", "10.0.0.1", "w1", 4.0) == SessionRefusal.UNKNOWN
    assert s.redeem(tokens[1], "k", "10001", "10.0.0.1", "w1", 4.0) is None
    assert s.redeem(tokens[2], "k", "10002", "10.0.0.1", "w1", 12.5) == SessionRefusal.EXPIRED
    s.issue("k", "1", None, None, now=100.0)              # sweeps what expired
    assert len(s) == 1
    with pytest.raises(ValueError):
        PinSessions(ttl_seconds=0, sessions_max=1)


async def test_an_overloaded_core_refuses_a_pin_check_busy_fast_and_writes_nothing(rig,
                                                                                   eventually):
    # The cause of bench/switch.py (c) failing at 20 calls/s: PIN checks (scrypt) queued behind
    # each other past the worker's 3 s deadline. Now a check that cannot start within
    # pin_check_wait_seconds_max is refused with CORE_BUSY (the worker answers the kiosk 503).
    hold = asyncio.Event()

    def stuck_kdf(secret, stored):              # a KDF slot that stays busy
        asyncio.run_coroutine_threadsafe(hold.wait(), loop).result(10)
        return True
    loop = asyncio.get_running_loop()
    rig.core.pin_verifier = PinVerifier(concurrent_max=1, wait_seconds_max=0.05,
                                        remembered_max=0, check=stuck_kdf,
                                        observe=rig.core._observe)
    first = asyncio.ensure_future(pin(rig, "100011234", source_ip="10.1.1.1"))
    await eventually(lambda: rig.core.pin_verifier._slots.locked())
    with pytest.raises(wire.CoreBusy, match="PIN checks busy"):
        await pin(rig, "100011234", source_ip="10.1.1.2")
    assert metric(rig, "ics_pin_verify_total", {"how": "busy"}) == 1
    assert metric(rig, "ics_pin_attempts_total", {"outcome": "busy"}) == 1
    hold.set()
    assert (await first)["ok"]
    assert await pin_outcomes(rig) == ["ok"]    # the shed check left no row and no guess


async def test_a_core_with_no_room_for_another_call_set_up_refuses_it_busy_before_any_work(
        rig, eventually):
    # Congestion collapse, the cause of bench/switch.py (c) at 20 calls/s: set-ups queued inside
    # the core past the worker's deadline, and the core went on working for callers already gone.
    # Now at most setups_concurrent_max first requests run at once; the next is refused at once.
    hold = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stuck_kdf(secret, stored):
        asyncio.run_coroutine_threadsafe(hold.wait(), loop).result(10)
        return True
    rig.core.setup_gate = SetupGate(concurrent_max=1, wait_seconds_max=0.05,
                                    observe=rig.core._observe)
    rig.core.pin_verifier = PinVerifier(concurrent_max=4, wait_seconds_max=10, remembered_max=0,
                                        check=stuck_kdf, observe=rig.core._observe)
    first = asyncio.ensure_future(pin(rig, "100011234", source_ip="10.1.1.1"))
    await eventually(lambda: rig.core.setup_gate.full)
    with pytest.raises(wire.CoreBusy, match="call set-ups busy"):
        await pin(rig, "100021234", source_ip="10.1.1.2")
    with pytest.raises(wire.CoreBusy, match="call set-ups busy"):
        await rig.call(wire.AdmitKiosk, kiosk="kiosk-a1", source_ip="10.1.1.3")
    assert metric(rig, "ics_call_setups_shed_total", {"command": "check_pin"}) == 1
    assert metric(rig, "ics_call_setups_shed_total", {"command": "admit_kiosk"}) == 1
    hold.set()
    assert (await first)["ok"]
    assert await pin_outcomes(rig) == ["ok"]    # the shed ones left no trace but the metric
    assert (await rig.call(wire.AdmitKiosk, kiosk="kiosk-a1", source_ip="10.1.1.3"))["admitted"]


async def test_a_call_ended_before_dialling_is_counted_once_even_when_its_report_is_resent(rig):
    sent = dict(kiosk="kiosk-a1", reason="core_busy", detail="call set-ups busy",
                source_ip="10.1.1.1", setup_id="c0ffee")
    assert (await rig.call(wire.SetupFailed, **sent))["counted"]
    assert not (await rig.call(wire.SetupFailed, **sent))["counted"]
    assert (await rig.call(wire.SetupFailed, **dict(sent, setup_id="beef")))["counted"]
    assert metric(rig, "ics_call_setup_failures_total", {"reason": "core_busy"}) == 2
    with pytest.raises(wire.BadRequest, match="unknown setup failure"):
        await rig.call(wire.SetupFailed, kiosk="kiosk-a1", reason="gremlins")
