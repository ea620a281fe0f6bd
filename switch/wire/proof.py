# mypy: disable-error-code="no-untyped-call"
# (twisted.protocols.amp's argument types are untyped; every other check applies.)
"""The wire of proof calls: the core asks a worker to ring a number and speak a one-time code.

A family holder proves they own a number by hearing a code on it (families.number_proof). The
core picks a worker and sends `PlaceProofCall`; the worker dials the number through the trunks
given, runs the proof flow (ivr.flows.proof) and reports `ProofCallEnded`, resent until answered
(idempotent on proof_id), like End.

Trust: like every call a worker places, a proof call exists only because the core asked for it.
`PlaceProofCall` travels on the connection the worker opened and proved with Hello, and carries a
`mac`: HMAC-SHA256, under the key that worker proved itself with, of every argument. A worker
dials nothing whose MAC does not verify, and each proof id once (a replay is refused). A worker
only reports the proofs the core sent it: the core refuses an end report from any other worker.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from twisted.protocols import amp

from switch.errors import SwitchError
from switch.wire import protocol as wire

__all__ = ["PlaceProofCall", "ProofCallEnded", "NoRoom", "OUTCOMES", "proof_mac", "mac_ok",
           "CODE_PATTERN", "E164_PATTERN"]

# How a proof call ended, as the worker reports it (and families.number_proof records it).
OUTCOMES = (
    "spoken",      # the code was said in full at least once
    "hung_up",     # answered, then hung up before the code was said in full
    "no_answer",
    "busy",
    "failed",      # every trunk failed, or media never came up
)
_DOMAIN = b"ics-proof-call-v1"
CODE_PATTERN = re.compile(r"^[0-9]{4,10}$")
E164_PATTERN = re.compile(r"^\+[1-9][0-9]{1,14}$")


class NoRoom(SwitchError):
    """The worker has no call slot for a proof call now (or is draining): ask another."""


class PlaceProofCall(amp.Command):
    """Core -> worker: ring `e164` through `trunks` (in order) and speak `code` in `language`.

    `caller_name` is what the call says it is ("This is <caller_name> calling ..."); empty for
    the catalog's default. Answers `placed` once the first trunk is being dialled. Errors:
    NO_ROOM (no free slot: try another worker), NOT_AUTHENTICATED (bad MAC or a proof id seen
    before: nothing is dialled), BAD_REQUEST (a malformed number, code, language or trunk list).
    """
    arguments = [(b"proof_id", amp.Unicode()), (b"e164", amp.Unicode()),
                 (b"trunks", amp.ListOf(amp.Unicode())), (b"language", amp.Unicode()),
                 (b"code", amp.Unicode()), (b"caller_name", amp.Unicode()),
                 (b"mac", amp.String())]
    response = [(b"placed", amp.Boolean())]
    errors = {NoRoom: b"NO_ROOM", wire.NotAuthenticated: b"NOT_AUTHENTICATED",
              wire.BadRequest: b"BAD_REQUEST"}


class ProofCallEnded(amp.Command):
    """Worker -> core when a proof call is over: its outcome (one of OUTCOMES), how long it was
    up, the trunk and final SIP code. Idempotent on proof_id; UNKNOWN_CALL for a proof the core
    did not send this worker (final: the worker stops resending)."""
    arguments = [(b"proof_id", amp.Unicode()), (b"outcome", amp.Unicode()),
                 (b"talk_seconds", amp.Integer()), (b"trunk", amp.Unicode(optional=True)),
                 (b"sip_code", amp.Integer(optional=True))]
    response = [(b"recorded", amp.Boolean())]
    errors = {wire.UnknownCall: b"UNKNOWN_CALL", wire.BadRequest: b"BAD_REQUEST",
              wire.CoreUnavailable: b"CORE_UNAVAILABLE",
              wire.NotAuthenticated: b"NOT_AUTHENTICATED"}


def proof_mac(key: bytes, *, proof_id: str, e164: str, trunks: list[str], language: str,
              code: str, caller_name: str) -> bytes:
    """HMAC-SHA256 of every PlaceProofCall argument (each length-prefixed: no field can borrow
    bytes from its neighbour)."""
    parts = [proof_id, e164, language, code, caller_name, str(len(trunks)), *trunks]
    message = _DOMAIN + b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def mac_ok(key: bytes | None, mac: bytes, **fields: object) -> bool:
    if not key or not mac:
        return False
    return hmac.compare_digest(proof_mac(key, **fields), mac)  # type: ignore[arg-type]
