"""The node's SIP front door: redirects each new kiosk INVITE to a media worker with a free slot.

A stateless UDP redirector on `twisted.protocols.sip` (RFC 2543-era: no transaction layer, so
everything here is stateless and every answer is computed from the request alone):

- INVITE without a To-tag: 302 Moved Temporarily with ``Contact: <sip:USER@WORKER_HOST:PORT>``,
  keeping the Request-URI user (a trusted kiosk's dialled number survives the redirect); the
  kiosk re-sends its INVITE there. No worker with a free slot: 503 with Retry-After. A source
  with `frontdoor_reservations_per_source_max` redirects not yet seen at a worker: 486 (one
  source cannot reserve every slot, and 503 means only that every worker is full). A redirect
  counts as seen when the worker's first question about the call (AdmitKiosk, or CheckPin with
  the PIN header) reaches the core from that source (`kiosk_arrived`), or when it expires.
- OPTIONS: 200 with Allow. CANCEL: 200. ACK (to our 302/503): absorbed, never answered.
- BYE, re-INVITE or any other in-dialog request (To-tag present): 481, we hold no dialogs.
- Max-Forwards 0: 483. Missing or malformed mandatory headers: 400 naming the header.
- Datagrams over a per-source token bucket (`frontdoor_rate_per_second`, `frontdoor_burst`),
  unparseable datagrams, and responses: dropped and counted, never answered.

Responses follow RFC 3261 8.2.6 and 18.2.2: Via, From, Call-ID and CSeq copied, a To-tag added
(derived from the request by a keyed hash, so a retransmission gets the same tag), ``received``
added to the top Via when the source address differs from its sent-by, and ``rport`` filled in
and honoured (RFC 3581). A retransmitted INVITE gets the same answer without using a second slot.

Metrics: ``ics_frontdoor_requests_total{method,response}`` and
``ics_frontdoor_dropped_total{reason}``.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
import os
import re

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from twisted.logger import Logger
from twisted.protocols import basic, sip

from switch.settings import SwitchSettings
from switch.processes.supervisor import Pick, WorkerTable

__all__ = ["FrontDoor", "SourceLimiter", "Admission", "parse_message", "listen",
           "ALLOWED_METHODS", "ANSWERS_REMEMBERED_MAX", "ANSWER_MEMORY_SECONDS"]

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "OPTIONS")
# Methods we know but do not serve outside a dialog (405); anything else is 501.
_KNOWN_METHODS = frozenset(ALLOWED_METHODS + (
    "BYE", "REGISTER", "INFO", "UPDATE", "PRACK", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER",
    "PUBLISH"))
# A retransmitted INVITE (its 302 was lost) is answered from memory for this long: 64*T1, the
# longest a client retransmits an INVITE over UDP (RFC 3261 17.1.1.2).
ANSWER_MEMORY_SECONDS = 32.0
ANSWERS_REMEMBERED_MAX = 4_096
SIP_PORT_DEFAULT = 5060
SERVER_NAME = "ics-frontdoor"
# RFC 3261 user part (unreserved, escaped, user-unreserved): nothing that could end the Contact.
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,?/%]+\Z")

_log = Logger(namespace="switch.processes.frontdoor")


# -- rate limiting (pure) ----------------------------------------------------------------------

class Admission(enum.Enum):
    ADMITTED = "admitted"
    REFUSED = "refused"
    REFUSED_FIRST = "refused_first"   # first refusal since the source was last admitted


class SourceLimiter:
    """A token bucket per source address: `burst` datagrams at once, `rate_per_second` sustained.

    Remembers at most `sources_max` sources (the least recently seen is forgotten first), so a
    flood from spoofed addresses costs bounded memory.
    """

    def __init__(self, *, rate_per_second: float, burst: int, sources_max: int):
        if rate_per_second <= 0 or burst < 1 or sources_max < 1:
            raise ValueError("rate_per_second must be > 0, burst and sources_max >= 1")
        self.rate_per_second, self.burst, self.sources_max = rate_per_second, burst, sources_max
        # source -> [tokens, last refill time, refused since last admitted]
        self._buckets: collections.OrderedDict[str, list] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now: float) -> Admission:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.sources_max:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = [float(self.burst), now, False]
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket[1])
            bucket[0] = min(float(self.burst), bucket[0] + elapsed * self.rate_per_second)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            bucket[2] = False
            return Admission.ADMITTED
        first = not bucket[2]
        bucket[2] = True
        return Admission.REFUSED_FIRST if first else Admission.REFUSED


# -- parsing -----------------------------------------------------------------------------------

class _Parser(sip.MessagesParser):
    """Twisted's parser without its logged traceback: a bad datagram is just invalid."""

    def dataReceived(self, data):
        try:
            basic.LineReceiver.dataReceived(self, data)
        except Exception:
            self.invalidMessage()


