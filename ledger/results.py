"""Result codes of account creation and transfers: stable numbers, listed in precedence order.

Modelled on TigerBeetle's ``CreateTransferResult``: when several codes apply, the first listed wins.
A code's number never changes; a new code takes the next free number. The SQL function
``ledger_submit`` mirrors these numbers as ``R_*`` constants and the ``ledger_result`` table names
them (a test checks all three agree).
"""

from __future__ import annotations

import enum

__all__ = ["TransferResult", "AccountResult", "PERSISTED_REJECTIONS"]


class TransferResult(enum.IntEnum):
    """What became of one transfer of a batch. ``OK`` and ``EXISTS`` are success."""

    OK = 0
    # The transfer was fine, but another member of its linked chain failed, so none applied.
    LINKED_EVENT_FAILED = 1
    # The last transfer of the batch is linked: the chain never closes, so none of it applies.
    LINKED_EVENT_CHAIN_OPEN = 2
    ID_MUST_NOT_BE_ZERO = 3
    # -- what the transfer says, checked before anything is looked up --------------------------
    HOLD_ID_MUST_BE_NULL = 4  # a single or hold names a hold
    DEBIT_ACCOUNT_REQUIRED = 5
    CREDIT_ACCOUNT_REQUIRED = 6
    HOLD_ID_REQUIRED = 7  # a post, void or expire names no hold
    HOLD_ID_MUST_BE_DIFFERENT = 8  # a post, void or expire names itself as its hold
    ACCOUNTS_MUST_BE_DIFFERENT = 9
    AMOUNT_MUST_BE_POSITIVE = 10
    AMOUNT_OUT_OF_RANGE = 11  # above AMOUNT_MAX
    EXPIRY_RESERVED_FOR_HOLD = 12  # expires_in on anything but a hold
    EXPIRY_OUT_OF_RANGE = 13  # a hold without expires_in, or outside 1..max seconds
    # -- the id was used before: same content is EXISTS, anything else names the first difference
    EXISTS_WITH_DIFFERENT_KIND = 14
    EXISTS_WITH_DIFFERENT_FLAGS = 15
    EXISTS_WITH_DIFFERENT_HOLD = 16
    EXISTS_WITH_DIFFERENT_EXPIRY = 17
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT = 18
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT = 19
    EXISTS_WITH_DIFFERENT_AMOUNT = 20
    EXISTS_WITH_DIFFERENT_CODE = 21
    EXISTS_WITH_DIFFERENT_REF = 22
    EXISTS = 23
    # -- against the ledger's state (a rejected id answers its first result forever) -----------
    DEBIT_ACCOUNT_NOT_FOUND = 24
    CREDIT_ACCOUNT_NOT_FOUND = 25
    CURRENCY_MISMATCH = 26
    HOLD_NOT_FOUND = 27
    NOT_A_HOLD = 28  # the named transfer exists but is not a hold
    HOLD_HAS_DIFFERENT_DEBIT_ACCOUNT = 29
    HOLD_HAS_DIFFERENT_CREDIT_ACCOUNT = 30
    EXCEEDS_HOLD_AMOUNT = 31  # a post of more than was held
    HOLD_HAS_DIFFERENT_AMOUNT = 32  # a void or expire naming an amount other than the hold's
    HOLD_ALREADY_POSTED = 33
    HOLD_ALREADY_VOIDED = 34
    HOLD_EXPIRED = 35  # past its expiry, whether or not the sweeper has run
    HOLD_NOT_EXPIRED = 36  # an expire before the hold's expiry
    OVERFLOWS_DEBITS = 37  # the debit account's debits would pass 2^63-1
    OVERFLOWS_CREDITS = 38
    INSUFFICIENT_FUNDS = 39  # a no-overdraft account would be overdrawn

    @property
    def succeeded(self) -> bool:
        return self in (TransferResult.OK, TransferResult.EXISTS)

    @property
    def persisted(self) -> bool:
        """A rejection remembered under the transfer's id: a retry gets the same answer."""
        return self in PERSISTED_REJECTIONS


PERSISTED_REJECTIONS = frozenset(
    r
    for r in TransferResult
    if r >= TransferResult.HOLD_ID_MUST_BE_NULL
    and not TransferResult.EXISTS_WITH_DIFFERENT_KIND <= r <= TransferResult.EXISTS
)


class AccountResult(enum.IntEnum):
    """What became of one account of a `create_accounts` call. ``OK`` and ``EXISTS`` are success."""

    OK = 0
    EXISTS_WITH_DIFFERENT_KIND = 1
    EXISTS_WITH_DIFFERENT_CURRENCY = 2
    EXISTS_WITH_DIFFERENT_OVERDRAFT = 3
    EXISTS_WITH_DIFFERENT_SHARDS = 4
    EXISTS = 5

    @property
    def succeeded(self) -> bool:
        return self in (AccountResult.OK, AccountResult.EXISTS)
