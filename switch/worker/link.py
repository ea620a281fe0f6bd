"""The worker's link to the core: connect, say Hello, heartbeat, ask with a deadline, resend reports.

The link reconnects forever with a bounded backoff. `ask()` fails fast with `CoreUnreachable`
when there is no connection (or no answer within `answer_seconds`): the caller applies the
fail-safe rule. `report()` is for End and Block, which are idempotent on the core: it resends
after reconnects until answered, so a call's end is never lost to a dropped link.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, protocol
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger
from twisted.protocols import amp

from switch.errors import SwitchError
from switch.wire import amp_auth
from switch.wire import protocol as wire
from switch.wire.proof import PlaceProofCall

__all__ = ["CoreLink", "CoreUnreachable", "REPORT_RETRY_SECONDS", "REPORTS_PENDING_MAX"]

log = Logger()

REPORT_RETRY_SECONDS = 1.0      # a report that failed is sent again after this long
REPORTS_PENDING_MAX = 10_000    # reports kept while the core is away (oldest dropped beyond)
RECONNECT_DELAY_SECONDS_MAX = 2.0


class CoreUnreachable(SwitchError):
    """No connection to the core, or no answer in time: the worker applies the fail-safe rule."""


# Errors that mean "asking again will not help" for a report.
_FINAL = (wire.UnknownCall, wire.BadRequest, wire.CallAlreadyEnded)


class _WorkerAMP(amp.AMP):
    """The worker's end of one AMP connection; answers Terminate from the core."""

    def __init__(self, link: "CoreLink"):
        super().__init__()
        self.link = link

    def connectionMade(self):
        super().connectionMade()
        self.link._connected(self)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.link._lost(self)

    @wire.Terminate.responder
    def terminate(self, call_id, reason):
        return {"found": self.link.on_terminate(call_id, reason)}

    @PlaceProofCall.responder
    def place_proof_call(self, **kw):
        # Only on the connection that said Hello: a core we have not greeted asks nothing.
        if self is not self.link._proto or not self.link._hello_done:
            raise wire.NotAuthenticated("no Hello on this connection yet")
        return {"placed": self.link.on_proof_call(self.link._key, **kw)}