def parse_message(data: bytes) -> sip.Message | None:
    """The one SIP message in a datagram, or None if it holds anything else."""
    found: list[sip.Message] = []
    parser = _Parser(found.append)
    parser.dataReceived(data)
    try:
        parser.dataDone()
    except Exception:      # e.g. a body shorter than its Content-Length
        return None
    return found[0] if len(found) == 1 else None


def _header(msg: sip.Message, name: str) -> str | None:
    values = msg.headers.get(name)
    return values[0].strip() if values else None


def _header_params(value: str) -> dict[str, str]:
    """Parameters of a From/To header (after the <uri>, or after the bare uri)."""
    if "<" in value:
        rest = value.split(">", 1)[1] if ">" in value else ""
    else:
        rest = value.split(";", 1)[1] if ";" in value else ""
        rest = ";" + rest
    params = {}
    for part in rest.split(";"):
        part = part.strip()
        if part:
            name, _, val = part.partition("=")
            params[name.strip().lower()] = val.strip()
    return params


@dataclasses.dataclass(frozen=True)
class _Via:
    value: str                       # the top Via, stamped with received/rport
    rest: list[str]                  # every other Via value, as received
    branch: str
    destination: tuple[str, int]     # where the response goes


def _stamp_via(msg: sip.Message, source: tuple[str, int]) -> _Via | None:
    """RFC 3261 18.2.1 and RFC 3581 on the top Via; None if there is no usable Via."""
    values = msg.headers.get("via")
    if not values:
        return None
    top, _, more = values[0].partition(",")
    top = top.strip()
    try:
        via = sip.parseViaHeader(top)
    except (ValueError, TypeError):
        return None
    if not via.host:
        return None
    src_host, src_port = source
    head, *params = top.split(";")
    kept, rport_requested = [], False
    for p in params:
        name = p.split("=", 1)[0].strip().lower()
        if name == "received":
            continue
        if name == "rport" and "=" not in p:
            rport_requested = True
            continue
        kept.append(p)
    if rport_requested:
        kept += [f"received={src_host}", f"rport={src_port}"]
        destination = (src_host, src_port)
    elif via.host != src_host:
        kept.append(f"received={src_host}")
        destination = (src_host, via.port or SIP_PORT_DEFAULT)
    else:
        destination = (via.host, via.port or SIP_PORT_DEFAULT)
    rest = ([more.strip()] if more.strip() else []) + list(values[1:])
    return _Via(";".join([head] + kept), rest, via.branch or "", destination)


# -- the protocol ------------------------------------------------------------------------------

