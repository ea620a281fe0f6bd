"""The one place that touches pjsua2: an endpoint, its call legs, prompts and recordings.

Everything above this module sees plain Python: a `Leg` reports its state changes, digits and
prompt ends as plain values through callbacks on the reactor thread, and never hands out a pjsua2
object. The lifetime rules measured in DESIGN.md live here:

1. One endpoint per process, `threadCnt=0`, `mainThreadOnly=True`, polled by a `LoopingCall` on the
   injected reactor (slowly when no call is up, quickly during calls).
2. A pjsua2 `Call` is dropped one reactor turn after DISCONNECTED, never inside the callback, and
   only while its call id is free in pjsua. Ids are recycled, and the Call destructor clears the
   user data of, and hangs up, whatever call holds its id now (pjproject #3856): a new INVITE
   handled in the same poll as a BYE takes the freed id before that turn comes. Such a Call waits
   in a graveyard until its id is free again (checked before every poll). Plain data is copied
   out of every callback before anything asynchronous happens.
3. The `AudioMedia` of a leg is forgotten at DISCONNECTED; media operations on a gone leg are no-ops.
4. `AudioMediaPlayer.onEof2` runs on the media clock thread: it only calls `callFromThread`.
5. `shutdown()` hangs up every leg and waits for them to be collected before `libDestroy()`.
6. pjsua creates no call Python did not ask for: every request passes the worker's `Screen`
   (switch.worker.sipfilter) before pjsip's transaction layer, and behind it each call still
   refuses transfers (REFER) and replacements (Replaces) and stops at a 3xx unless its owner
   follows redirects (only the kiosk simulator does).
7. Media takes no new remote address from the network: the RTP transport of each leg is marked
   `PJMEDIA_UDP_NO_SRC_ADDR_CHECKING` as soon as pjsua creates it, so a third party spraying the
   port never becomes where the leg's audio is sent. (b) With `strict_media_source` (workers),
   the leg's RTP socket is also connected to the peer's SDP address whenever media becomes
   active, so the kernel drops RTP from anywhere else: pjmedia's stream, which follows a new
   source after a few packets whatever the transport says, never hears a sprayer. A peer whose
   RTP does not come from its SDP address (a kiosk behind NAT) is not heard either.
8. Every leg's RTP port is drawn at random from the worker's free pairs (switch.worker.rtp_ports),
   just before pjsua binds it: for an inbound leg when the screen passes its INVITE, for an
   outbound one before `makeCall`. pjsua's own draw is once per account, then sequential.
"""
from __future__ import annotations

import ctypes
import enum
import gc
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pjsua2 as pj
from twisted.internet import defer, task
from twisted.logger import Logger

from switch.worker import rtp_ports
from switch.worker.screen import Screen
from switch.worker.sipfilter import RequestFilter

__all__ = ["LegState", "Endpoint", "Leg", "Incoming", "Prompt", "Recording", "DtmfMethod",
           "POLL_IDLE_SECONDS", "POLL_ACTIVE_SECONDS"]

log = Logger()

POLL_IDLE_SECONDS = 0.05     # no leg up: SIP only, 50 ms of latency is harmless
POLL_ACTIVE_SECONDS = 0.01   # legs up: DTMF, prompt ends and hangups are handled promptly
SHUTDOWN_SECONDS_MAX = 5.0   # legs still not disconnected by then are abandoned to libDestroy
KEEP_CODECS = ("PCMU/8000/1", "PCMA/8000/1")
ACCOUNTS_MAX = 6             # caller identities (From users) at once; pjsua allows 8 accounts


class LegState(enum.Enum):
    CALLING = "calling"          # outbound INVITE sent
    INCOMING = "incoming"        # inbound INVITE received, not yet answered
    EARLY = "early"              # a provisional response (ringing)
    CONNECTING = "connecting"    # answered, waiting for ACK
    CONFIRMED = "confirmed"      # up
    DISCONNECTED = "disconnected"


