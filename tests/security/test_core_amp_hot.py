"""Accept and Continue take the core's short way (switch.control.service.WorkerLink.HOT): decoded by
hand, answered by the request's task. Hostile and ordinary requests over a real AMP link, against
the real core and PostgreSQL, get the very answer boxes (and the same closed or open connection)
the generic AMP responders give, which are what the core answered before the short way existed:
missing and extra arguments, numbers that are not integers, negative and huge integers, unknown,
garbage and undecodable call ids, each state of a call, a connection that never said Hello, and
every kind of error the core may raise."""
from __future__ import annotations

import os

import pytest
import structlog
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols import amp

from switch.control import core as core_mod
from switch.control import service
from switch.provisioning.directory import add_phone_account, fund_phone_account
from switch.control.service import WorkerLink
from switch.wire import amp_auth
from switch.wire import protocol as wire

from tests.security.core_edge import metric, reactor, rig  # noqa: F401  (fixtures)
from rig import RATE, TAX_PPM, WORKER_SIP_PORT, wait

MOM = "+19515550101"
FRIEND = "+12125550123"       # approved, no prepaid account until a test gives it one
NOBODY = b"6f2a3b4c-0000-4000-8000-000000000000"     # a well-formed id no call has


def with_tax(call_micros):
    return call_micros + call_micros * TAX_PPM // 1_000_000


