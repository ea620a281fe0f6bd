"""Whatever bytes arrive as a rate deck, `parse` answers a Deck or a DeckError naming line and
column: never a raw exception from the csv module, the decoder or a converter."""
import csv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.deck import DeckError, parse
from rating.import_codes import DeckErrorCode as C

HEADER = ("kind,line,destination,payment,days,start,weight,from_second,price,per_seconds,"
          "increment,connect_fee,minimum_seconds,cost_cap,rounding,decimals,percent")
DAY = "rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,,,"
CODES = {c.value for c in C}

# The characters that break CSV readers and decoders, mixed with a valid deck's own text so the
# generated decks get past the header often enough to reach the cells.
HOSTILE = st.sampled_from(["\r", "\n", "\r\n", '"', ",", "\x00", "\ufeff", "\u2028", "\x85",
                           "-", "$", ".", "9", " ", "rate", "tax", HEADER, DAY, "x" * 200])


def _answer(data):
    try:
        return parse(data)
    except DeckError as e:
        assert e.errors, "a refusal names at least one error"
        for err in e.errors:
            assert err.code in CODES and err.column and (err.line is None or err.line >= 1)
        return e


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_a_deck_or_a_named_refusal(data):
    _answer(data)


@settings(max_examples=150, deadline=None)
@given(st.lists(HOSTILE, max_size=40).map("".join))
def test_hostile_text_built_from_csv_delimiters_is_a_deck_or_a_named_refusal(text):
    _answer(text)
    _answer(text.encode("utf-8"))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(HEADER) + len(DAY) + 1), st.sampled_from(["\r", "\r\r", "\x00\r"]))
def test_a_carriage_return_anywhere_in_a_good_deck_is_refused_at_its_line(at, junk):
    text = HEADER + "\n" + DAY + "\n"
    text = text[:at] + junk + text[at:]
    # A CR as the very last character ends the last line, as the csv module reads it.
    bare = [i for i, c in enumerate(text) if c == "\r" and text[i + 1:i + 2] not in ("\n", "")]
    if not bare:
        return
    result = _answer(text)
    assert isinstance(result, DeckError)
    line = text[:bare[0]].count("\n") + 1
    assert any(e.code == C.BARE_CARRIAGE_RETURN.value and e.line == line for e in result.errors)


def test_old_mac_line_ends_name_the_first_carriage_return_and_its_column():
    with pytest.raises(DeckError) as e:
        parse((HEADER + "\r" + DAY + "\r").encode())
    (err,) = [x for x in e.value.errors if x.code == C.BARE_CARRIAGE_RETURN.value]
    assert (err.line, err.value) == (1, "\\r")
    assert f"column {len(HEADER) + 1} of the line" in err.message


def test_windows_line_ends_are_ordinary_line_ends():
    assert parse(HEADER + "\r\n" + DAY + "\r\n").lines[0].name == "day"


def test_a_cell_over_the_csv_size_limit_is_a_named_refusal():
    big = "x" * (csv.field_size_limit() + 1)
    with pytest.raises(DeckError) as e:
        parse(HEADER + "\n" + DAY + "\n" + f'rate,"{big}",interstate,any,all,00:00,0,0,1,60,60\n')
    assert (e.value.errors[0].line, e.value.errors[0].code) == (3, C.MALFORMED_CSV.value)