_PJ_STATES = {
    pj.PJSIP_INV_STATE_CALLING: LegState.CALLING,
    pj.PJSIP_INV_STATE_INCOMING: LegState.INCOMING,
    pj.PJSIP_INV_STATE_EARLY: LegState.EARLY,
    pj.PJSIP_INV_STATE_CONNECTING: LegState.CONNECTING,
    pj.PJSIP_INV_STATE_CONFIRMED: LegState.CONFIRMED,
    pj.PJSIP_INV_STATE_DISCONNECTED: LegState.DISCONNECTED,
}


class DtmfMethod(enum.Enum):
    RFC4733 = "rfc4733"
    SIP_INFO = "sip_info"


@dataclass(frozen=True)
class Incoming:
    """What a new inbound INVITE said, copied out of pjsua2 before any decision is made."""
    request_user: str            # user part of the Request-URI ("" when none)
    from_user: str               # user part of From: the kiosk's identity
    headers: dict[str, str]      # lower-case header name -> first value
    source: str                  # "ip:port" the INVITE came from (the transport's, not a header)

    @property
    def source_ip(self) -> str:
        """The IP address part of `source` (an IPv6 address keeps its colons)."""
        host = self.source.rsplit(":", 1)[0] if ":" in self.source else self.source
        return host.strip("[]")


_REQUEST_LINE = re.compile(r"^INVITE\s+(?:sips?|tel):([^@;>\s]*)", re.I)
_URI_USER = re.compile(r"^(?:sips?:([^@;?>]*)@|tel:([^;?>]*))", re.I)


def from_user(value: str) -> str:
    """The user part of the URI in a From header value: the kiosk's claimed identity.

    Only the URI counts: a quoted display name (which may itself contain '<sip:...>') is skipped
    as a quoted string, the URI is the one in angle brackets after it, or without brackets the
    value up to its first parameter. Anything that does not parse gives "" (an unknown kiosk).
    """
    v, i = value.strip(), 0
    if v.startswith('"'):
        i = 1
        while i < len(v) and v[i] != '"':
            i += 2 if v[i] == "\\" else 1
        if i >= len(v):
            return ""                       # unterminated display name
        v = v[i + 1:].lstrip()
        if not v.startswith("<"):
            return ""
    lt = v.find("<")
    if lt >= 0:
        if '"' in v[:lt]:
            return ""
        gt = v.find(">", lt)
        if gt < 0:
            return ""
        uri = v[lt + 1:gt].strip()
    else:
        uri = v.split(";", 1)[0].strip()
    m = _URI_USER.match(uri)
    if m is None:
        return ""
    return m.group(1) if m.group(1) is not None else m.group(2)


def parse_invite(whole_msg: str, source: str) -> Incoming:
    """The request user, From user and headers of a raw INVITE (unfolded, first value wins)."""
    head = whole_msg.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = head.replace("\r\n", "\n").split("\n")
    m = _REQUEST_LINE.match(lines[0]) if lines else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(_COMPACT.get(name.strip().lower(), name.strip().lower()),
                               value.strip())
    return Incoming(m.group(1) if m else "", from_user(headers.get("from", "")), headers, source)


_COMPACT = {"f": "from", "t": "to", "i": "call-id", "m": "contact", "v": "via"}


def _max_calls() -> int:
    """The call slots this pjsua build gives the process (PJSUA_MAX_CALLS after clamping)."""
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjsua_call_get_max_count.restype = ctypes.c_uint
    return int(lib.pjsua_call_get_max_count())


_LIB = ctypes.CDLL(pj._pjsua2.__file__)
_LIB.pjsua_call_get_count.restype = ctypes.c_uint
_LIB.pjsua_call_is_active.restype = ctypes.c_int
_LIB.pjsua_call_is_active.argtypes = [ctypes.c_int]
_LIB.pjmedia_transport_srtp_get_member.restype = ctypes.c_void_p
_LIB.pjmedia_transport_srtp_get_member.argtypes = [ctypes.c_void_p]