class CoreLink:
    def __init__(self, reactor, core: str, *, worker_id: str, capacity: int, sip_port: int,
                 heartbeat_seconds: float, answer_seconds: float,
                 active_calls: Callable[[], list[str]],
                 on_unknown_calls: Callable[[list[str]], None] = lambda ids: None,
                 on_terminate: Callable[[str, str], bool] = lambda call_id, reason: False,
                 on_proof_call: Callable[..., bool] | None = None):
        self.reactor = reactor
        self.worker_id, self.capacity, self.sip_port = worker_id, capacity, sip_port
        self.heartbeat_seconds, self.answer_seconds = heartbeat_seconds, answer_seconds
        self.active_calls = active_calls
        self.on_unknown_calls = on_unknown_calls
        self.on_terminate = on_terminate
        self.on_proof_call = on_proof_call or _no_proof_calls
        self.node: str | None = None
        self._key = amp_auth.key_from_environ()     # from the supervisor, never from argv
        self._proto: _WorkerAMP | None = None
        self._hello_done = False
        self._heartbeat = None
        self._pending: list[tuple[type[amp.Command], dict, defer.Deferred]] = []
        self._flushing = False
        factory = protocol.Factory.forProtocol(lambda: _WorkerAMP(self))
        self._service = ClientService(
            clientFromString(reactor, core), factory,
            retryPolicy=backoffPolicy(initialDelay=0.1, maxDelay=RECONNECT_DELAY_SECONDS_MAX),
            clock=reactor)

    @property
    def reachable(self) -> bool:
        """Connected and greeted: the core has our Hello."""
        return self._proto is not None and self._hello_done

    def start(self) -> None:
        self._service.startService()

    def stop(self) -> defer.Deferred:
        self._stop_heartbeat()
        return self._service.stopService()

    # -- connection life ----------------------------------------------------------------------
    def _connected(self, proto: _WorkerAMP) -> None:
        self._proto, self._hello_done = proto, False
        d = amp_auth.say_hello(self._raw, self._key, worker_id=self.worker_id,
                               capacity=self.capacity, sip_port=self.sip_port, pid=os.getpid())
        d.addCallbacks(self._greeted, self._hello_failed, callbackArgs=(proto,),
                       errbackArgs=(proto,))

    def _greeted(self, answer, proto) -> None:
        if proto is not self._proto:
            return
        self.node, self._hello_done = answer["node"], True
        log.info("worker {w} greeted core {node}", w=self.worker_id, node=self.node)
        self._start_heartbeat()
        self._flush()

    def _hello_failed(self, failure, proto) -> None:
        if failure.check(defer.TimeoutError, defer.CancelledError):     # said as "(3.0, 'Deferred')"
            log.warn("Hello unanswered after {s}s: the core is busy; trying again",
                     s=self.answer_seconds)
        else:
            log.warn("Hello refused: {f}", f=failure.getErrorMessage())
        if proto is self._proto and proto.transport is not None:
            proto.transport.loseConnection()   # reconnect and try again

    def _lost(self, proto: _WorkerAMP) -> None:
        if proto is self._proto:
            self._proto, self._hello_done = None, False
            self._stop_heartbeat()

    def _start_heartbeat(self) -> None:
        from twisted.internet import task
        self._stop_heartbeat()
        self._heartbeat = task.LoopingCall(self._beat)
        self._heartbeat.clock = self.reactor
        self._heartbeat.start(self.heartbeat_seconds, now=True).addErrback(log.failure, "heartbeat")

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def _beat(self) -> None:
        if not self.reachable:
            return
        d = self.ask(wire.Heartbeat, worker_id=self.worker_id, **self.heartbeat_arguments())
        d.addCallbacks(lambda a: a["unknown_calls"] and self.on_unknown_calls(a["unknown_calls"]),
                       lambda f: log.info("heartbeat unanswered: {e}", e=f.getErrorMessage()))

    def heartbeat_arguments(self) -> dict[str, list[str]]:
        """The calls a heartbeat names: those up, and those whose End waits in the report queue
        (else the core, not hearing of them, would close them as lost before their End)."""
        ending = sorted({kw["call_id"] for command, kw, _ in self._pending
                         if command is wire.End})
        return {"active_calls": self.active_calls(), "ending_calls": ending}

    def beat_now(self) -> None:
        """Heartbeat at once (a call ended: the front door may use its slot again)."""
        self._beat()

    # -- asking -------------------------------------------------------------------------------
    def _raw(self, command, **kw) -> defer.Deferred:
        d = self._proto.callRemote(command, **kw)
        d.addTimeout(self.answer_seconds, self.reactor)
        return d

    def ask(self, command: type[amp.Command], **kw) -> defer.Deferred:
        """Send `command` now; fails with CoreUnreachable without a link or an answer in time."""
        if not self.reachable:
            return defer.fail(CoreUnreachable(f"no link to the core for {command.__name__}"))
        d = self._raw(command, **kw)

        def translate(failure):
            if failure.check(defer.TimeoutError, defer.CancelledError):
                raise CoreUnreachable(f"{command.__name__} unanswered after {self.answer_seconds}s")
            if failure.check(amp.ProtocolSwitched, *_connection_errors()):
                raise CoreUnreachable(f"link lost during {command.__name__}")
            return failure
        return d.addErrback(translate)

    def report(self, command: type[amp.Command], **kw) -> defer.Deferred:
        """Send `command` until the core answers it (End, Block): the result, or a final error."""
        d = defer.Deferred()
        if len(self._pending) >= REPORTS_PENDING_MAX:
            _, dropped, dd = self._pending.pop(0)
            log.error("report queue full: dropped {c}", c=dropped)
            dd.errback(CoreUnreachable("report dropped: queue full"))
        self._pending.append((command, kw, d))
        self._flush()
        return d

    @property
    def reports_pending(self) -> int:
        return len(self._pending)

    @defer.inlineCallbacks
    def _flush(self):
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._pending and self.reachable:
                command, kw, d = self._pending[0]
                try:
                    answer = yield self.ask(command, **kw)
                except _FINAL as e:
                    self._pending.pop(0)
                    d.errback(e)
                except (CoreUnreachable, wire.CoreUnavailable, Exception) as e:
                    log.info("{c} not answered ({e}); will resend", c=command.__name__, e=e)
                    self.reactor.callLater(REPORT_RETRY_SECONDS, self._flush)
                    return
                else:
                    self._pending.pop(0)
                    d.callback(answer)
        finally:
            self._flushing = False


def _no_proof_calls(key, **kw) -> bool:
    raise wire.BadRequest("this worker places no proof calls")


def _connection_errors():
    from twisted.internet import error
    return (error.ConnectionLost, error.ConnectionDone, error.ConnectionClosed)
