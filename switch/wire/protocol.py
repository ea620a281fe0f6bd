"""The wire between the core and its media workers: AMP commands, each with who sends it and why.

Workers speak to the core over a local socket (TCP on loopback or a Unix socket). A worker never
opens a database connection: everything it needs to run a call arrives in these answers, and
everything it observes goes back as these commands. Every command that moves money is idempotent on
(call_id, period) or call_id, so a worker may resend after a lost answer and never pay twice.

Times on the wire are seconds of *talk time* since the bridge (integers): a `grant_until` of 120
means the worker may keep the legs bridged until 120 s after the called party accepted, not longer.
"""
from __future__ import annotations

from typing import ClassVar

from twisted.protocols import amp

from ivr.denials import DenyReason
from switch.errors import SwitchError

__all__ = [
    "WireError", "Challenge", "Hello", "AdmitKiosk", "CheckPin", "Authorize", "Accept", "Continue", "End", "Block", "Heartbeat",
    "Terminate",
    "UnknownCall", "CallAlreadyEnded", "KioskUnknown", "InsufficientFunds", "CoreUnavailable",
    "BadRequest", "NotAuthenticated", "CoreBusy", "SetupFailed", "SETUP_FAILURES",
    "DENY_REASONS", "DISPOSITIONS",
]

# Reasons the core may refuse a call (ivr.denials.DenyReason, the one list); the IVR has one
# prompt per reason.
DENY_REASONS: tuple[str, ...] = tuple(r.value for r in DenyReason)

# How a call ended, as the worker reports it in End and the CDR records it.
DISPOSITIONS = (
    "completed",        # talked, then someone hung up
    "grant_exhausted",  # the worker ended it when the last grant ran out (money or time)
    "refused",          # called party pressed the refuse key
    "blocked",          # called party pressed the block key
    "no_answer",        # called party did not answer or did not choose
    "busy",
    "failed",           # trunk or media failure before talk
    "denied",           # the core refused the authorization
    "abandoned",        # the kiosk hung up before the called party accepted
    "core_unreachable", # the worker ended the call at the end of its grant without the core
    "worker_lost",      # the core closed a call whose worker went silent (written by the core)
)


class WireError(SwitchError):
    """An answer of the core that is an error, declared once: the core raises these very classes
    and the worker receives them (AMP carries `code` and the message; nothing else crosses).

    Fields for people and logs on the raising side: `what` (the condition), `where` (the call or
    kiosk it concerns) and `value` (the offending value); on the receiving side only the message
    is known. The message names the condition first, so it reads alone."""

    code: ClassVar[bytes]

    def __init__(self, message: str = "", *, where: str | None = None,
                 value: object = None) -> None:
        condition = self.code.decode().lower()
        super().__init__(message or condition, what=condition, where=where, value=value)


class UnknownCall(WireError):
    """The call id was never authorized by this core (or has been purged)."""
    code = b"UNKNOWN_CALL"


class CallAlreadyEnded(WireError):
    """Accept/Continue for a call the core has already ended (e.g. closed as worker_lost)."""
    code = b"CALL_ALREADY_ENDED"


class KioskUnknown(WireError):
    """The kiosk identity in the request is not provisioned."""
    code = b"KIOSK_UNKNOWN"


class InsufficientFunds(WireError):
    """Accept could not hold the first billing period: the account no longer covers it."""
    code = b"INSUFFICIENT_FUNDS"


class CoreUnavailable(WireError):
    """The core could not reach its database; the worker applies the fail-safe rule."""
    code = b"CORE_UNAVAILABLE"


class BadRequest(WireError):
    """An argument is malformed (e.g. a negative duration); the message names it."""
    code = b"BAD_REQUEST"


class CoreBusy(WireError):
    """The core is overloaded and refused the request unprocessed (nothing written): ask again
    later. A worker refuses the kiosk leg with 503 and Retry-After if it has not answered it."""
    code = b"CORE_BUSY"


class NotAuthenticated(WireError):
    """The connection has not proved it is a worker this node started (Challenge, then Hello)."""
    code = b"NOT_AUTHENTICATED"


def _errors(*declared: type[WireError]) -> dict[type[Exception], bytes]:
    """A command's `errors`: the ones it declares and those every command may answer."""
    return {e: e.code for e in (*declared, CoreUnavailable, BadRequest, NotAuthenticated)}


_COMMON_ERRORS = _errors()


class Challenge(amp.Command):
    """Worker -> core, first on every connection: a fresh nonce for this connection's Hello.

    The only command an unauthenticated connection may send besides Hello; every other command
    is refused with NOT_AUTHENTICATED until Hello's proof is accepted (switch.wire.amp_auth)."""
    arguments: list = []
    response = [(b"nonce", amp.String())]
    errors = dict(_COMMON_ERRORS)