class _UdpTransportHead(ctypes.Structure):
    """The start of pjmedia's struct transport_udp (2.15.1): its base, pool and options."""
    _fields_ = [("name", ctypes.c_char * 32), ("type", ctypes.c_int), ("op", ctypes.c_void_p),
                ("user_data", ctypes.c_void_p), ("grp_lock", ctypes.c_void_p),
                ("pool", ctypes.c_void_p), ("options", ctypes.c_uint)]


_PJMEDIA_TRANSPORT_TYPE_UDP = 0
_PJMEDIA_UDP_NO_SRC_ADDR_CHECKING = 1


def _transport_name(media_tp) -> str:
    try:
        head = _UdpTransportHead.from_address(int(media_tp))
        return f"{head.name!r} type {head.type}"
    except Exception as e:
        return f"unreadable ({e})"


class _UdpTransportToSock(ctypes.Structure):
    """struct transport_udp (2.15.1) from its start to `rtp_sock`, the RTP socket's descriptor
    (the head's fields repeated flat: a nested structure would be padded to 8 bytes)."""
    _fields_ = _UdpTransportHead._fields_ + [("media_options", ctypes.c_uint),
                ("user_data", ctypes.c_void_p), ("started", ctypes.c_int),
                ("rem_rtp_addr", ctypes.c_uint32 * 7), ("rem_rtcp_addr", ctypes.c_uint32 * 7),
                ("addr_len", ctypes.c_int), ("rtp_cb", ctypes.c_void_p),
                ("rtp_cb2", ctypes.c_void_p), ("rtcp_cb", ctypes.c_void_p),
                ("tx_drop_pct", ctypes.c_uint), ("rx_drop_pct", ctypes.c_uint),
                ("ioqueue", ctypes.c_void_p), ("rtp_sock", ctypes.c_long)]


def _udp_transport(media_tp) -> int:
    """The address of the plain UDP transport under a pjsua media transport (0: not one)."""
    address = int(media_tp) if media_tp is not None else 0
    if address and _UdpTransportHead.from_address(address).name.startswith(b"srtp"):
        # pjsua wraps every media transport in its SRTP adapter (even with SRTP off).
        address = _LIB.pjmedia_transport_srtp_get_member(address) or 0
    if not address:
        return 0
    head = _UdpTransportHead.from_address(address)
    if head.type != _PJMEDIA_TRANSPORT_TYPE_UDP or not head.name.startswith(b"udp"):
        return 0
    return address


def _pin_remote(udp: int) -> bool:
    """Mark a pjsua UDP media transport NO_SRC_ADDR_CHECKING: RTP from another address than the
    SDP's is never taken as the new remote address. False when it is not a plain UDP transport
    (nothing is written then)."""
    if not udp:
        return False
    _UdpTransportHead.from_address(udp).options |= _PJMEDIA_UDP_NO_SRC_ADDR_CHECKING
    return True


