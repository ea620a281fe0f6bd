"""Hostile tests of the core's AMP port: a local process that is not a worker this node started
can call nothing. Hello needs the per-process key's proof over a fresh per-connection nonce; an id,
port or pid the supervisor did not start, a replayed proof, another live worker's id, or an
orphan's stale key are refused and the connection dropped. Real core responder, real PostgreSQL,
real worker processes (stand-ins) under the real supervisor."""
import dataclasses
import os
import signal
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols import amp

from switch.settings import SwitchSettings
from switch.wire import amp_auth
from switch.wire import protocol as wire
from switch.control.service import WorkerLinkFactory
from switch.processes.supervisor import Supervisor, WorkerState

from tests.security.core_edge import (  # noqa: F401  (fixtures)
    SWITCH_TESTS, eventually, reactor, rig, settle)
from rig import WORKER_ID, WORKER_SIP_PORT, authenticated_client, wait
from test_supervisor import NoCalls, _free_udp_range

MOM = "+19515550101"
CALL = "6f2a3b4c-0000-4000-8000-000000000000"


async def connect(reactor, port) -> amp.AMP:
    return await wait(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), amp.AMP()))


async def closed(eventually, client) -> bool:
    return await eventually(lambda: client.transport is None or not client.transport.connected)


def hello_args(worker_id=WORKER_ID, sip_port=WORKER_SIP_PORT, pid=None):
    return dict(worker_id=worker_id, capacity=2, sip_port=sip_port, pid=pid or os.getpid())


UNAUTHENTICATED_CALLS = [
    (wire.CheckPin, dict(kiosk="kiosk-a1", pin="100011234")),
    (wire.Authorize, dict(kiosk="kiosk-a1", inmate_id="10001", number=MOM)),
    (wire.Accept, dict(call_id=CALL)),
    (wire.Continue, dict(call_id=CALL, period=1, talk_seconds=60)),
    (wire.End, dict(call_id=CALL, talk_seconds=0, disposition="completed")),
    (wire.Block, dict(call_id=CALL, scope="facility")),
    (wire.Heartbeat, dict(worker_id=WORKER_ID, active_calls=[])),
]


@pytest.mark.parametrize("command,kw", UNAUTHENTICATED_CALLS,
                         ids=[c.__name__ for c, _ in UNAUTHENTICATED_CALLS])
async def test_a_connection_that_never_said_hello_can_call_nothing(rig, reactor, command, kw):
    intruder = await connect(reactor, rig.port.getHost().port)
    with pytest.raises(wire.NotAuthenticated):
        await wait(intruder.callRemote(command, **kw))
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT count(*) FROM pin_attempt") == 0
        assert await c.fetchval("SELECT count(*) FROM call") == 0
    intruder.transport.loseConnection()


async def test_hello_without_the_key_or_without_a_challenge_is_refused_and_dropped(
        rig, reactor, eventually):
    intruder = await connect(reactor, rig.port.getHost().port)
    with pytest.raises(wire.NotAuthenticated, match="no Challenge"):
        await wait(intruder.callRemote(wire.Hello, proof=b"x" * 32, **hello_args("w7")))
    await closed(eventually, intruder)

    intruder = await connect(reactor, rig.port.getHost().port)
    with pytest.raises(wire.NotAuthenticated, match="bad proof"):
        await wait(amp_auth.say_hello(intruder.callRemote, os.urandom(32), **hello_args("w7")))
    await closed(eventually, intruder)

    intruder = await connect(reactor, rig.port.getHost().port)     # the Hello of an old worker
    nonce = (await wait(intruder.callRemote(wire.Challenge)))["nonce"]
    with pytest.raises(wire.NotAuthenticated, match="bad proof"):
        await wait(intruder.callRemote(wire.Hello, **hello_args("w7")))
    await closed(eventually, intruder)
    assert nonce and len(nonce) == amp_auth.NONCE_BYTES


