"""A pjsip module, registered through ctypes, that shows every incoming request to the worker's
`Screen` before pjsip's transaction layer (and so before pjsua) acts on it.

pjsua2 exposes no hook below the call callbacks, and some requests do their harm before any
callback runs (an ACK that aborts the process, a REFER pjsua answers 202 on its own). So this
module is registered with `pjsip_endpt_register_module` at a priority just above the transaction
layer: its `on_rx_request` sees each request first and either lets it through or consumes it,
answering statelessly when the screen names a code. Responses are only read, to learn the peer
of the calls the worker placed.

The request text and source come from `pjsip_rx_data`, whose layout is declared below for the
wheel's pjproject (2.15.1, PJSIP_MAX_PKT_LEN 4000). The layout is checked on every message
(`msg_info.msg_buf` must point into `pkt_info.packet`); if it ever does not, the module fails
closed: it drops everything and says so once, rather than let unscreened requests through.

Rules of use: the endpoint must be created and initialized first (`install(ep_screen)` after
`libInit`), the callbacks run on the thread that polls pjsua (the reactor's), and `uninstall()`
must run before `libDestroy()` (pjsip keeps a pointer to the module structure).
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable

import pjsua2 as pj
from twisted.logger import Logger

from switch.worker.screen import Screen, parse_call_id, parse_request

__all__ = ["RequestFilter", "PRIORITY"]

log = Logger()

PRIORITY = 15                    # PJSIP_MOD_PRIORITY_TSX_LAYER (16) - 1: before any transaction
PJSIP_MAX_PKT_LEN = 4000         # pjproject's default, as built into the PyPI wheel
PJ_INET6_ADDRSTRLEN = 46

_lib = ctypes.CDLL(pj._pjsua2.__file__)


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


_RX = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_TX = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_TSX = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_LOAD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_VOID = ctypes.CFUNCTYPE(ctypes.c_int)


class _Module(ctypes.Structure):
    """struct pjsip_module (pjsip/sip_module.h)."""
    _fields_ = [("prev", ctypes.c_void_p), ("next", ctypes.c_void_p), ("name", _PjStr),
                ("id", ctypes.c_int), ("priority", ctypes.c_int),
                ("load", _LOAD), ("start", _VOID), ("stop", _VOID), ("unload", _VOID),
                ("on_rx_request", _RX), ("on_rx_response", _RX),
                ("on_tx_request", _TX), ("on_tx_response", _TX), ("on_tsx_state", _TSX)]


class _OpKey(ctypes.Structure):
    """pjsip_rx_data_op_key: a pj_ioqueue_op_key_t (34 pointers) and the rdata pointer."""
    _fields_ = [("internal", ctypes.c_void_p * 34), ("rdata", ctypes.c_void_p)]


class _RxHead(ctypes.Structure):
    """The start of struct pjsip_rx_data (pjsip/sip_transport.h): tp_info, pkt_info, msg_info."""
    _fields_ = [("pool", ctypes.c_void_p), ("transport", ctypes.c_void_p),
                ("tp_data", ctypes.c_void_p), ("op_key", _OpKey),
                ("ts_sec", ctypes.c_long), ("ts_msec", ctypes.c_long),
                ("packet", ctypes.c_char * PJSIP_MAX_PKT_LEN), ("zero", ctypes.c_uint32),
                ("len", ctypes.c_ssize_t), ("src_addr", ctypes.c_uint32 * 7),
                ("src_addr_len", ctypes.c_int), ("src_name", ctypes.c_char * PJ_INET6_ADDRSTRLEN),
                ("src_port", ctypes.c_int),
                ("msg_buf", ctypes.c_void_p), ("msg_len", ctypes.c_int)]


_lib.pjsua_get_pjsip_endpt.restype = ctypes.c_void_p
_lib.pjsip_endpt_register_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_lib.pjsip_endpt_unregister_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_lib.pjsip_endpt_respond_stateless.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]

_PACKET_OFFSET = _RxHead.packet.offset


def _message(rdata: int) -> tuple[str, str] | None:
    """(message text, source IP) of an rx_data, or None when the layout does not hold."""
    rx = _RxHead.from_address(rdata)
    if rx.msg_buf != rdata + _PACKET_OFFSET or not 0 < rx.msg_len <= PJSIP_MAX_PKT_LEN:
        return None
    text = ctypes.string_at(rx.msg_buf, rx.msg_len).decode("utf-8", "replace")
    return text, rx.src_name.decode("ascii", "replace")


class RequestFilter:
    """The module's lifetime: `install()` after libInit, `uninstall()` before libDestroy."""

    def __init__(self, screen: Screen, *,
                 on_stop: Callable[[str, object, str], None] | None = None,
                 on_new_call: Callable[[], None] | None = None):
        self.screen = screen
        self.on_stop = on_stop or (lambda source, verdict, text: None)
        # Runs for each new INVITE let through, before pjsua binds the call's RTP port.
        self.on_new_call = on_new_call or (lambda: None)
        self._mod: _Module | None = None
        self._endpt = None
        self._layout_broken = False

    def install(self) -> None:
        mod = _Module()
        self._name = ctypes.create_string_buffer(b"mod-ics-screen")
        mod.name = _PjStr(ctypes.cast(self._name, ctypes.c_char_p), len(b"mod-ics-screen"))
        mod.id = -1
        mod.priority = PRIORITY
        # Keep every CFUNCTYPE alive as long as the module: pjsip holds raw pointers to them.
        self._callbacks = (_RX(self._on_rx_request), _RX(self._on_rx_response))
        mod.on_rx_request, mod.on_rx_response = self._callbacks
        self._endpt = _lib.pjsua_get_pjsip_endpt()
        status = _lib.pjsip_endpt_register_module(self._endpt, ctypes.byref(mod))
        if status != 0:
            raise RuntimeError(f"pjsip refused the screening module (status {status})")
        self._mod = mod

    def uninstall(self) -> None:
        if self._mod is not None:
            _lib.pjsip_endpt_unregister_module(self._endpt, ctypes.byref(self._mod))
            self._mod = None

    def _on_rx_request(self, rdata: int) -> int:
        try:
            got = _message(rdata)
            if got is None:
                if not self._layout_broken:
                    self._layout_broken = True
                    log.critical("pjsip_rx_data layout unexpected: dropping every request")
                return 1
            text, source = got
            verdict = self.screen.request(text, source)
            if verdict.passes:
                if text.startswith("INVITE"):
                    req = parse_request(text)
                    if req is not None and not req.to_tag:
                        self.on_new_call()
                return 0
            if verdict.code:
                _lib.pjsip_endpt_respond_stateless(self._endpt, rdata, verdict.code,
                                                   None, None, None)
            self.on_stop(source, verdict, text)
            return 1
        except Exception:             # never let an exception reach pjsip's C stack
            log.failure("screening a request failed; dropped")
            return 1

    def _on_rx_response(self, rdata: int) -> int:
        try:
            got = _message(rdata)
            if got is not None and self.screen.dialogs:
                text, source = got
                call_id = parse_call_id(text)
                if call_id:
                    self.screen.answered(call_id, source)
        except Exception:
            log.failure("reading a response failed")
        return 0