def _split_host_port(text: str) -> tuple[str, int] | None:
    """'10.1.2.3:4000' or '[2001:db8::1]:4000' -> (host, port); None for no usable address."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host or int(port) == 0:
        return None
    if host in ("0.0.0.0", "::"):
        return None                      # on hold: nowhere to listen to
    return host, int(port)


def _lock_rtp_source(udp: int, local_rtp: str, remote_rtp: str) -> bool:
    """Rule 7b: connect the leg's RTP socket to the address its peer's SDP gave, so the kernel
    delivers RTP from that address only: a sprayer is neither heard (pjmedia's stream would
    otherwise follow a new source after PJMEDIA_RTP_NAT_PROBATION_CNT packets, or at once after a
    burst) nor answered. The descriptor read from the transport must be the socket bound to the
    leg's local RTP port, or nothing is done. Sending is unchanged: pjmedia gives every packet
    its destination (`sendto`), which a connected UDP socket on Linux honours."""
    remote, local = _split_host_port(remote_rtp), _split_host_port(local_rtp)
    if not udp or remote is None or local is None:
        return False
    fd = int(_UdpTransportToSock.from_address(udp).rtp_sock)
    if not 0 <= fd < 1 << 20:
        return False
    try:
        dup = os.dup(fd)
    except OSError:
        return False
    try:
        with socket.socket(fileno=dup) as s:
            if s.type != socket.SOCK_DGRAM or s.getsockname()[1] != local[1]:
                return False             # not the socket we think it is: leave it alone
            s.connect(remote)
            return True
    except OSError as e:
        log.warn("RTP source not locked to {r}: {e}", r=remote_rtp, e=e)
        return False


def _calls_in_use() -> int:
    return int(_LIB.pjsua_call_get_count())


def _id_in_use(call_id: int) -> bool:
    """Some call holds pjsua call slot `call_id` now."""
    return call_id >= 0 and bool(_LIB.pjsua_call_is_active(call_id))


class _Player(pj.AudioMediaPlayer):
    def __init__(self, reactor, done: Callable[[], None]):
        super().__init__()
        self._reactor, self._done = reactor, done

    def onEof2(self):                      # media clock thread: hand over, touch nothing
        self._reactor.callFromThread(self._done)


class Prompt:
    """One WAV file playing into one or more legs; `done` fires on the reactor at its end."""

    def __init__(self, endpoint: "Endpoint", path: str, legs: Sequence["Leg"], *, loop: bool = False):
        self.done: defer.Deferred = defer.Deferred()
        self._endpoint = endpoint
        self._loop = loop
        self._player: _Player | None = _Player(endpoint.reactor, self._eof)
        self._player.createPlayer(path, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        for leg in legs:
            aud = leg._audio()
            if aud is not None:
                self._player.startTransmit(aud)

    def _eof(self) -> None:
        # A looping player reports every wrap-around; it plays on until stopped.
        if not self._loop:
            self.stop()

    def stop(self) -> None:
        """Stop playing (idempotent); `done` fires once."""
        player, self._player = self._player, None
        if player is not None:
            # Destroy on a later turn: never from inside a pjmedia callback chain; the endpoint
            # keeps it meanwhile so that shutdown can drop it before libDestroy.
            self._endpoint._dying.append(player)
            self._endpoint.reactor.callLater(0, self._endpoint._drop_dying)
            if not self.done.called:
                self.done.callback(None)




class Recording:
    """Both directions of a bridged call mixed into one 8 kHz WAV file."""

    def __init__(self, path: str, legs: Sequence["Leg"]):
        self.path = path
        self._rec: pj.AudioMediaRecorder | None = pj.AudioMediaRecorder()
        self._rec.createRecorder(path)
        for leg in legs:
            aud = leg._audio()
            if aud is not None:
                aud.startTransmit(self._rec)

    def stop(self) -> None:
        """Close the file (idempotent): pjmedia writes the WAV header when the recorder goes."""
        rec, self._rec = self._rec, None
        del rec


_CONTACT = re.compile(r"^(?:contact|m)[ \t]*:[ \t]*(.*)$", re.I | re.M)
_PORT = re.compile(r":[0-9]+(?=$|;)")


def _redirect_target(prm) -> str:
    """The Contact pjsua follows. pjsua2 prints `targetUri` without its port, so the URI is
    taken from the 3xx's Contact header that matches it, port included."""
    printed = str(prm.targetUri).strip().strip("<>")
    try:
        msg = str(prm.e.body.tsxState.src.rdata.wholeMsg)
    except Exception:           # no message in the event: keep what pjsua2 printed
        return printed
    for header in _CONTACT.findall(msg.split("\r\n\r\n", 1)[0]):
        for value in header.split(","):
            if "<" in value:
                uri = value.split("<", 1)[1].split(">", 1)[0].strip()
            else:
                uri = value.strip().split(";", 1)[0]
            if _PORT.sub("", uri) == _PORT.sub("", printed.split(";", 1)[0]):
                return uri
    return printed


