"""The families' refusals, each naming the field at fault: bad input, a conflict with the current
state, something not found, and a login refused (wrong, unverified or throttled).

One family, as asyncpg has its own: every error the families package raises is a `FamilyError`
(fees, passwords, providers and settings included) with `what` went wrong (its message),
`where` (the field) and the offending `value` when there is one; ``str(e)`` is for people.

Each refusal also carries a stable `code` (one of CODES) and the values its text needs (`params`),
so a page in another language says the same thing in its own words (web.pages.problem_text); a
refusal raised without a code gets its kind's generic one.
"""
from __future__ import annotations

__all__ = ["FamilyError", "Invalid", "Refused", "NotFound", "NotApproved", "LoginRefused",
           "FieldInvalid", "FamilyLedgerRefused", "CODES"]

# Every code a family refusal may carry; never renumbered or reused for another meaning.
CODES = frozenset({
    # generic, one per kind
    "invalid", "refused", "not_found", "not_approved",
    # deposits
    "deposit.per_payment_max", "deposit.daily_max", "deposit.balance_max",
    "deposit.inmate_monthly_max", "deposit.approved_contacts_only", "deposit.key_reused",
    "deposit.amount_positive", "deposit.no_prepaid_account",
    "third_party.fee_prohibited", "third_party.fee_changed",
    # numbers and refunds
    "number.not_yours", "number.not_proven", "number.taken", "number.too_many",
    "number.format", "refund.nothing_to_refund", "refund.not_from_portal",
    # holders
    "password.wrong", "password.weak", "token.unknown", "token.used", "token.expired",
    "email.format",
    # contacts, blocks, history
    "inmate.unknown", "facility.unknown", "facility.unpublished", "name.too_short",
    "contact.denied", "month.format",
    # less common: blocks, contact requests, statements, account, payments, refunds
    "block.one_target", "block.unknown", "contact_request.unknown", "contact_request.decided",
    "contact.not_added", "statement.delivery", "statement.fee_unpaid", "email.missing",
    "email.already_confirmed", "holder.unknown", "language.unknown", "number.not_claimed",
    "password.not_text", "password.too_short", "password.too_long", "password.is_email",
    "password.too_simple", "payment.unknown", "deposit.key_format", "deposit.purpose",
    "deposit.provider_amount_mismatch", "third_party.fee_negative", "third_party.fee_missing",
    "third_party.fee_above_reported", "profile.no_fee_schedule", "refund.no_prepaid_account",
    "refund.ledger_refused",
    # proof of a number by call: one per proof_rules.RequestRefusal and CodeRefusal
    "proof_call.not_claimed", "proof_call.already_proven", "proof_call.proven_by_other",
    "proof_call.refused_number_class", "proof_call.blocked", "proof_call.no_route",
    "proof_call.too_soon", "proof_call.number_daily_limit", "proof_call.holder_daily_limit",
    "proof_call.node_hourly_limit",
    "proof_code.no_proof", "proof_code.used", "proof_code.not_spoken", "proof_code.expired",
    "proof_code.attempts_used", "proof_code.malformed", "proof_code.wrong_code",
})


class FamilyError(Exception):
    code = "invalid"

    def __init__(self, field: str, message: str, code: str | None = None, *,
                 value: object = None, **params: object) -> None:
        super().__init__(message)
        self.field, self.message, self.value = field, message, value
        if code is not None:
            if code not in CODES:       # our bug: a code no page can say
                raise ValueError(f"unknown family error code {code!r}")
            self.code = code
        self.params = {k: str(v) for k, v in params.items()}

    @property
    def what(self) -> str:
        return self.message

    @property
    def where(self) -> str:
        return self.field


class Invalid(FamilyError):
    """The input is unusable (422): the message says what is wrong with `field`."""
    code = "invalid"


class Refused(FamilyError):
    """The input is well formed but conflicts with the current state (409)."""
    code = "refused"


class NotFound(FamilyError):
    """What `field` names does not exist, or is not this holder's (404)."""
    code = "not_found"


class NotApproved(FamilyError):
    """The holder is not allowed this (403): e.g. a deposit where only approved contacts may."""
    code = "not_approved"


class LoginRefused(FamilyError):
    """A login that does not go through. `reason`: wrong (email or password), unverified, or
    throttled (too many failures for this email or source; nothing was checked)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__("login", message, value=reason)
        self.reason = reason


class FieldInvalid(Invalid, ValueError):
    """A value of `field` that cannot be parsed (an amount, a month); ``str(e)`` is
    "field: reason". Still a ValueError, for callers that caught the parsers' ValueError."""

    def __init__(self, field: str, message: str, code: str | None = None, *,
                 value: object = None) -> None:
        super().__init__(field, message, code, value=value)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class FamilyLedgerRefused(FamilyError):
    """The ledger refused the transfers of a payment the provider confirmed: not the holder's
    fault and not theirs to fix (an HTTP 503 at the boundary, never a 422); the payment stays
    pending for an operator. `value` names the ledger's results."""
    code = "refused"

    def __init__(self, payment: object, results: list[str]) -> None:
        super().__init__("payment", f"the ledger refused payment {payment}: {', '.join(results)}",
                         value=results)
        self.payment = payment
