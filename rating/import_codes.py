"""Why a rate deck is refused: one stable code per kind of import error, in the order checked.

Every `RowError` of a deck carries one of these codes next to its line, column, value and message,
so scripts and the API can act on a refusal without parsing English. The values are part of the
interface (printed in brackets after each error, kept by tools): never rename or reuse one; add
new codes at the end of their group.
"""
from __future__ import annotations

import enum

__all__ = ["DeckErrorCode"]


class DeckErrorCode(enum.Enum):
    # The file as a whole.
    NOT_UTF8 = "not_utf8"                      # bytes that are not UTF-8 (line and column given)
    MALFORMED_CSV = "malformed_csv"            # e.g. a NUL byte, which no CSV cell may hold
    EMPTY_DECK = "empty_deck"
    TOO_MANY_ROWS = "too_many_rows"
    BARE_CARRIAGE_RETURN = "bare_carriage_return"   # a CR without LF (line and column given)
    # The header.
    UNKNOWN_COLUMN = "unknown_column"
    DUPLICATE_COLUMN = "duplicate_column"
    MISSING_COLUMN = "missing_column"          # reported once, at the header
    # One cell.
    EXTRA_VALUES = "extra_values"              # more values than columns
    UNKNOWN_KIND = "unknown_kind"
    REQUIRED = "required"                      # a blank cell that must be filled in
    BAD_NUMBER = "bad_number"
    NEGATIVE = "negative"
    OUT_OF_RANGE = "out_of_range"
    BAD_DAYS = "bad_days"
    BAD_TIME = "bad_time"
    BAD_DATE = "bad_date"
    UNKNOWN_PAYMENT = "unknown_payment"
    UNKNOWN_ROUNDING = "unknown_rounding"
    UNKNOWN_DESTINATION = "unknown_destination"
    BAD_NAME = "bad_name"
    NOT_USED = "not_used"                      # a column that this kind of row leaves blank
    UNKNOWN_FACILITY = "unknown_facility"
    WRONG_FACILITY = "wrong_facility"
    # Rows together.
    CONTRADICTS_LINE = "contradicts_line"      # a later row of a line differs from its first
    DUPLICATE_NAME = "duplicate_name"
    GROUP_ORDER = "group_order"                # rate-group starts: 0 first, increasing, aligned
    MISSING_BAND = "missing_band"              # a day without a price from 00:00
    OVERLAP = "overlap"                        # two bands that tie, so neither wins
    UNKNOWN_HOLIDAYS = "unknown_holidays"      # a band on `holidays` in a deck that lists none
    # The deck against the rest of the system.
    RATE_CAP = "rate_cap"                      # above the facility's regulatory profile
    UNKNOWN_PARENT = "unknown_parent"          # a fallback to a plan that does not exist
    FALLBACK_CYCLE = "fallback_cycle"          # fallbacks that lead back to this plan
    FALLBACK_TOO_DEEP = "fallback_too_deep"    # a chain of fallbacks longer than allowed