class FrontDoor(sip.Base):
    """The front door's UDP protocol. `clock` gives `seconds()` (the reactor, or a task.Clock).
    Its counters register on `registry` (prometheus' default unless given): one door per registry."""

    def __init__(self, table: WorkerTable, clock, *, retry_after_seconds: int,
                 rate_per_second: float, burst: int, sources_max: int,
                 registry: CollectorRegistry | None = REGISTRY, tag_key: bytes | None = None,
                 reservations_per_source_max: int | None = None):
        super().__init__()
        self.table, self._clock = table, clock
        # A kiosk waits for one call at a time: a source with this many redirects not yet seen at
        # a worker gets 486, so no one source can reserve every slot (None: no cap).
        self.reservations_per_source_max = reservations_per_source_max
        self._pending_by_source: collections.OrderedDict[str, list[float]] = \
            collections.OrderedDict()
        self._sources_max = sources_max
        self.retry_after_seconds = retry_after_seconds
        self.limiter = SourceLimiter(rate_per_second=rate_per_second, burst=burst,
                                     sources_max=sources_max)
        self._tag_key = tag_key or os.urandom(16)
        self._answers: collections.OrderedDict[tuple, tuple[float, str, bytes]] = \
            collections.OrderedDict()
        self.requests_total = Counter(
            "ics_frontdoor_requests_total", "SIP requests answered (or absorbed) by the front door",
            ["method", "response"], registry=registry)
        self.dropped_total = Counter(
            "ics_frontdoor_dropped_total", "Datagrams the front door dropped unanswered",
            ["reason"], registry=registry)

    @classmethod
    def from_settings(cls, table: WorkerTable, clock, settings: SwitchSettings, *,
                      registry: CollectorRegistry | None = REGISTRY) -> FrontDoor:
        return cls(table, clock, retry_after_seconds=settings.retry_after_seconds,
                   rate_per_second=settings.frontdoor_rate_per_second,
                   burst=settings.frontdoor_burst, sources_max=settings.frontdoor_sources_max,
                   registry=registry,
                   reservations_per_source_max=settings.frontdoor_reservations_per_source_max)

    # The one entry point: I/O here, the decision in _answer.
    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self._clock.seconds()
        admission = self.limiter.allow(addr[0], now)
        if admission is not Admission.ADMITTED:
            if admission is Admission.REFUSED_FIRST:
                _log.warn("front door: rate-limiting {source}", event="frontdoor_rate_limited",
                          source=addr[0])
            self.dropped_total.labels(reason="rate_limited").inc()
            return
        try:
            self._handle(data, addr, now)
        except Exception:
            self.dropped_total.labels(reason="internal_error").inc()
            _log.failure("front door: could not handle a datagram from {source}",
                         event="frontdoor_internal_error", source=addr[0])

    def _handle(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        if not data.strip():
            self.dropped_total.labels(reason="keepalive").inc()
            return
        msg = parse_message(data)
        if msg is None:
            self.dropped_total.labels(reason="unparseable").inc()
            return
        if isinstance(msg, sip.Response):
            self.dropped_total.labels(reason="response").inc()
            return
        via = _stamp_via(msg, addr)
        if via is None:      # nowhere to send an answer
            self.dropped_total.labels(reason="unparseable").inc()
            return
        method = msg.method.upper()
        label = method if method in _KNOWN_METHODS else "other"
        if method == "ACK":
            self.requests_total.labels(method=label, response="absorbed").inc()
            return
        key = None
        if method == "INVITE":
            key = (_header(msg, "call-id"), via.branch, _header(msg, "cseq"))
            remembered = self._remembered(key, now)
            if remembered is not None:
                code, payload = remembered
                self.requests_total.labels(method=label, response=code).inc()
                self.transport.write(payload, via.destination)
                return
        response = self._answer(msg, method, via, now, addr[0])
        payload = response.toString().encode("utf-8")
        if key is not None:
            self._remember(key, now, str(response.code), payload)
        self.requests_total.labels(method=label, response=str(response.code)).inc()
        self.transport.write(payload, via.destination)

    def _answer(self, msg: sip.Request, method: str, via: _Via, now: float,
                source: str = "") -> sip.Response:
        """The response to a request, decided from the request and the worker table alone."""
        for name, title in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
                            ("cseq", "CSeq")):
            if not _header(msg, name):
                return self._response(msg, via, 400, f"Missing {title}")
        cseq = _header(msg, "cseq").split()
        if len(cseq) != 2 or not cseq[0].isdigit() or cseq[1].upper() != method:
            return self._response(msg, via, 400, "Bad CSeq")
        max_forwards = _header(msg, "max-forwards")
        if max_forwards is not None:
            if not max_forwards.isdigit():
                return self._response(msg, via, 400, "Bad Max-Forwards")
            if int(max_forwards) == 0:
                return self._response(msg, via, 483)
        in_dialog = "tag" in _header_params(_header(msg, "to"))
        if method == "OPTIONS":
            return self._response(msg, via, 200, extra={
                "allow": ", ".join(ALLOWED_METHODS), "accept": "application/sdp"})
        if method == "CANCEL":
            return self._response(msg, via, 200)
        if method == "INVITE" and not in_dialog:
            return self._redirect(msg, via, now, source)
        if in_dialog or method == "BYE":
            return self._response(msg, via, 481)
        if method in _KNOWN_METHODS:
            return self._response(msg, via, 405, extra={"allow": ", ".join(ALLOWED_METHODS)})
        return self._response(msg, via, 501)

    def _redirect(self, msg: sip.Request, via: _Via, now: float, source: str) -> sip.Response:
        user = msg.uri.username
        if user is not None and not _USER_RE.match(user):
            return self._response(msg, via, 400, "Bad Request-URI user")
        # A full node is the truth for everyone (503, try later); the per-source cap only keeps
        # one source from reserving the slots that are still free.
        if self.table.slots(now)["free"] <= 0:
            return self._full(msg, via)
        pending = self._pending(source, now)
        if self.reservations_per_source_max is not None \
                and len(pending) >= self.reservations_per_source_max:
            self.dropped_total.labels(reason="reservations_per_source").inc()
            return self._response(msg, via, 486, "Too Many Pending Calls")
        pick: Pick | None = self.table.pick(now)
        if pick is None:
            return self._full(msg, via)
        pending.append(pick.reserved_until)
        host = f"[{pick.host}]" if ":" in pick.host else pick.host
        target = f"sip:{user}@{host}:{pick.sip_port}" if user else f"sip:{host}:{pick.sip_port}"
        return self._response(msg, via, 302, extra={"contact": f"<{target}>"})

    def _full(self, msg: sip.Request, via: _Via) -> sip.Response:
        return self._response(msg, via, 503, extra={"retry-after": str(self.retry_after_seconds)})

    def kiosk_arrived(self, source: str) -> None:
        """A worker saw a kiosk from `source` (its first question to the core): the redirect it
        followed is no longer pending, so the per-source cap counts only redirects not followed
        (what reserving slots without calling looks like), however fast a site's kiosks call."""
        pending = self._pending_by_source.get(source)
        if pending:
            pending.remove(min(pending))

    def _pending(self, source: str, now: float) -> list[float]:
        """The unexpired reservations this source caused (bounded: least recent source dropped)."""
        pending = [e for e in self._pending_by_source.pop(source, []) if e > now]
        if len(self._pending_by_source) >= self._sources_max:
            self._pending_by_source.popitem(last=False)
        self._pending_by_source[source] = pending
        return pending

    def _response(self, msg: sip.Request, via: _Via, code: int, phrase: str | None = None,
                  extra: dict[str, str] | None = None) -> sip.Response:
        r = sip.Response(code, phrase)
        r.headers["via"] = [via.value] + via.rest
        for name in ("from", "to", "call-id", "cseq"):
            if msg.headers.get(name):
                r.headers[name] = [msg.headers[name][0].strip()]
        to = _header(msg, "to")
        if to and "tag" not in _header_params(to):
            r.headers["to"] = [f"{to};tag={self._to_tag(msg, via)}"]
        for name, value in (extra or {}).items():
            r.headers[name] = [value]
        r.headers["server"] = [SERVER_NAME]
        r.headers["content-length"] = ["0"]
        return r

    def _to_tag(self, msg: sip.Request, via: _Via) -> str:
        # Keyed hash of what identifies the request: retransmissions get the same tag with no state.
        from_tag = _header_params(_header(msg, "from") or "").get("tag", "")
        seed = "\0".join((_header(msg, "call-id") or "", from_tag, via.branch,
                          _header(msg, "cseq") or ""))
        return hashlib.blake2s(seed.encode("utf-8"), key=self._tag_key, digest_size=8).hexdigest()

    def _remembered(self, key: tuple, now: float) -> tuple[str, bytes] | None:
        while self._answers:
            oldest_key, (expiry, _, _) = next(iter(self._answers.items()))
            if expiry > now:
                break
            del self._answers[oldest_key]
        entry = self._answers.get(key)
        return None if entry is None else entry[1:]

    def _remember(self, key: tuple, now: float, code: str, payload: bytes) -> None:
        if len(self._answers) >= ANSWERS_REMEMBERED_MAX:
            self._answers.popitem(last=False)
        self._answers[key] = (now + ANSWER_MEMORY_SECONDS, code, payload)


def listen(reactor, table: WorkerTable, settings: SwitchSettings, *,
           registry: CollectorRegistry | None = REGISTRY,
           port: int | None = None) -> tuple[FrontDoor, object]:
    """Start the front door on `settings.sip_host`:`frontdoor_port` (or `port`, 0 for any).
    Returns the protocol and the listening port (call `stopListening()` to close it)."""
    door = FrontDoor.from_settings(table, reactor, settings, registry=registry)
    listening = reactor.listenUDP(settings.frontdoor_port if port is None else port, door,
                                  interface=settings.sip_host)
    return door, listening
