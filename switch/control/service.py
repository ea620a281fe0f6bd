"""The core's network face to its media workers: the AMP listener, run on Twisted's asyncio
reactor next to asyncpg. (The node's HTTP site, /health and /metrics, is ops.health.)

Each AMP responder hands the request to `switch.control.core.Core` (a coroutine). The core raises
the protocol's own errors (switch.wire.protocol.WireError, declared once), which AMP answers by
their code; anything that means "the database is not there" becomes CoreUnavailable, on which the
worker applies its fail-safe rule.

A connection is nobody until its Hello proves it is a worker this node started (switch.wire.amp_auth):
before that every command but Challenge and Hello is refused with NOT_AUTHENTICATED. One live
connection per worker id; the worker id of every later command is the one Hello proved.

Accept and Continue, most of what a loaded core hears, take a shorter way (`WorkerLink.HOT`): a
well-formed one from a worker that said Hello is decoded by hand, its core coroutine runs as the
request's one task, and that task writes the answer box; the bytes on the wire are those of the
generic responders (AMP's command codec and its Deferreds). Anything else, a malformed box
included, goes the generic way and is answered as it always was.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import struct
import time
from typing import Callable

import asyncpg
from structlog.contextvars import bind_contextvars
from twisted.internet import defer, protocol
from twisted.protocols import amp
from twisted.python.failure import Failure

from switch.wire import amp_auth
from switch.control import core as core_mod
from switch.wire import protocol as wire
from switch.control import proof_calls
from switch.wire import proof as proof_wire

__all__ = ["WorkerLink", "WorkerLinkFactory", "WorkerRegistry", "as_deferred"]

log = logging.getLogger("ics.core")

_UNAVAILABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
                asyncio.TimeoutError, asyncpg.exceptions.CannotConnectNowError)


HELLO_DEADLINE_SECONDS = 10.0
SETUP_DETAIL_CHARS_MAX = 200    # a worker's detail text is logged, never trusted to be short
SETUPS_FAILED_REMEMBERED_MAX = 10_000   # SetupFailed ids kept to count a resend once   # a connection that has not said a valid Hello by then is dropped


def as_deferred(coro) -> defer.Deferred:
    return defer.Deferred.fromFuture(asyncio.ensure_future(coro))


class WorkerRegistry:
    """Workers known to a core without a supervisor (tests, externally managed workers).
    The supervisor (`switch.processes.supervisor.Supervisor`) offers the same `hello` and `heartbeat`."""

    def __init__(self, clock=time.monotonic, *, secret: bytes | None = None) -> None:
        self.clock = clock
        self.secret = secret if secret is not None else os.urandom(amp_auth.KEY_BYTES)
        self.workers: dict[str, dict] = {}

    def key_for(self, worker_id: str) -> bytes:
        """The key a worker with this id proves its Hello with (give it to that worker only)."""
        return amp_auth.derived_key(self.secret, worker_id)

    def credentials(self, worker_id: str) -> amp_auth.Credentials | None:
        return amp_auth.Credentials(self.key_for(worker_id))

    def summary(self) -> dict:
        return {"ready": sorted(self.workers), "starting": [], "draining": [], "dead": []}

    def hello(self, worker_id: str, capacity: int, sip_port: int, pid: int):
        self.workers[worker_id] = {"capacity": capacity, "sip_port": sip_port, "pid": pid,
                                   "active_calls": [], "last_seen": self.clock()}
        return self.workers[worker_id]

    def heartbeat(self, worker_id: str, active_calls):
        w = self.workers.setdefault(worker_id, {"capacity": 0, "sip_port": 0, "pid": 0})
        w.update(active_calls=list(active_calls), last_seen=self.clock())
        return w


class WorkerLink(amp.AMP):
    """One media worker's connection to the core."""

    # Commands answered the short way once Hello is said: wire name -> (command, arguments
    # decoded from the box as AMP's codec decodes them: a KeyError, ValueError or
    # UnicodeDecodeError sends the box the generic way, which answers it as before).
    HOT: dict[bytes, tuple[type[amp.Command], Callable[[amp.AmpBox], tuple]]] = {
        b"Continue": (wire.Continue, lambda box: (box[b"call_id"].decode("utf-8"),
                                                  int(box[b"period"]),
                                                  int(box[b"talk_seconds"]))),
        b"Accept": (wire.Accept, lambda box: (box[b"call_id"].decode("utf-8"),)),
    }

    def __init__(self, core: core_mod.Core, registry: WorkerRegistry, metrics=None) -> None:
        super().__init__()
        self.core = core
        self.registry = registry
        self.metrics = metrics
        self.worker_id: str | None = None      # set once Hello is accepted
        self.pid: int | None = None
        self._nonce: bytes | None = None
        self._hot_tasks: set[asyncio.Task] = set()     # a running task is held until it answers
        self._hot_timers: dict[str, object] = {}       # command -> its request_seconds child

    @property
    def authenticated(self) -> bool:
        return self.worker_id is not None

    def _require(self) -> None:
        if self.worker_id is None:
            raise wire.NotAuthenticated("say Challenge and Hello first")

    def connectionMade(self):
        super().connectionMade()
        # A connection that has not proved itself soon is dropped: idle intruders hold nothing.
        reactor = getattr(self.transport, "reactor", None)
        if reactor is not None:
            self._hello_deadline = reactor.callLater(HELLO_DEADLINE_SECONDS, self._hello_overdue)

    def _hello_overdue(self) -> None:
        if self.worker_id is None and self.transport is not None:
            log.warning("dropping an AMP connection from %s: no Hello within %ss",
                        self.transport.getPeer(), HELLO_DEADLINE_SECONDS)
            self.transport.loseConnection()

    def _refuse_hello(self, worker_id: str, code: str, reason: str) -> None:
        peer = self.transport.getPeer() if self.transport is not None else None
        log.warning("refused Hello claiming worker %r from %s: %s", worker_id, peer, reason)
        if self.metrics is not None and hasattr(self.metrics, "hello_refused"):
            self.metrics.hello_refused.labels(code).inc()
        # Answer first, then drop: a connection that failed to prove itself gets no second try.
        transport = self.transport
        if transport is not None and getattr(transport, "reactor", None) is not None:
            transport.reactor.callLater(0, transport.loseConnection)
        raise wire.NotAuthenticated(f"Hello refused: {reason}")

    def _call(self, command: str, coro, shape, **fields) -> defer.Deferred:
        """Run a core request; `fields` (call_id, kiosk) go on its log lines with the worker."""
        started = time.perf_counter()

        async def run():
            # This task's own context: the fields stay on this request's lines only.
            bind_contextvars(worker=self.worker_id,
                             **{k: v for k, v in fields.items() if v is not None})
            try:
                return shape(await coro)
            except wire.WireError:
                raise                   # the command declares it: AMP answers its code
            except _UNAVAILABLE as e:
                log.warning("database unavailable during %s: %r", command, e)
                raise wire.CoreUnavailable(str(e)) from e
            finally:
                if self.metrics is not None:
                    self.metrics.request_seconds.labels(command).observe(
                        time.perf_counter() - started)
        return as_deferred(run())

    # -- the short way of Accept and Continue ------------------------------------------------------

    def dataReceived(self, data):
        """Whole boxes at a box boundary are cut here, in one loop (AMP's parser makes a call
        per key and per value); a box the chunk cuts short, a key AMP would refuse, or any state
        but plain box reading leaves the rest to AMP's parser, as it would have found it."""
        if (self._unprocessed or self.state != "init" or self.innerProtocol is not None
                or self._justStartedTLS or self._locked or self.paused):
            return super().dataReceived(data)
        at, size = 0, len(data)
        while at < size:
            box, end = _whole_box(data, at, size)
            if box is None:
                break
            at = end
            self.boxReceiver.ampBoxReceived(box)
            if self.innerProtocol is not None or self._locked or self.paused:
                break
        if at < size:
            super().dataReceived(data[at:] if at else data)

    def ampBoxReceived(self, box):
        if self.worker_id is not None and amp.ASK in box:
            hot = self.HOT.get(box.get(amp.COMMAND))
            if hot is not None:
                command, decode = hot
                try:
                    args = decode(box)
                except (KeyError, ValueError, TypeError):
                    pass                    # the generic codec answers it (as it always did)
                else:
                    run = (self.core.continue_ if command is wire.Continue else
                           self.core.accept)(*args)
                    task = asyncio.get_running_loop().create_task(
                        self._answer_hot(command, box[amp.ASK], run, args[0]))
                    self._hot_tasks.add(task)
                    task.add_done_callback(self._hot_tasks.discard)
                    return
        super().ampBoxReceived(box)

    async def _answer_hot(self, command: type[amp.Command], ask: bytes, run, call_id: str):
        """Carry out one hot request and send its answer, as `_call` and AMP's responder would:
        the same log fields and metric, the same errors, the same bytes."""
        name = "continue" if command is wire.Continue else "accept"
        started = time.perf_counter()
        bind_contextvars(worker=self.worker_id, call_id=call_id)
        try:
            try:
                g = await run
            except wire.WireError:
                raise
            except _UNAVAILABLE as e:
                log.warning("database unavailable during %s: %r", name, e)
                raise wire.CoreUnavailable(str(e)) from e
            finally:
                if self.metrics is not None:
                    timer = self._hot_timers.get(name)
                    if timer is None:
                        timer = self._hot_timers[name] = self.metrics.request_seconds.labels(name)
                    timer.observe(time.perf_counter() - started)
            until = b"%d" % (g.grant_until,)
            last = b"True" if g.last else b"False"
            warn = None if g.warn_at is None else b"%d" % (g.warn_at,)
        except (Exception, asyncio.CancelledError) as e:
            box = _error_box(command, ask, e, Failure())
        else:
            if (self.transport is not None and not self._locked
                    and self._startingTLSBuffer is None):
                # AmpBox(_answer, grant_until, last[, warn_at]).serialize(): keys in order.
                self.transport.write(b"".join((
                    b"\x00\x07_answer", _U16(len(ask)), ask,
                    b"\x00\x0bgrant_until", _U16(len(until)), until,
                    b"\x00\x04last", _U16(len(last)), last,
                    b"" if warn is None else b"\x00\x07warn_at" + _U16(len(warn)) + warn,
                    b"\x00\x00")))
                return
            box = amp.AmpBox({b"grant_until": until, b"last": last, amp.ANSWER: ask})
            if warn is not None:
                box[b"warn_at"] = warn
        try:
            self._safeEmit(box)
        except Exception:           # noqa: BLE001 - as AMP's own errback of an answer
            self.unhandledError(Failure())

    @wire.Challenge.responder
    def challenge(self):
        if self.worker_id is not None:
            raise wire.BadRequest("this connection already said Hello")
        self._nonce = os.urandom(amp_auth.NONCE_BYTES)
        return {"nonce": self._nonce}

    @wire.Hello.responder
    def hello(self, worker_id, capacity, sip_port, pid, proof=None):
        nonce, self._nonce = self._nonce, None          # one Hello per Challenge
        if self.worker_id is not None:
            self._refuse_hello(worker_id, "already_greeted", "this connection already said Hello")
        if nonce is None:
            self._refuse_hello(worker_id, "no_challenge", "no Challenge on this connection")
        creds = self.registry.credentials(worker_id)
        if creds is None:
            self._refuse_hello(worker_id, "unknown_worker", "not a worker this node started")
        if not amp_auth.proof_ok(creds.key, nonce, proof, worker_id=worker_id, capacity=capacity,
                                 sip_port=sip_port, pid=pid):
            self._refuse_hello(worker_id, "bad_proof", "bad proof")
        if creds.sip_port is not None and creds.sip_port != sip_port:
            self._refuse_hello(worker_id, "wrong_port",
                               f"SIP port {sip_port} is not its port {creds.sip_port}")
        if creds.pid is not None and creds.pid != pid:
            self._refuse_hello(worker_id, "wrong_pid",
                               f"pid {pid} is not the process started ({creds.pid})")
        factory_links = getattr(getattr(self, "factory", None), "links", None)
        holder = factory_links.get(worker_id) if factory_links is not None else None
        if holder is not None and holder is not self and holder.pid != pid \
                and holder.transport is not None and holder.transport.connected:
            self._refuse_hello(worker_id, "duplicate",
                               "another live connection holds this worker id")
        try:
            self.registry.hello(worker_id, capacity, sip_port, pid)
        except Exception as e:       # the supervisor refuses a malformed or unexpected Hello
            raise wire.BadRequest(str(e)) from e
        links = getattr(getattr(self, "factory", None), "links", None)
        if links is not None:        # the core reaches this worker (Terminate) through its link
            links[worker_id] = self
        log.info("worker %s connected: capacity %d calls, SIP port %d", worker_id, capacity,
                 sip_port)
        self.worker_id, self.pid = worker_id, pid
        if holder is not None and holder is not self and holder.transport is not None:
            holder.transport.loseConnection()     # the same worker reconnected
        return {"node": "core"}

    def connectionLost(self, reason):
        super().connectionLost(reason)
        links = getattr(getattr(self, "factory", None), "links", None)
        if links is not None and self.worker_id and links.get(self.worker_id) is self:
            del links[self.worker_id]

    @wire.Heartbeat.responder
    def heartbeat(self, worker_id, active_calls, ending_calls=None):
        self._require()
        if worker_id != self.worker_id:
            raise wire.BadRequest(f"this connection is worker {self.worker_id!r}, "
                                  f"not {worker_id!r}")
        try:
            self.registry.heartbeat(worker_id, active_calls)
        except Exception as e:
            raise wire.BadRequest(str(e)) from e
        # Ending calls are refreshed like active ones (their End is on its way), but only an
        # active call the core does not know is news for the worker.
        active = set(active_calls)
        named = list(active_calls) + list(ending_calls or ())
        # Only the calls this worker's link authorized are its own (the proven worker id).
        return self._call("heartbeat", self.core.touch(named, self.worker_id),
                          lambda unknown: {"unknown_calls": [c for c in unknown if c in active]})

    def _kiosk_arrived(self, source_ip) -> None:
        """A kiosk's INVITE reached this worker: the front door's pending redirect is used."""
        arrived = getattr(getattr(self, "factory", None), "on_kiosk_arrived", None)
        if arrived is not None and source_ip:
            arrived(source_ip)

    @wire.AdmitKiosk.responder
    def admit_kiosk(self, kiosk, source_ip=None):
        self._require()
        self._kiosk_arrived(source_ip)
        return self._call("admit_kiosk", self.core.admit_kiosk(kiosk, source_ip),
                          lambda ok: {"admitted": ok})

    @wire.CheckPin.responder
    def check_pin(self, kiosk, pin, source=None, source_ip=None):
        self._require()
        if source == "sip_header":       # the first thing a worker asks of a trusted kiosk's call
            self._kiosk_arrived(source_ip)
        return self._call("check_pin",
                          self.core.check_pin(kiosk, pin, source, source_ip=source_ip,
                                              worker_id=self.worker_id),
                          kiosk=kiosk, shape=lambda a: {k: v for k, v in (
                              ("ok", a.ok), ("locked", a.locked),
                              ("attempts_left", a.attempts_left), ("inmate_id", a.inmate_id),
                              ("language", a.language), ("pin_session", a.pin_session))
                              if v is not None})

    @wire.Authorize.responder
    def authorize(self, kiosk, inmate_id, number, worker_id=None, source_ip=None,
                  pin_session=None):
        self._require()

        def shape(a: core_mod.AuthAnswer):
            out = {k: v for k, v in a.__dict__.items() if v is not None}
            out["trunks"] = list(a.trunks)
            return out
        # The worker is the one this connection proved, whatever the argument says.
        return self._call("authorize",
                          self.core.authorize(kiosk, inmate_id, number, self.worker_id,
                                              source_ip=source_ip, pin_session=pin_session),
                          shape, kiosk=kiosk)

    @staticmethod
    def _grant(g: core_mod.GrantAnswer) -> dict:
        out = {"grant_until": g.grant_until, "last": g.last}
        if g.warn_at is not None:
            out["warn_at"] = g.warn_at
        return out

    @wire.Accept.responder
    def accept(self, call_id):
        self._require()
        return self._call("accept", self.core.accept(call_id), self._grant, call_id=call_id)

    @wire.Continue.responder
    def continue_(self, call_id, period, talk_seconds):
        self._require()
        return self._call("continue", self.core.continue_(call_id, period, talk_seconds),
                          self._grant, call_id=call_id)

    @wire.End.responder
    def end(self, call_id, talk_seconds, disposition, recording=None, trunk=None, sip_code=None):
        self._require()
        if disposition not in wire.DISPOSITIONS:
            raise wire.BadRequest(f"unknown disposition {disposition!r}")
        return self._call("end", self.core.end(call_id, talk_seconds, disposition,
                                               recording=recording, trunk=trunk, sip_code=sip_code),
                          lambda e: {"billed_seconds": e.billed_seconds,
                                     "charged_micros": e.charged_micros, "cdr_id": e.cdr_id},
                          call_id=call_id)

    @wire.SetupFailed.responder
    def setup_failed(self, kiosk, reason, detail=None, source_ip=None, setup_id=None):
        """Count and log why a kiosk call ended before dialling (no database: cheap under load)."""
        self._require()
        if reason not in wire.SETUP_FAILURES:
            raise wire.BadRequest(f"unknown setup failure {reason!r}; one of "
                                  f"{', '.join(wire.SETUP_FAILURES)}")
        seen = getattr(getattr(self, "factory", None), "setups_failed_seen", None)
        if setup_id and seen is not None:
            key = (self.worker_id, setup_id[:SETUP_DETAIL_CHARS_MAX])
            if key in seen:
                return {"counted": False}          # a resend after a late answer
            seen[key] = None
            while len(seen) > SETUPS_FAILED_REMEMBERED_MAX:
                seen.popitem(last=False)
        self.core.setup_failed(kiosk[:SETUP_DETAIL_CHARS_MAX], reason,
                               (detail or "")[:SETUP_DETAIL_CHARS_MAX], source_ip, self.worker_id)
        return {"counted": True}

    @wire.Block.responder
    def block(self, call_id, scope):
        self._require()
        return self._call("block", self.core.block(call_id, scope), lambda b: {"blocked": b},
                          call_id=call_id)

    @proof_wire.ProofCallEnded.responder
    def proof_call_ended(self, proof_id, outcome, talk_seconds, trunk=None, sip_code=None):
        self._require()
        # Recorded only for the worker the proof call was placed on (switch.control.proof_calls).
        return self._call("proof_call_ended", proof_calls.ended(
            self.core.pool, self.worker_id, proof_id=proof_id, outcome=outcome,
            talk_seconds=talk_seconds, trunk=trunk, sip_code=sip_code, now=self.core.clock(),
            observe=self.core.observer), lambda ok: {"recorded": ok})