async def test_a_proof_replayed_on_another_connection_is_refused(rig, reactor, eventually):
    key = rig.registry.key_for("w7")
    seen = await connect(reactor, rig.port.getHost().port)
    nonce = (await wait(seen.callRemote(wire.Challenge)))["nonce"]
    proof = amp_auth.hello_proof(key, nonce, **hello_args("w7"))
    await wait(seen.callRemote(wire.Hello, proof=proof, **hello_args("w7")))  # the real worker
    replay = await connect(reactor, rig.port.getHost().port)
    await wait(replay.callRemote(wire.Challenge))
    with pytest.raises(wire.NotAuthenticated, match="bad proof"):
        await wait(replay.callRemote(wire.Hello, proof=proof, **hello_args("w7")))
    # ... and a second Hello on the greeted connection is refused too.
    with pytest.raises((wire.BadRequest, wire.NotAuthenticated)):
        await wait(seen.callRemote(wire.Challenge))
    seen.transport.loseConnection()


async def test_a_second_hello_claiming_a_live_worker_s_id_is_refused(rig, reactor, eventually):
    # rig.client is worker w1, alive. Even with w1's key, another process (pid) is refused.
    intruder = await connect(reactor, rig.port.getHost().port)
    with pytest.raises(wire.NotAuthenticated, match="another live connection"):
        await wait(amp_auth.say_hello(intruder.callRemote, rig.registry.key_for(WORKER_ID),
                                      **hello_args(pid=os.getpid() + 1)))
    await closed(eventually, intruder)
    assert (await rig.call(wire.Heartbeat, worker_id=WORKER_ID, active_calls=[])) == {
        "unknown_calls": []}                                 # the real w1 is undisturbed


async def test_a_worker_cannot_heartbeat_or_authorize_as_another_worker(rig, reactor):
    with pytest.raises(wire.BadRequest, match="not 'w2'"):
        await rig.call(wire.Heartbeat, worker_id="w2", active_calls=[])
    a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=MOM,
                       worker_id="w2")
    assert a["allow"], a
    async with rig.pool.acquire() as c:
        assert await c.fetchval("SELECT worker_id FROM call WHERE id = $1::uuid",
                                a["call_id"]) == WORKER_ID
    await rig.call(wire.End, call_id=a["call_id"], talk_seconds=0, disposition="abandoned")


# -- against the supervisor: only the processes it started ----------------------------------

@pytest.fixture
async def supervised(reactor, settle):
    """Two stand-in workers under the real supervisor, behind the core's real AMP responder."""
    factory = WorkerLinkFactory(NoCalls(), None)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    settings = dataclasses.replace(
        SwitchSettings(), workers=2, sip_host="127.0.0.1", core_amp_port=listening.getHost().port,
        worker_sip_port_base=_free_udp_range(2), rtp_port_base=40_000, rtp_ports_per_worker=8,
        frontdoor_port=1, worker_silence_seconds=5.0, worker_hello_seconds_max=10.0,
        worker_stop_seconds=2.0, restart_backoff_seconds_min=0.05,
        restart_backoff_seconds_max=0.2)
    sup = Supervisor(reactor, settings, command=[sys.executable,
                                                 str(SWITCH_TESTS / "standin_worker.py")],
                     registry=CollectorRegistry())
    factory.registry = sup
    sup.start()
    sup.port = listening.getHost().port
    yield sup
    await settle(sup.stop(), timeout=15)
    await settle(listening.stopListening())


def ready(sup):
    return len(sup.table) == 2 and all(w.state is WorkerState.READY for w in sup.table)


async def test_the_supervisor_s_workers_prove_keys_that_no_one_else_has(
        supervised, reactor, eventually):
    sup = supervised
    await eventually(lambda: ready(sup), timeout=20)
    pids = {w.worker_id: w.pid for w in sup.table}
    w1 = sup.table["w1"]
    for worker_id, sip_port in (("w1", w1.sip_port), ("w9", 5999)):
        intruder = await connect(reactor, sup.port)
        with pytest.raises(wire.NotAuthenticated):
            await wait(amp_auth.say_hello(intruder.callRemote, os.urandom(32),
                                          **hello_args(worker_id, sip_port)))
        await closed(eventually, intruder)
    assert {w.worker_id: w.pid for w in sup.table} == pids and ready(sup)
    # The key travels in the environment, never on the command line.
    cmdline = Path(f"/proc/{pids['w1']}/cmdline").read_bytes()
    environ = Path(f"/proc/{pids['w1']}/environ").read_bytes()
    assert amp_auth.KEY_ENV.encode() in environ
    key_hex = environ.split(amp_auth.KEY_ENV.encode() + b"=")[1].split(b"\0")[0]
    assert key_hex not in cmdline and amp_auth.KEY_ENV.encode() not in cmdline


