"""Money text (ledger.money): exact decimal text for integer micro-units, and back, with every
refusal named in words for people."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger
from ledger.money import (AMOUNT_MAX, AMOUNT_REFUSALS, MICROS, AmountInvalid, format_amount,
                          parse_amount)

AMOUNTS = st.integers(-AMOUNT_MAX, AMOUNT_MAX)


@given(AMOUNTS, st.integers(0, 6))
def test_parse_of_format_is_the_amount_at_every_precision(micros, places):
    text = format_amount(micros, places=places)
    assert parse_amount(text, allow_negative=True, allow_zero=True) == micros
    assert Decimal(text) * MICROS == micros                   # exact, as decimal arithmetic says


@given(AMOUNTS)
def test_format_of_parse_is_the_canonical_spelling(micros):
    canonical = format_amount(micros)
    for spelling in (canonical, canonical + "000", " " + canonical + " ",
                     canonical.replace("-", "-$") if micros < 0 else "$" + canonical,
                     canonical.replace("-", "$-") if micros < 0 else "+" + canonical):
        assert format_amount(parse_amount(spelling, allow_negative=True, allow_zero=True)) \
            == canonical


@given(st.integers(1, AMOUNT_MAX))
def test_formatting_shows_two_decimals_and_more_only_when_they_count(micros):
    text = format_amount(micros)
    whole, frac = text.split(".")
    assert 2 <= len(frac) <= 6 and (len(frac) == 2 or not frac.endswith("0"))
    assert format_amount(micros, currency="USD") == text + " USD"
    short = format_amount(micros, places=0)
    assert "." not in short if micros % MICROS == 0 else not short.endswith("0")


@pytest.mark.parametrize("text,micros", [
    ("12.34", 12_340_000), ("$12.34", 12_340_000), ("0.000001", 1), (".5", 500_000),
    ("7.", 7_000_000), ("1000000000", AMOUNT_MAX), ("0.1000000", 100_000), ("+3", 3_000_000),
])
def test_people_write_amounts_these_ways(text, micros):
    assert parse_amount(text) == micros


@pytest.mark.parametrize("value,code,words", [
    (0.1, "not_text", "binary float"),
    (Decimal("0.1"), "not_text", "as text"),
    (10, "not_text", "as text"),
    ("1" * 41, "too_long", "too long"),
    ("NaN", "malformed", "not a number"),
    ("-Infinity", "malformed", "not a number"),
    ("1e3", "malformed", "exponent"),
    ("1,234.56", "malformed", "thousands separator"),
    ("", "malformed", "empty"),
    ("$", "malformed", "empty"),
    (".", "malformed", "not an amount"),
    ("1 000", "malformed", "not an amount"),
    ("--1", "malformed", "not an amount"),
    ("-$-1", "malformed", "not an amount"),
    ("\u0661\u0662", "malformed", "not an amount"),          # Arabic-Indic digits
    ("0x10", "malformed", "not an amount"),
    ("1.0000001", "decimals", "more than 6 decimals"),
    ("1000000000.000001", "too_large", "more than 1000000000.00"),
    ("99999999999999999999", "too_large", "more than 1000000000.00"),
    ("-1", "negative", "negative"),
    ("0.00", "zero", "more than 0"),
])
def test_refusals_say_why_in_words_and_never_speak_of_micro_units(value, code, words):
    with pytest.raises(AmountInvalid) as e:
        parse_amount(value)
    assert e.value.code == code and code in AMOUNT_REFUSALS
    assert words in str(e.value) and "micro" not in str(e.value).lower()


@given(st.text(max_size=50))
def test_any_text_is_an_amount_or_a_named_refusal(text):
    try:
        micros = parse_amount(text, allow_negative=True, allow_zero=True)
    except AmountInvalid as e:
        assert e.code in AMOUNT_REFUSALS and "micro" not in str(e).lower()
    else:
        assert -AMOUNT_MAX <= micros <= AMOUNT_MAX


def test_the_caller_sets_sign_zero_and_size():
    assert parse_amount("-2.50", allow_negative=True) == -2_500_000
    assert parse_amount("0", allow_zero=True) == 0
    with pytest.raises(AmountInvalid, match="more than 5.00"):
        parse_amount("5.01", maximum=5 * MICROS)


def test_only_ints_are_formatted():
    for bad in (1.5, True, Decimal(1), "1"):
        with pytest.raises(TypeError):
            format_amount(bad)


def test_the_ledger_and_the_text_agree_on_the_largest_amount():
    assert AMOUNT_MAX == ledger.AMOUNT_MAX


def test_money_text_needs_nothing_but_the_standard_library():
    # So a pure module may use it: besides the standard library, only the ledger's errors
    # (themselves standard library only); the package loads its database modules on first use.
    for module, imports in ((ledger.money, ["from __future__ import annotations", "import re",
                                            "from ledger.errors import LedgerError"]),
                            (ledger.errors, ["from __future__ import annotations"])):
        source = open(module.__file__).read()
        assert [ln for ln in source.splitlines()
                if ln.startswith(("import ", "from "))] == imports, module.__name__