class Recorder(amp.AMP):
    """A worker's end that keeps every box it receives, and the bytes of each."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict] = []
        self.raw = b""

    def dataReceived(self, data):
        self.raw += data
        super().dataReceived(data)

    def ampBoxReceived(self, box):
        self.received.append(dict(box))
        super().ampBoxReceived(box)

    def raw_boxes(self) -> list[bytes]:
        """The bytes received, cut into boxes (length-prefixed keys and values, then 0)."""
        out, at, start = [], 0, 0
        while at < len(self.raw):
            key = int.from_bytes(self.raw[at:at + 2])
            at += 2
            if key == 0:
                out.append(self.raw[start:at])
                start = at
                continue
            at += key
            at += 2 + int.from_bytes(self.raw[at:at + 2])
        return out


class Worker:
    """Fresh connections, each as a worker id of its own (`hello=False`: one that never said
    Hello)."""

    def __init__(self, rig, reactor, prefix: str) -> None:
        self.rig, self.reactor, self.prefix, self.n = rig, reactor, prefix, 0

    async def connect(self, hello: bool = True) -> Recorder:
        client = await wait(connectProtocol(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.rig.port.getHost().port),
            Recorder()))
        if hello:
            self.n += 1
            worker_id = f"{self.prefix}{self.n}"
            await wait(amp_auth.say_hello(client.callRemote, self.rig.registry.key_for(worker_id),
                                          worker_id=worker_id, capacity=2,
                                          sip_port=WORKER_SIP_PORT, pid=os.getpid()))
        return client

    async def exchange(self, command: bytes, box: dict, *, hello: bool = True,
                       names: dict[bytes, bytes] = {}) -> tuple:
        """The answer box to one request (call ids named as `names` says, so that runs on
        different calls compare) and whether the connection still answers afterwards."""
        client = await self.connect(hello)
        try:
            await wait(client.callRemoteString(command, **box))
        except (amp.RemoteAmpError, amp.UnknownRemoteError):
            pass
        answer, raw = client.received[-1], client.raw_boxes()[len(client.received) - 1]
        try:
            await wait(client.callRemote(wire.Heartbeat, worker_id="x", active_calls=[]),
                       timeout=5)
            open_after = True
        except (amp.RemoteAmpError, wire.WireError):
            open_after = True           # answered, if with an error: still open
        except Exception:               # noqa: BLE001 - the connection was closed
            open_after = False
        if client.transport is not None:
            client.transport.loseConnection()
        assert amp.AmpBox(answer).serialize() == raw
        for real, name in names.items():
            answer = {k: v.replace(real, name) for k, v in answer.items()}
            raw = raw.replace(real, name)
        return answer, open_after, raw


async def calls(rig, prefix: str) -> dict[str, bytes]:
    """An authorized call, an accepted one, an ended one and an accepted one whose money
    lasts two minutes (its next grant is the last), as call ids on the wire."""
    async with rig.pool.acquire() as c:
        await fund_phone_account(c, FRIEND, 2 * with_tax(RATE), f"two-minutes-{prefix}")
    a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=FRIEND)
    assert a["allow"] and a["max_seconds"] == 120, a
    await rig.call(wire.Accept, call_id=a["call_id"])
    out = {"underfunded": a["call_id"].encode()}
    for state in ("authorized", "accepted", "ended"):
        a = await rig.call(wire.Authorize, kiosk="kiosk-a1", inmate_id="10001", number=MOM)
        assert a["allow"], a
        if state != "authorized":
            await rig.call(wire.Accept, call_id=a["call_id"])
        if state == "ended":
            await rig.call(wire.End, call_id=a["call_id"], talk_seconds=30,
                           disposition="completed")
        out[state] = a["call_id"].encode()
    return out


def requests(c: dict[str, bytes]) -> list[tuple[str, bytes, dict]]:
    """(name, command, raw arguments), in an order whose state changes are the same each run."""
    talking = c["accepted"]
    return [
        ("continue: missing period", b"Continue", dict(call_id=talking, talk_seconds=b"60")),
        ("continue: missing call id", b"Continue", dict(period=b"1", talk_seconds=b"60")),
        ("continue: missing talk", b"Continue", dict(call_id=talking, period=b"1")),
        ("continue: period not a number", b"Continue",
         dict(call_id=talking, period=b"one", talk_seconds=b"60")),
        ("continue: period a decimal", b"Continue",
         dict(call_id=talking, period=b"1.5", talk_seconds=b"60")),
        ("continue: period empty", b"Continue",
         dict(call_id=talking, period=b"", talk_seconds=b"60")),
        ("continue: talk of 5000 digits", b"Continue",
         dict(call_id=talking, period=b"1", talk_seconds=b"9" * 5000)),
        ("continue: call id not UTF-8", b"Continue",
         dict(call_id=b"\xff\xfe", period=b"1", talk_seconds=b"60")),
        ("continue: negative period", b"Continue",
         dict(call_id=talking, period=b"-1", talk_seconds=b"60")),
        ("continue: period 0", b"Continue", dict(call_id=talking, period=b"0", talk_seconds=b"0")),
        ("continue: negative talk", b"Continue",
         dict(call_id=talking, period=b"1", talk_seconds=b"-5")),
        ("continue: huge period", b"Continue",
         dict(call_id=talking, period=b"9" * 30, talk_seconds=b"60")),
        ("continue: period past the call's", b"Continue",
         dict(call_id=talking, period=b"3", talk_seconds=b"60")),
        ("continue: unknown call", b"Continue", dict(call_id=NOBODY, period=b"1",
                                                     talk_seconds=b"60")),
        ("continue: garbage call id", b"Continue",
         dict(call_id=b"not-a-uuid", period=b"1", talk_seconds=b"60")),
        ("continue: empty call id", b"Continue",
         dict(call_id=b"", period=b"1", talk_seconds=b"60")),
        ("continue: never accepted", b"Continue",
         dict(call_id=c["authorized"], period=b"1", talk_seconds=b"60")),
        ("continue: ended", b"Continue", dict(call_id=c["ended"], period=b"1",
                                              talk_seconds=b"30")),
        ("continue: spaces and underscores", b"Continue",
         dict(call_id=talking, period=b" 1 ", talk_seconds=b"6_0", bogus=b"x")),
        ("continue: resent", b"Continue", dict(call_id=talking, period=b"1",
                                               talk_seconds=b"60")),
        ("continue: huge talk", b"Continue",
         dict(call_id=talking, period=b"2", talk_seconds=b"9" * 30)),
        ("continue: to the last grant", b"Continue",
         dict(call_id=c["underfunded"], period=b"1", talk_seconds=b"60")),
        ("continue: resent, last", b"Continue",
         dict(call_id=c["underfunded"], period=b"1", talk_seconds=b"60")),
        ("accept: missing call id", b"Accept", dict()),
        ("accept: garbage call id", b"Accept", dict(call_id=b"zz")),
        ("accept: call id not UTF-8", b"Accept", dict(call_id=b"\xc3")),
        ("accept: unknown call", b"Accept", dict(call_id=NOBODY)),
        ("accept: ended", b"Accept", dict(call_id=c["ended"])),
        ("accept", b"Accept", dict(call_id=c["authorized"], extra=b"1")),
        ("accept: resent", b"Accept", dict(call_id=c["authorized"])),
        ("accept: resent while talking", b"Accept", dict(call_id=talking)),
    ]


async def outcomes(rig, reactor, prefix: str) -> list[tuple]:
    c = await calls(rig, prefix)
    names = {real: f"<{state}>".encode() for state, real in c.items()}
    worker = Worker(rig, reactor, prefix)
    out = [(name, await worker.exchange(command, box, names=names))
           for name, command, box in requests(c)]
    out += [(f"before Hello: {name}", await worker.exchange(command, box, hello=False,
                                                           names=names))
            for name, command, box in requests(c)
            if name in ("continue: missing period", "continue: resent", "accept")]
    return out


async def test_every_request_is_answered_as_the_generic_responders_answer_it(
        rig, reactor, monkeypatch):
    async with rig.pool.acquire() as c:
        await add_phone_account(c, FRIEND, "Sam Roe")
    short_way = []
    answer_hot = WorkerLink._answer_hot

    def spy(self, command, ask, run, call_id):
        short_way.append(self.worker_id)
        return answer_hot(self, command, ask, run, call_id)
    monkeypatch.setattr(WorkerLink, "_answer_hot", spy)
    hot = await outcomes(rig, reactor, "h")
    taken = len(short_way)
    monkeypatch.setattr(WorkerLink, "HOT", {})
    generic = await outcomes(rig, reactor, "g")
    assert len(short_way) == taken
    # Well-formed requests of a worker that said Hello went the short way; nothing else did.
    assert len([w for w in short_way if w.startswith("h")]) == 21
    assert dict(hot) == dict(generic)
    assert [name for name, _ in hot] == [name for name, _ in generic]

    got = {name: (a.get(b"_error_code"), open_after) for name, (a, open_after, _) in hot}
    assert got["continue: missing period"] == (b"UNKNOWN", False)
    assert got["continue: period not a number"] == (b"UNKNOWN", False)
    assert got["continue: call id not UTF-8"] == (b"UNKNOWN", False)
    assert got["continue: negative period"] == (b"BAD_REQUEST", True)
    assert got["continue: negative talk"] == (b"BAD_REQUEST", True)
    assert got["continue: unknown call"] == (b"UNKNOWN_CALL", True)
    assert got["continue: garbage call id"] == (b"UNKNOWN_CALL", True)
    assert got["continue: never accepted"] == (b"BAD_REQUEST", True)
    assert got["continue: ended"] == (b"CALL_ALREADY_ENDED", True)
    assert got["accept: ended"] == (b"CALL_ALREADY_ENDED", True)
    assert got["before Hello: continue: resent"] == (b"NOT_AUTHENTICATED", True)
    assert got["before Hello: accept"] == (b"NOT_AUTHENTICATED", True)
    assert got["before Hello: continue: missing period"] == (b"UNKNOWN", False)   # decoded first
    ok = dict(hot)["continue: spaces and underscores"][0]
    assert ok == {b"_answer": b"3", b"grant_until": b"120", b"last": b"False"}
    assert dict(hot)["accept"][0] == {b"_answer": b"3", b"grant_until": b"60",
                                      b"last": b"False"}
    assert dict(hot)["continue: to the last grant"][0] == {
        b"_answer": b"3", b"grant_until": b"120", b"last": b"True", b"warn_at": b"60"}
    assert dict(hot)["continue: resent, last"] == dict(hot)["continue: to the last grant"]


class Boom(Exception):
    pass


@pytest.mark.parametrize("raised", [
    OSError("connection refused"),                  # the database is not there
    wire.CoreUnavailable("ledger anomaly"),
    wire.CoreBusy("later"),                         # declared for neither command
    wire.InsufficientFunds("declared for Accept only"),
    wire.KioskUnknown("declared for neither"),
    wire.UnknownCall("x\u00e9\ud800"),               # a message UTF-8 cannot carry
    Boom("a bug"),
], ids=lambda e: type(e).__name__)
async def test_every_error_the_core_raises_is_answered_as_before(rig, reactor, monkeypatch,
                                                                 raised):
    async def fail(*args, **kw):
        raise raised
    monkeypatch.setattr(rig.core, "continue_", fail)
    monkeypatch.setattr(rig.core, "accept", fail)
    monkeypatch.setattr(service.amp._log, "failure", lambda *a, **k: None)
    box = dict(call_id=NOBODY, period=b"1", talk_seconds=b"60")
    hot = [await Worker(rig, reactor, "h").exchange(b"Continue", box),
           await Worker(rig, reactor, "i").exchange(b"Accept", dict(call_id=NOBODY))]
    monkeypatch.setattr(WorkerLink, "HOT", {})
    generic = [await Worker(rig, reactor, "g").exchange(b"Continue", box),
               await Worker(rig, reactor, "j").exchange(b"Accept", dict(call_id=NOBODY))]
    assert hot == generic
    codes = [(a[b"_error_code"], open_after) for a, open_after, _ in hot]
    expected = {OSError: [(b"CORE_UNAVAILABLE", True)] * 2,
                wire.CoreUnavailable: [(b"CORE_UNAVAILABLE", True)] * 2,
                wire.CoreBusy: [(b"UNKNOWN", False)] * 2,
                wire.InsufficientFunds: [(b"UNKNOWN", False), (b"INSUFFICIENT_FUNDS", True)],
                wire.KioskUnknown: [(b"UNKNOWN", False)] * 2,
                wire.UnknownCall: [(b"UNKNOWN_CALL", True)] * 2,
                Boom: [(b"UNKNOWN", False)] * 2}[type(raised)]
    assert codes == expected


async def test_the_short_way_times_each_request_and_logs_with_its_worker_and_call(
        rig, reactor, monkeypatch):
    """The request_seconds metric counts every Accept and Continue, answered or refused, and the
    core's log lines carry the worker and the call, as the generic way's."""
    rig.port.factory.metrics = rig.metrics
    seen = []

    async def grant(call_id, *args):
        seen.append(structlog.contextvars.get_contextvars())
        if call_id == "refused":
            raise wire.UnknownCall(call_id)
        return core_mod.GrantAnswer(60, False, None)
    monkeypatch.setattr(rig.core, "continue_", grant)
    monkeypatch.setattr(rig.core, "accept", grant)

    def count(command):
        return metric(rig, "ics_core_request_seconds_count", {"command": command})

    for way in ("h", "g"):
        if way == "g":
            monkeypatch.setattr(WorkerLink, "HOT", {})
        before = count("continue"), count("accept")
        worker = Worker(rig, reactor, way)
        await worker.exchange(b"Continue", dict(call_id=b"c-1", period=b"1", talk_seconds=b"9"))
        await worker.exchange(b"Continue", dict(call_id=b"refused", period=b"1",
                                                talk_seconds=b"9"))
        await worker.exchange(b"Accept", dict(call_id=b"c-2"))
        assert (count("continue"), count("accept")) == (before[0] + 2, before[1] + 1)
    def way_of(ctx):        # h1 and g1 are the first worker of each way
        return {**ctx, "worker": ctx.get("worker", "?")[1:]}
    assert [way_of(c) for c in seen[:3]] == [way_of(c) for c in seen[3:]]
    assert [(c.get("worker"), c.get("call_id")) for c in seen[:3]] == [
        ("h1", "c-1"), ("h2", "refused"), ("h3", "c-2")]