class Hello(amp.Command):
    """Worker -> core, once per connection: who I am and how many calls I can hold.

    `capacity` is the number of *calls* (kiosk leg + outbound leg each) the worker's pjsua2 build
    admits, read at start-up. `sip_port` is where kiosks are redirected to reach it.

    `proof` is HMAC-SHA256 of this connection's Challenge nonce and these arguments under the key
    the supervisor gave this worker process (switch.wire.amp_auth). Refused (NOT_AUTHENTICATED) without
    a valid proof, for a worker id or port the supervisor did not start, or for an id another live
    connection already holds.
    """
    arguments = [(b"worker_id", amp.Unicode()), (b"capacity", amp.Integer()),
                 (b"sip_port", amp.Integer()), (b"pid", amp.Integer()),
                 (b"proof", amp.String(optional=True))]
    response = [(b"node", amp.Unicode())]
    errors = dict(_COMMON_ERRORS)


class Heartbeat(amp.Command):
    """Worker -> core, every few seconds: the calls it holds. A worker silent for longer than
    `core.worker_silence_seconds` is presumed dead and its calls are closed as worker_lost.
    `ending_calls`: calls that ended on the worker whose End the core has not answered yet
    (queued, resent): still the worker's news, so the core does not close them as lost meanwhile;
    they hold no slot (the supervisor counts only `active_calls`)."""
    arguments = [(b"worker_id", amp.Unicode()), (b"active_calls", amp.ListOf(amp.Unicode())),
                 (b"ending_calls", amp.ListOf(amp.Unicode(), optional=True))]
    response = [(b"unknown_calls", amp.ListOf(amp.Unicode()))]
    errors = dict(_COMMON_ERRORS)


class AdmitKiosk(amp.Command):
    """Worker -> core, before it answers a kiosk leg that carries no PIN: may this kiosk call from
    here? So a caller that is not the kiosk it claims gets 403 and never hears the menu.

    `source_ip` is as in CheckPin. An unknown kiosk is refused with KIOSK_UNKNOWN; a kiosk with
    registered sources called from another address with KIOSK_UNKNOWN whose message starts with
    ``kiosk_source_mismatch`` (audited as CheckPin's). A kiosk leg carrying the PIN header asks
    CheckPin instead, which makes the same check first. CORE_BUSY: the core has no room for
    another call set-up; the worker answers the kiosk 503 with Retry-After.
    """
    arguments = [(b"kiosk", amp.Unicode()), (b"source_ip", amp.Unicode(optional=True))]
    response = [(b"admitted", amp.Boolean())]
    errors = _errors(KioskUnknown, CoreBusy)


class CheckPin(amp.Command):
    """Worker -> core after the inmate keyed a PIN on a kiosk.

    Answers ok with the inmate's id, language and recorded-name path; or not ok with the attempts
    left, and `locked` once the PIN is locked (the IVR plays the lockout prompt). Every attempt is
    audited by the core.

    `source_ip` is the address the kiosk leg's INVITE arrived from, read from the transport (never
    a header). A kiosk with registered sources is refused from any other address with
    KIOSK_UNKNOWN, whose message starts with ``kiosk_source_mismatch`` (403 at the SIP edge). A
    kiosk or source with too many failed guesses is throttled: not ok, not locked, 0 attempts
    left. On ok, `pin_session` is the token the one Authorize of this call must present.
    CORE_BUSY: the core is overloaded and did not check the PIN (nothing audited): the worker
    refuses a kiosk leg it has not answered with 503 and Retry-After.
    """
    arguments = [(b"kiosk", amp.Unicode()), (b"pin", amp.Unicode()),
                 (b"source", amp.Unicode(optional=True)),
                 (b"source_ip", amp.Unicode(optional=True))]
    response = [(b"ok", amp.Boolean()), (b"locked", amp.Boolean()),
                (b"attempts_left", amp.Integer()), (b"inmate_id", amp.Unicode(optional=True)),
                (b"language", amp.Unicode(optional=True)),
                (b"pin_session", amp.Unicode(optional=True))]
    errors = _errors(KioskUnknown, CoreBusy)


class Authorize(amp.Command):
    """Worker -> core: may this inmate call this number now, paid how, for how long?

    On allow the answer carries everything the worker needs for the rest of the call: the call id
    (the idempotency root of all its money), the trunks to try in order, the price per minute to
    announce, whether to record, and what the called-party IVR says. On deny, `reason` is one of
    DENY_REASONS and the worker plays its prompt.

    `pin_session` is CheckPin's token for this kiosk, inmate, source_ip and worker (used up by
    this request); without it the answer is deny ``pin_invalid``. A `source_ip` outside the
    kiosk's registered sources is denied ``kiosk_source_mismatch`` (403 at the SIP edge).
    """
    arguments = [(b"kiosk", amp.Unicode()), (b"inmate_id", amp.Unicode()),
                 (b"number", amp.Unicode()), (b"worker_id", amp.Unicode(optional=True)),
                 (b"source_ip", amp.Unicode(optional=True)),
                 (b"pin_session", amp.Unicode(optional=True))]
    response = [
        (b"allow", amp.Boolean()), (b"reason", amp.Unicode(optional=True)),
        (b"call_id", amp.Unicode(optional=True)), (b"e164", amp.Unicode(optional=True)),
        (b"trunks", amp.ListOf(amp.Unicode(), optional=True)),
        (b"rate_micros_per_minute", amp.Integer(optional=True)),
        (b"max_seconds", amp.Integer(optional=True)),
        (b"record", amp.Boolean(optional=True)), (b"privileged", amp.Boolean(optional=True)),
        (b"passive_accept", amp.Boolean(optional=True)),
        (b"language", amp.Unicode(optional=True)),
        (b"inmate_name", amp.Unicode(optional=True)),
        (b"inmate_name_wav", amp.Unicode(optional=True)),
        (b"facility_name", amp.Unicode(optional=True)),
        (b"funding", amp.Unicode(optional=True)),
    ]
    errors = _errors(KioskUnknown)


