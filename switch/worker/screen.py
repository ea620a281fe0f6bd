"""What a worker lets through to pjsua: a pure decision on each SIP request before pjsua sees it.

pjsua acts on its own on some requests (it accepts REFER and dials the target, honours Replaces)
and aborts the process on one shape (an ACK without To-tag that looks like a merged request:
pjsua answers it with 482 and `pjsip_endpt_create_response` asserts on ACK). The screen runs
first (`switch.worker.sipfilter` feeds it every request below pjsip's transaction layer) and
answers, in this order:

1. FLOOD: the source is over its budget (a token bucket per source address, and a separate one
   per dialog for a dialog's own peer, so a flood from one address never starves another's BYE;
   the peer's own BYE is never shed);
2. MALFORMED: no request line or no Call-ID: dropped, pjsip would refuse it anyway;
3. NO_TRANSFER: REFER, in or out of a dialog, is refused 403 (a worker dials only what the core
   authorized);
4. NO_REPLACE: an INVITE carrying Replaces or Join is refused 403;
5. STRAY_ACK: an ACK without To-tag is dropped (every final response carries a To-tag, so no
   legitimate ACK lacks one; this is the shape that aborts pjsua);
6. OFF_PATH: a request inside a known dialog from another address than the dialog's peer is
   refused 403 (an ACK is dropped);
7. FULL: a new INVITE while the worker has no room for a call is refused 503 here, before pjsua
   creates a call and its RTP sockets for it;
8. CALL_RATE: new INVITEs beyond the worker-wide budget (`call_rate`) are refused 503. pjsua
   opens two sockets per call and its select ioqueue (64 handles) returns a closed socket's
   handle only 500 ms later: a flood of INVITEs answered 503 one after another exhausted it and
   aborted the process (`pj_ioqueue_register_sock2` assertion), so new calls are bounded
   worker-wide, whatever their sources;
otherwise PASS. Known dialogs are registered by the worker (`admit`) when pjsua made a call of
them, and forgotten (`forget`) when the leg is gone, so their number is bounded by the call slots.
"""
from __future__ import annotations

import enum
import re
from collections import OrderedDict
from dataclasses import dataclass

from switch.settings import WorkerSettings

__all__ = ["Screen", "Verdict", "Rule", "Request", "parse_request", "parse_call_id",
           "ScreenSettings"]


class Rule(enum.Enum):
    """Why a request was stopped, in the order the rules are tried (never renumbered)."""
    FLOOD = 1
    MALFORMED = 2
    NO_TRANSFER = 3
    NO_REPLACE = 4
    STRAY_ACK = 5
    OFF_PATH = 6
    FULL = 7
    CALL_RATE = 8


@dataclass(frozen=True)
class Verdict:
    rule: Rule | None = None      # None: pass to pjsua
    code: int = 0                 # a stateless response to send; 0: drop silently

    @property
    def passes(self) -> bool:
        return self.rule is None


PASS = Verdict()


@dataclass(frozen=True)
class Request:
    method: str
    call_id: str
    to_tag: str
    headers: frozenset[str]       # lower-case header names present (compact forms expanded)


_COMPACT = {"i": "call-id", "t": "to", "f": "from", "v": "via", "m": "contact", "r": "refer-to"}
_REQUEST_LINE = re.compile(r"^([A-Za-z]+) +\S+ +SIP/2\.0$")
_TO_TAG = re.compile(r";[ \t]*tag[ \t]*=[ \t]*([^;, \t]+)", re.I)
HEAD_MAX_BYTES = 8192             # a request head longer than this is not a request we take


def parse_request(text: str) -> Request | None:
    """The few fields the screen needs from a request's head; None when it is not a request."""
    head = text[:HEAD_MAX_BYTES].split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    lines = head.split("\n")
    m = _REQUEST_LINE.match(lines[0].strip())
    if m is None:
        return None
    names, call_id, to = set(), "", ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            continue                  # a folded continuation: not a new header
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        name = _COMPACT.get(name, name)
        names.add(name)
        if name == "call-id" and not call_id:
            call_id = value.strip()
        elif name == "to" and not to:
            to = value
    if not call_id:
        return None
    # The To-tag is a header parameter, after the URI (a tag inside <...> belongs to the URI).
    params = to.rsplit(">", 1)[1] if ">" in to else to
    t = _TO_TAG.search(params)
    return Request(m.group(1).upper(), call_id, t.group(1) if t else "", frozenset(names))