class _PjCall(pj.Call):
    """The pjsua2 call object; forwards to its Leg as plain data and nothing else."""

    def __init__(self, acc, leg: "Leg", call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self._leg = leg
        self._udp = 0                    # the leg's plain UDP media transport (rule 7)

    def onCallState(self, prm):
        ci = self.getInfo()
        self._leg._on_state(_PJ_STATES.get(ci.state, LegState.CALLING), ci.lastStatusCode,
                            ci.lastReason)

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                if self._udp and self._leg is not None and self._leg.endpoint.strict_media_source:
                    self._lock_source(i)
                self._leg._on_media(self.getAudioMedia(i))
                return

    def _lock_source(self, index: int) -> None:
        # Rule 7b, again at every media change (a re-INVITE may move the peer's media).
        try:
            remote = self.getStreamInfo(index).remoteRtpAddress
            local = self.getMedTransportInfo(index).localRtpName
            locked = _lock_rtp_source(self._udp, local, remote)
        except Exception as e:          # never out of a pjsua callback
            remote, local, locked = f"unknown ({e!r})", "", False
        if not locked:
            log.warn("leg's RTP source not locked (local {l}, remote {r}): a sprayer may be "
                     "heard", l=local, r=remote)

    def onCallRedirected(self, prm):
        # pjsua2's default stops at a 3xx; a kiosk simulator follows the front door's 302.
        leg = self._leg
        if leg is None or not leg.follow_redirects:
            return pj.PJSIP_REDIRECT_STOP
        leg._on_redirect(_redirect_target(prm))
        return pj.PJSIP_REDIRECT_ACCEPT

    def onCallTransferRequest(self, prm):
        # A worker dials only what the core authorized (the screen already refuses REFER).
        prm.statusCode = 403

    def onCallReplaceRequest(self, prm):
        prm.statusCode = 403

    def onCreateMediaTransport(self, prm):
        # pjsua hands over the leg's new RTP transport before any packet reaches it (rule 7).
        self._udp = _udp_transport(prm.mediaTp)
        if not _pin_remote(self._udp):
            tp = prm.mediaTp
            log.warn("leg's RTP transport not recognised: its remote address may switch "
                     "({t!r} {n!r})", t=tp, n=_transport_name(tp))

    def onDtmfDigit(self, prm):
        method = DtmfMethod.SIP_INFO if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO \
            else DtmfMethod.RFC4733
        self._leg._on_digit(str(prm.digit), method)


class Leg:
    """One SIP call leg. Callbacks (set by the owner) run on the reactor thread:

    `on_state(leg, state, code)`, `on_media(leg)`, `on_digit(leg, digit, method)`,
    `on_redirect(leg, target_uri)` (only when `follow_redirects`: a 3xx is followed to its
    Contact; otherwise a 3xx ends the leg). After DISCONNECTED the leg is inert: hangups and
    media calls are no-ops.
    """

    def __init__(self, endpoint: "Endpoint", call_id: int = pj.PJSUA_INVALID_ID,
                 account: "_Account | None" = None):
        self.endpoint = endpoint
        self.state = LegState.INCOMING if call_id != pj.PJSUA_INVALID_ID else LegState.CALLING
        self.status_code = 0
        self.reason = ""
        self.media_up = False
        self.on_state: Callable[[Leg, LegState, int], None] = lambda leg, s, c: None
        self.on_media: Callable[[Leg], None] = lambda leg: None
        self.on_digit: Callable[[Leg, str, DtmfMethod], None] = lambda leg, d, m: None
        self.on_redirect: Callable[[Leg, str], None] = lambda leg, target: None
        self.follow_redirects = False
        self.sip_call_id = ""            # the SIP Call-ID, once known (for the screen)
        self._aud: pj.AudioMedia | None = None
        self._account = account or endpoint.account
        self._call: _PjCall | None = _PjCall(self._account, self, call_id)
        endpoint._legs.add(self)
        endpoint._adjust_poll(active=True)

    # -- pjsua2 side (called inside pjsua2 callbacks: copy plain data, defer the rest) ---------
    def _on_state(self, state: LegState, code: int, reason: str) -> None:
        self.state, self.status_code, self.reason = state, code, reason
        if state is LegState.DISCONNECTED:
            self._aud = None
            self.media_up = False
            self.endpoint.reactor.callLater(0, self._release)
        self.endpoint.reactor.callLater(0, self.on_state, self, state, code)

    def _on_media(self, aud) -> None:
        if self.state is LegState.DISCONNECTED:
            return
        first = not self.media_up
        self._aud, self.media_up = aud, True
        if first:
            self.endpoint.reactor.callLater(0, self.on_media, self)

    def _on_digit(self, digit: str, method: DtmfMethod) -> None:
        self.endpoint.reactor.callLater(0, self.on_digit, self, digit, method)

    def _on_redirect(self, target: str) -> None:
        self.endpoint.reactor.callLater(0, self.on_redirect, self, target)

    def _release(self) -> None:
        # One reactor turn after DISCONNECTED; the endpoint drops it once its id is free.
        call, self._call = self._call, None
        if call is not None:
            call._leg = None
            self.endpoint._bury(call)
        self.endpoint._legs.discard(self)
        if self.endpoint.screen is not None and self.sip_call_id:
            self.endpoint.screen.forget(self.sip_call_id)

    def _audio(self):
        return self._aud if self.state is not LegState.DISCONNECTED else None

    # -- owner side -------------------------------------------------------------------------
    @property
    def gone(self) -> bool:
        return self.state is LegState.DISCONNECTED

    def call_id(self) -> int:
        return self._call.getId() if self._call is not None and not self.gone else -1

    def dial(self, uri: str, headers: dict[str, str] | None = None) -> None:
        prm = pj.CallOpParam(True)
        for name, value in (headers or {}).items():
            h = pj.SipHeader()
            h.hName, h.hValue = name, value
            prm.txOption.headers.append(h)
        self.endpoint._shuffle_rtp(self._account)
        self._call.makeCall(uri, prm)
        self.sip_call_id = str(self._call.getInfo().callIdString)
        if self.endpoint.screen is not None:
            self.endpoint.screen.dialled(self.sip_call_id)

    def ring(self) -> None:
        self._answer(180)

    def answer(self) -> None:
        self._answer(200)

    def _answer(self, code: int) -> None:
        if self.gone or self._call is None:
            return
        prm = pj.CallOpParam()
        prm.statusCode = code
        self._call.answer(prm)

    def reject(self, code: int, headers: dict[str, str] | None = None) -> None:
        """Refuse an unanswered inbound leg with a final response (e.g. 503)."""
        self.hangup(code, headers)

    def hangup(self, code: int = 0, headers: dict[str, str] | None = None) -> None:
        if self.gone or self._call is None:
            return
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        for name, value in (headers or {}).items():
            h = pj.SipHeader()
            h.hName, h.hValue = name, value
            prm.txOption.headers.append(h)
        try:
            self._call.hangup(prm)
        except pj.Error:
            pass  # already on its way down

    def send_digits(self, digits: str, method: DtmfMethod = DtmfMethod.RFC4733) -> None:
        if self.gone or self._call is None:
            return
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = (pj.PJSUA_DTMF_METHOD_SIP_INFO if method is DtmfMethod.SIP_INFO
                      else pj.PJSUA_DTMF_METHOD_RFC2833)
        self._call.sendDtmf(prm)

    def connect_to(self, other: "Leg") -> None:
        """Send this leg's incoming audio to `other` (one direction of a bridge)."""
        a, b = self._audio(), other._audio()
        if a is not None and b is not None:
            a.startTransmit(b)

    def disconnect_from(self, other: "Leg") -> None:
        a, b = self._audio(), other._audio()
        if a is not None and b is not None:
            a.stopTransmit(b)

    def local_tag(self) -> str:
        return str(id(self))


class _Account(pj.Account):
    def __init__(self, endpoint: "Endpoint"):
        super().__init__()
        self._endpoint = endpoint
        self.config: pj.AccountConfig | None = None    # as created (rule 8: its RTP window moves)

    def open(self, config: pj.AccountConfig, default: bool) -> None:
        self.config = config
        self.create(config, default)

    def onIncomingCall(self, prm):
        src = str(prm.rdata.srcAddress)
        invite = parse_invite(str(prm.rdata.wholeMsg), src)
        leg = Leg(self._endpoint, prm.callId)
        leg.sip_call_id = invite.headers.get("call-id", "")
        if self._endpoint.screen is not None:
            self._endpoint.screen.admit(leg.sip_call_id, invite.source_ip)
        self._endpoint.on_incoming(leg, invite)


class Endpoint:
    """The process's pjsua2 endpoint: one UDP SIP transport, one account, an RTP port range."""

    def __init__(self, reactor, *, sip_port: int, rtp_port_min: int, rtp_port_max: int,
                 host: str = "127.0.0.1", user: str = "worker", log_level: int = 0,
                 on_incoming: Callable[[Leg, Incoming], None] | None = None,
                 poll_idle: float = POLL_IDLE_SECONDS, poll_active: float = POLL_ACTIVE_SECONDS,
                 screen: Screen | None = None,
                 on_screened: Callable[[str, object, str], None] | None = None,
                 strict_media_source: bool = False):
        if rtp_port_max <= rtp_port_min:
            raise ValueError(f"RTP port range {rtp_port_min}-{rtp_port_max} is empty")
        self.reactor = reactor
        self.host, self.sip_port = host, sip_port
        self.rtp_port_min, self.rtp_port_max = rtp_port_min, rtp_port_max
        self.user = user
        self.log_level = log_level
        self.on_incoming = on_incoming or (lambda leg, inv: leg.reject(603))
        self.poll_idle, self.poll_active = poll_idle, poll_active
        self._legs: set[Leg] = set()
        self._ep: pj.Endpoint | None = None
        self.account: _Account | None = None
        self._next = None
        self._accounts: dict[str, _Account] = {}
        self._graveyard: list[_PjCall] = []
        self.max_legs = 0
        self._dying: list = []           # stopped players, dropped on the next turn
        self.screen = screen
        self.strict_media_source = strict_media_source    # rule 7b
        self._rtp_free = rtp_ports.udp_free(host)
        self._filter = (RequestFilter(screen, on_stop=on_screened,
                                      on_new_call=lambda: self._shuffle_rtp(self.account))
                        if screen is not None else None)

    def start(self) -> None:
        ep = self._ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 1024          # clamped to the build's PJSUA_MAX_CALLS
        cfg.uaConfig.userAgent = "ics-switch"
        cfg.logConfig.level = self.log_level
        cfg.logConfig.consoleLevel = self.log_level
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        if self._filter is not None:
            self._filter.install()
        self.max_legs = _max_calls()
        tcfg = pj.TransportConfig()
        tcfg.port = self.sip_port
        tcfg.boundAddress = self.host
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, 255 if codec.codecId in KEEP_CODECS else 0)
        self.account = _Account(self)
        self.account.open(self._account_config(self.user), True)
        self._shuffle_rtp(self.account)
        self._next = self.reactor.callLater(0, self._tick)

    @property
    def legs_in_use(self) -> int:
        """Call slots pjsua holds now (including legs disconnecting this turn)."""
        return _calls_in_use()

    def new_leg(self, user: str | None = None) -> Leg:
        """An outbound leg, not yet dialled (`leg.dial(uri)`); From carries `user` if given."""
        return Leg(self, account=self._account_for(user) if user else None)

    def _account_for(self, user: str) -> "_Account":
        acc = self._accounts.get(user)
        if acc is None and len(self._accounts) >= ACCOUNTS_MAX:
            in_use = {leg._account for leg in self._legs}
            idle = next((u for u, a in self._accounts.items() if a not in in_use), None)
            if idle is None:
                raise RuntimeError(f"more than {ACCOUNTS_MAX} caller identities in use at once")
            self._accounts.pop(idle).shutdown()
        if acc is None:
            acc = self._accounts[user] = _Account(self)
            acc.open(self._account_config(user), False)
        return acc

    def _account_config(self, user: str) -> pj.AccountConfig:
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@{self.host}:{self.sip_port}"
        acfg.mediaConfig.transportConfig.port = self.rtp_port_min
        acfg.mediaConfig.transportConfig.portRange = self.rtp_port_max - self.rtp_port_min
        acfg.mediaConfig.transportConfig.boundAddress = self.host
        acfg.mediaConfig.transportConfig.randomizePort = False   # rule 8 draws every port
        return acfg

    def _shuffle_rtp(self, account: "_Account | None") -> None:
        """Rule 8: the next leg of `account` binds a random free pair of the worker's range."""
        if account is None or account.config is None or self._ep is None:
            return
        tc = account.config.mediaConfig.transportConfig
        window = rtp_ports.pick_pair(self.rtp_port_min, self.rtp_port_max, self._rtp_free,
                                     avoid=tc.port)
        if window is None:
            return                       # every pair busy: pjsua searches (and fails) itself
        tc.port, tc.portRange = window.port, window.port_range
        try:
            account.modify(account.config)
        except pj.Error as e:
            log.warn("RTP port window not moved: {e}", e=e.info())

    def play(self, path: str, legs: Sequence[Leg], *, loop: bool = False) -> Prompt:
        return Prompt(self, path, legs, loop=loop)

    def record(self, path: str, legs: Sequence[Leg]) -> Recording:
        return Recording(path, legs)

    def _drop_dying(self) -> None:
        self._dying = []

    def _bury(self, call: _PjCall) -> None:
        self._graveyard.append(call)
        self._sweep()

    def _sweep(self) -> None:
        """Drop every released Call whose id no live call holds (see rule 2)."""
        if not self._graveyard:
            return
        keep = [c for c in self._graveyard if _id_in_use(c.getId())]
        self._graveyard = keep    # the others lose their last reference here

    def _tick(self) -> None:
        # A callLater chain rather than a LoopingCall: the cadence changes with the load, and a
        # poll due later than the active cadence is brought forward when a leg appears.
        self._next = None
        if self._ep is None:
            return
        self._sweep()
        self._ep.libHandleEvents(0)
        if self._ep is not None and self._next is None:
            self._next = self.reactor.callLater(
                self.poll_active if self._legs else self.poll_idle, self._tick)

    def _adjust_poll(self, active: bool | None = None) -> None:
        if active is None:
            active = bool(self._legs)
        nxt = self._next
        if active and nxt is not None and nxt.active() and \
                nxt.getTime() - self.reactor.seconds() > self.poll_active:
            nxt.reset(self.poll_active)

    @defer.inlineCallbacks
    def shutdown(self):
        """Hang up every leg, wait for them to go, then destroy the library (idempotent)."""
        if self._ep is None:
            return
        for leg in list(self._legs):
            leg.hangup()
        deadline = self.reactor.seconds() + SHUTDOWN_SECONDS_MAX
        while self._legs and self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, 0.02, lambda: None)
        for leg in list(self._legs):      # never answered a BYE: drop them before libDestroy
            leg._release()
        self._ep.hangupAllCalls()
        while self._graveyard and self.reactor.seconds() < deadline + SHUTDOWN_SECONDS_MAX:
            self._sweep()
            if self._graveyard:
                yield task.deferLater(self.reactor, 0.02, lambda: None)
        self._graveyard = []             # a Call must not outlive libDestroy (#4353)
        self._dying = []                 # nor a player (its port is removed from the bridge)
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        for acc in [self.account, *self._accounts.values()]:
            acc.shutdown()
        self.account, self._accounts = None, {}
        gc.collect()
        if self._filter is not None:
            self._filter.uninstall()
        ep, self._ep = self._ep, None
        ep.libDestroy()
        del ep
