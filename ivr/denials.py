"""Why the core refuses a call: the one list of deny reasons, from which the others derive.

A reason's value is its id everywhere it travels: the wire (Authorize's `reason`,
switch.wire.protocol.DENY_REASONS), the call policy's ladder (switch.rules.policy.Deny, in
precedence order), the IVR's prompt ``deny_<reason>`` (ivr.catalog.DENY_REASONS) and the metric
label of an authorization's outcome (ops.metrics). Never rename or remove one: a test checks each
has a prompt in every language, a metric label and a place on the wire. It lives on the IVR's floor,
the lowest that says it, so that the switch, the flows and the metrics all read it from here.
"""

from __future__ import annotations

import enum

__all__ = ["DenyReason"]


class DenyReason(enum.StrEnum):
    # Decided by the call policy, in its precedence order (switch.rules.policy.Deny).
    KIOSK_UNKNOWN = "kiosk_unknown"
    INMATE_SUSPENDED = "inmate_suspended"
    INVALID_NUMBER = "invalid_number"
    REFUSED_NUMBER_CLASS = "refused_number_class"
    BLOCKED = "blocked"
    NOT_APPROVED = "not_approved"
    OUTSIDE_CALLING_HOURS = "outside_calling_hours"
    DESTINATION_CLOSED = "destination_closed"  # the tariff's closed band: not callable now
    QUOTA_USED = "quota_used"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    # Decided at the edge, before the policy runs (the PIN, the kiosk's address, the database).
    PIN_LOCKED = "pin_locked"
    PIN_INVALID = "pin_invalid"
    KIOSK_SOURCE_MISMATCH = "kiosk_source_mismatch"  # the caller is not where its kiosk is
    SYSTEM_UNAVAILABLE = "system_unavailable"