_KEY_LENGTH_MAX = amp.BinaryBoxProtocol._MAX_KEY_LENGTH
_U16 = struct.Struct("!H").pack         # an AMP key's or value's length prefix


def _whole_box(data: bytes, at: int, size: int) -> tuple[amp.AmpBox | None, int]:
    """The box that starts at data[at] and where the next one starts, or (None, at) when it
    is not all there or has a key longer than AMP allows (AMP's parser then deals with it)."""
    box = amp.AmpBox()
    pos = at
    while pos + 2 <= size:
        key_length = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if key_length == 0:
            return box, pos
        if key_length > _KEY_LENGTH_MAX:
            break
        value_at = pos + key_length + 2
        if value_at > size:
            break
        value_end = value_at + ((data[value_at - 2] << 8) | data[value_at - 1])
        if value_end > size:
            break
        box[data[pos:value_at - 2]] = data[value_at:value_end]
        pos = value_end
    return None, at


def _error_box(command: type[amp.Command], ask: bytes, e: BaseException,
               failure: Failure) -> amp.AmpBox:
    """AMP's answer to a responder that raised `e`: a declared error by its code and message
    (AMP's checkKnownErrors: the first declared class it is an instance of); any other, logged,
    as UNKNOWN in a box that closes the connection (AMP's formatError)."""
    for kind, code in command.allErrors.items():
        if isinstance(e, kind):
            box = amp.QuitBox() if kind in command.fatalErrors else amp.AmpBox()
            box[amp.ERROR] = ask
            box[amp.ERROR_DESCRIPTION] = str(e).encode("utf-8", "replace")
            box[amp.ERROR_CODE] = code
            return box
    amp._log.failure("while receiving response to command", failure)
    box = amp.QuitBox()
    box[amp.ERROR] = ask
    box[amp.ERROR_DESCRIPTION] = b"Unknown Error"
    box[amp.ERROR_CODE] = amp.UNKNOWN_ERROR_CODE
    return box


class WorkerLinkFactory(protocol.ServerFactory):
    def __init__(self, core, registry: WorkerRegistry, metrics=None) -> None:
        self.core, self.registry, self.metrics = core, registry, metrics
        self.links: dict[str, WorkerLink] = {}     # worker id -> its live link (after Hello)
        # (worker, setup_id) of SetupFailed reports counted lately (oldest first)
        self.setups_failed_seen: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self.on_kiosk_arrived = None   # source_ip -> None: the front door's (ops.node)

    def buildProtocol(self, addr):
        p = WorkerLink(self.core, self.registry, self.metrics)
        p.factory = self
        return p