class Accept(amp.Command):
    """Worker -> core when the called party accepted: hold the first billing period.

    `grant_until` is the talk second up to which the worker may bridge; `last` says no further
    grant will come (money, schedule, quota or the facility limit), so the worker plays the
    one-minute warning at grant_until - 60 and hangs up at grant_until. Idempotent on call_id.
    """
    arguments = [(b"call_id", amp.Unicode())]
    response = [(b"grant_until", amp.Integer()), (b"last", amp.Boolean()),
                (b"warn_at", amp.Integer(optional=True))]
    errors = _errors(UnknownCall, CallAlreadyEnded, InsufficientFunds)


class Continue(amp.Command):
    """Worker -> core at the end of billing period `period` (1-based): post it, hold the next.

    The answer is the new `grant_until` (cumulative talk seconds) and whether it is the last.
    Idempotent on (call_id, period): a resend after a lost answer gets the same answer.
    """
    arguments = [(b"call_id", amp.Unicode()), (b"period", amp.Integer()),
                 (b"talk_seconds", amp.Integer())]
    response = [(b"grant_until", amp.Integer()), (b"last", amp.Boolean()),
                (b"warn_at", amp.Integer(optional=True))]
    errors = _errors(UnknownCall, CallAlreadyEnded)


class End(amp.Command):
    """Worker -> core when the call is over (any disposition, before or after accept).

    The core posts what was used (rounded per the tariff), voids the rest of the hold and writes
    the CDR. A repeated End is answered from the first. `talk_seconds` is 0 for calls never bridged.
    """
    arguments = [(b"call_id", amp.Unicode()), (b"talk_seconds", amp.Integer()),
                 (b"disposition", amp.Unicode()),
                 (b"recording", amp.Unicode(optional=True)),
                 (b"trunk", amp.Unicode(optional=True)),
                 (b"sip_code", amp.Integer(optional=True))]
    response = [(b"billed_seconds", amp.Integer()), (b"charged_micros", amp.Integer()),
                (b"cdr_id", amp.Unicode())]
    errors = _errors(UnknownCall)


class Block(amp.Command):
    """Worker -> core when the called party pressed the block key: block this number for calls
    from this facility (scope "facility") or from this inmate only (scope "inmate")."""
    arguments = [(b"call_id", amp.Unicode()), (b"scope", amp.Unicode())]
    response = [(b"blocked", amp.Boolean())]
    errors = _errors(UnknownCall)


# Why a kiosk call ended before any trunk was dialled, as its worker reports it (SetupFailed).
SETUP_FAILURES = (
    "source_refused",   # 403: the kiosk is not where its registered sources say
    "kiosk_unknown",    # 403: no such active kiosk
    "core_busy",        # 503 before answer: the core shed the PIN check (overloaded)
    "core_unreachable", # the core did not answer in time (or there was no link)
    "pin_refused",      # wrong, locked, throttled or malformed PIN
    "denied",           # Authorize refused the call (its reason is the detail)
    "no_input",         # the inmate keyed nothing in time
    "abandoned",        # the kiosk hung up first
    "failed",           # anything else (the detail says what)
)


class SetupFailed(amp.Command):
    """Worker -> core when a kiosk call ends before any trunk was dialled: why (one of
    SETUP_FAILURES) and, for people, the detail (e.g. "CheckPin unanswered after 3.0s"). The core
    counts it (ics_call_setup_failures_total) and logs it, so no call ends unexplained. Sent as a
    report (resent until answered): `setup_id`, unique per call, lets the core count a resend
    once (`counted` is false for a repeat). A call the core authorized also sends End."""
    arguments = [(b"kiosk", amp.Unicode()), (b"reason", amp.Unicode()),
                 (b"detail", amp.Unicode(optional=True)),
                 (b"source_ip", amp.Unicode(optional=True)),
                 (b"setup_id", amp.Unicode(optional=True))]
    response = [(b"counted", amp.Boolean())]
    errors = dict(_COMMON_ERRORS)


class Terminate(amp.Command):
    """Core -> worker: end this call now (an operator's request or a revoked grant)."""
    arguments = [(b"call_id", amp.Unicode()), (b"reason", amp.Unicode())]
    response = [(b"found", amp.Boolean())]
    errors = {}