async def test_an_orphan_s_key_dies_with_its_process(supervised, reactor, eventually):
    sup = supervised
    await eventually(lambda: ready(sup), timeout=20)
    old = sup.table["w1"]
    old_pid, sip_port = old.pid, old.sip_port
    environ = Path(f"/proc/{old_pid}/environ").read_bytes()
    old_key = bytes.fromhex(environ.split(amp_auth.KEY_ENV.encode() + b"=")[1]
                            .split(b"\0")[0].decode())
    os.kill(old_pid, signal.SIGKILL)
    await eventually(lambda: ready(sup) and sup.table["w1"].pid != old_pid, timeout=20)
    # A process holding the old key (an orphan of the earlier spawn) cannot come back as w1,
    # whatever pid it claims.
    for pid in (old_pid, sup.table["w1"].pid):
        intruder = await connect(reactor, sup.port)
        with pytest.raises(wire.NotAuthenticated):
            await wait(amp_auth.say_hello(intruder.callRemote, old_key,
                                          **hello_args("w1", sip_port, pid)))
        await closed(eventually, intruder)
    assert ready(sup)


def test_a_proof_binds_every_hello_argument():
    key, nonce = os.urandom(32), os.urandom(32)
    hello = hello_args("w1", 5070, 4242)
    proof = amp_auth.hello_proof(key, nonce, **hello)
    assert amp_auth.proof_ok(key, nonce, proof, **hello)
    for change in (dict(worker_id="w2"), dict(capacity=3), dict(sip_port=5071), dict(pid=4243)):
        assert not amp_auth.proof_ok(key, nonce, proof, **{**hello, **change})
    assert not amp_auth.proof_ok(key, os.urandom(32), proof, **hello)
    assert not amp_auth.proof_ok(os.urandom(32), nonce, proof, **hello)
    assert not amp_auth.proof_ok(key, nonce, None, **hello)


def test_the_node_secret_file_is_private_and_refused_when_others_can_read_it(tmp_path):
    path = tmp_path / amp_auth.SECRET_FILE
    secret = amp_auth.node_secret(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and amp_auth.node_secret(path) == secret
    path.chmod(0o644)
    with pytest.raises(amp_auth.SecretFileError, match="readable by group or others"):
        amp_auth.node_secret(path)
    path.chmod(0o600)
    path.write_text("zz\n")
    with pytest.raises(amp_auth.SecretFileError, match="not a hex secret"):
        amp_auth.node_secret(path)


def test_the_worker_s_key_is_taken_out_of_its_environment():
    env = {amp_auth.KEY_ENV: "ab" * 32, "OTHER": "1"}
    assert amp_auth.key_from_environ(env) == bytes.fromhex("ab" * 32)
    assert amp_auth.KEY_ENV not in env
    assert amp_auth.key_from_environ({amp_auth.KEY_ENV: "zz"}) is None
    assert amp_auth.key_from_environ({amp_auth.KEY_ENV: "ab"}) is None


async def test_a_connection_that_says_nothing_is_dropped(rig, reactor, eventually, monkeypatch):
    import switch.control.service
    monkeypatch.setattr(switch.control.service, "HELLO_DEADLINE_SECONDS", 0.3)
    idle = await connect(reactor, rig.port.getHost().port)
    await closed(eventually, idle)
    assert (await rig.call(wire.Heartbeat, worker_id=WORKER_ID, active_calls=[])) == {
        "unknown_calls": []}                     # the authenticated worker stays connected