_CALL_ID = re.compile(r"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)


def parse_call_id(text: str) -> str:
    """The Call-ID of any SIP message ("" when none)."""
    m = _CALL_ID.search(text[:HEAD_MAX_BYTES].split("\r\n\r\n", 1)[0])
    return m.group(1) if m else ""


@dataclass(frozen=True)
class ScreenSettings:
    """The screen's rates. Those an operator sets live in `[worker]` (switch.settings.WorkerSettings,
    whose defaults are these); the rest are the screen's own."""
    source_rate: float = WorkerSettings.screen_source_rate    # requests/s a source may send
    source_burst: float = WorkerSettings.screen_source_burst  # ... and at once
    dialog_rate: float = 20.0         # in-dialog requests per second from a dialog's own peer
    dialog_burst: float = 40.0
    call_rate: float = WorkerSettings.screen_call_rate        # new INVITEs/s the worker takes
    call_burst: float = WorkerSettings.screen_call_rate       # ... and at once (each may hold 2
    #                                   sockets for 0.5 s more): one second's worth
    sources_max: int = 4096           # token buckets kept (least recently used dropped)

    @classmethod
    def of(cls, worker: WorkerSettings) -> ScreenSettings:
        return cls(source_rate=worker.screen_source_rate, source_burst=worker.screen_source_burst,
                   call_rate=worker.screen_call_rate, call_burst=worker.screen_call_rate)


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens, self.at = tokens, at


class Screen:
    """The screen's state: token buckets and known dialogs. `clock()` gives seconds."""

    def __init__(self, clock, settings: ScreenSettings = ScreenSettings(),
                 admitting=lambda: True):
        self.clock, self.s = clock, settings
        self.admitting = admitting                # room for a new call now?
        self._buckets: OrderedDict[tuple, _Bucket] = OrderedDict()
        self._peers: dict[str, str] = {}          # call-id -> the peer's IP address
        self._outbound: set[str] = set()          # call-ids whose peer is learned from a reply
        self.stopped: dict[Rule, int] = {r: 0 for r in Rule}

    # -- known dialogs (the worker tells) -------------------------------------------------------
    def admit(self, call_id: str, peer_ip: str) -> None:
        """pjsua made an inbound call of `call_id` from `peer_ip`: its dialog speaks from there."""
        if call_id:
            self._peers[call_id] = peer_ip

    def dialled(self, call_id: str) -> None:
        """The worker placed `call_id`: the first response's source becomes its peer."""
        if call_id and call_id not in self._peers:
            self._outbound.add(call_id)

    def answered(self, call_id: str, source_ip: str) -> None:
        if call_id in self._outbound:
            self._outbound.discard(call_id)
            self._peers[call_id] = source_ip

    def forget(self, call_id: str) -> None:
        self._peers.pop(call_id, None)
        self._outbound.discard(call_id)
        for key in [k for k in self._buckets if len(k) == 2 and k[1] == call_id]:
            del self._buckets[key]

    @property
    def dialogs(self) -> int:
        return len(self._peers) + len(self._outbound)

    # -- the decision ------------------------------------------------------------------------
    def request(self, text: str, source_ip: str) -> Verdict:
        verdict = self._decide(parse_request(text), source_ip)
        if verdict.rule is not None:
            self.stopped[verdict.rule] += 1
        return verdict

    def _decide(self, req: Request | None, source_ip: str) -> Verdict:
        peer = self._peers.get(req.call_id) if req is not None else None
        own_dialog = req is not None and req.to_tag and peer == source_ip
        key = (source_ip, req.call_id) if own_dialog else (source_ip,)
        # A dialog's own peer may always end it: its BYE is never shed (it ends the budget too).
        bye_of_own = own_dialog and req.method == "BYE"
        if not bye_of_own and not self._take(key, own_dialog):
            return Verdict(Rule.FLOOD)
        if req is None:
            return Verdict(Rule.MALFORMED)
        if req.method == "REFER":
            return Verdict(Rule.NO_TRANSFER, 403)
        if req.method == "INVITE" and ("replaces" in req.headers or "join" in req.headers):
            return Verdict(Rule.NO_REPLACE, 403)
        if req.method == "ACK" and not req.to_tag:
            return Verdict(Rule.STRAY_ACK)
        if req.to_tag and peer is not None and peer != source_ip:
            return Verdict(Rule.OFF_PATH, 0 if req.method == "ACK" else 403)
        if req.method == "INVITE" and not req.to_tag and peer is None and \
                req.call_id not in self._outbound:
            # A new call (a retransmission of an admitted INVITE has a known Call-ID).
            if not self.admitting():
                return Verdict(Rule.FULL, 503)
            if not self._take(("new calls",), False, self.s.call_rate, self.s.call_burst):
                return Verdict(Rule.CALL_RATE, 503)
        return PASS

    def _take(self, key: tuple, own_dialog: bool, rate: float | None = None,
              burst: float | None = None) -> bool:
        if rate is None:
            rate, burst = ((self.s.dialog_rate, self.s.dialog_burst) if own_dialog
                           else (self.s.source_rate, self.s.source_burst))
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(burst, now)
            if len(self._buckets) > self.s.sources_max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(burst, b.tokens + (now - b.at) * rate)
            b.at = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True
