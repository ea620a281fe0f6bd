"""Import errors: one pass reports all of them, in deck terms, each with a stable code."""
import pytest

from rating import deck as decks
from rating.deck import DeckError, parse
from rating.import_codes import DeckErrorCode as C

HEADER = ("kind,line,destination,payment,days,start,weight,from_second,price,per_seconds,"
          "increment,connect_fee,minimum_seconds,cost_cap,rounding,decimals,percent,facility")
DAY = "rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,,,,"
DAY2 = "rate,day,interstate,any,all,00:00,0,60,0.21,60,6,,,,,,,"
EVENING = "rate,evening,interstate,any,mon-fri,19:00,0,0,0.15,60,60,,,,,,,"


def deck(*rows: str) -> str:
    return "\n".join((HEADER,) + rows) + "\n"


def deck_x(*rows: str) -> str:
    """A deck with the calendar, ceiling and fallback columns after the classic ones."""
    return "\n".join((HEADER + ",cap_action,dates,parent",) + rows) + "\n"


def errors_of(data, **kw) -> list[tuple]:
    with pytest.raises(DeckError) as e:
        parse(data, **kw)
    return [(x.line, x.column, x.value, x.code) for x in e.value.errors]


# One row per code checked by `parse`: the deck, then one error it must report (line, column,
# value). Codes found only against the database (a rate cap) are tested in test_store.py.
CASES = {
    C.NOT_UTF8: (deck(DAY).encode() + b"rate,caf\xe9,interstate,any,all,00:00,1,0,0.1,60,60"
                 b",,,,,,,\n", (3, "line", "\xe9")),
    C.MALFORMED_CSV: (deck(DAY, "rate,night\x00,interstate,any,all,00:00,1,0,0.1,60,60,,,,,,,"),
                      (3, "kind", "\\x00")),
    C.BARE_CARRIAGE_RETURN: (
        deck(DAY, "rate,night,interstate,any,all,00:00,1,0,0.1\r,60,60,,,,,,,"),
        (3, "price", "\\r")),
    C.EMPTY_DECK: ("", (1, "kind", "")),
    C.TOO_MANY_ROWS: (deck(*[DAY] * (decks.ROWS_MAX + 1)), (decks.ROWS_MAX + 2, "kind", "")),
    C.UNKNOWN_COLUMN: (HEADER + ",colour\n" + DAY + ",red\n", (1, "colour", "colour")),
    C.DUPLICATE_COLUMN: (HEADER + ",price\n" + DAY + ",0.21\n", (1, "price", "price")),
    C.MISSING_COLUMN: ("kind,line,destination\n", (1, "payment", "")),
    C.EXTRA_VALUES: (deck(DAY + ",surplus"), (2, "facility", "surplus")),
    C.UNKNOWN_KIND: (deck(DAY, "bonus,b,interstate,any,all,00:00,1,0,0.1,60,60,,,,,,,"),
                     (3, "kind", "bonus")),
    C.REQUIRED: (deck("rate,day,interstate,any,all,00:00,0,0,,60,60,,,,,,,"), (2, "price", "")),
    C.BAD_NUMBER: (deck("rate,day,interstate,any,all,00:00,0,0,0.2.1,60,60,,,,,,,"),
                   (2, "price", "0.2.1")),
    C.NEGATIVE: (deck("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,-1,,,,,,"),
                 (2, "connect_fee", "-1")),
    C.OUT_OF_RANGE: (deck("rate,day,interstate,any,all,00:00,0,0,0.21,0,60,,,,,,,"),
                     (2, "per_seconds", "0")),
    C.BAD_DAYS: (deck("rate,day,interstate,any,mon-fry,00:00,0,0,0.21,60,60,,,,,,,"),
                 (2, "days", "mon-fry")),
    C.BAD_DATE: (deck_x(DAY + ",,,", "rate,xmas,interstate,any,,00:00,5,0,0.1,60,60,,,,,,,,,02-30,"),
                 (3, "dates", "02-30")),
    C.UNKNOWN_HOLIDAYS: (deck_x(DAY + ",,,",
                                "rate,hol,interstate,any,,00:00,5,0,0.1,60,60,,,,,,,,,holidays,"),
                         (3, "dates", "holidays")),
    C.BAD_TIME: (deck("rate,day,interstate,any,all,25:00,0,0,0.21,60,60,,,,,,,"),
                 (2, "start", "25:00")),
    C.UNKNOWN_PAYMENT: (deck("rate,day,interstate,cash,all,00:00,0,0,0.21,60,60,,,,,,,"),
                        (2, "payment", "cash")),
    C.UNKNOWN_ROUNDING: (deck("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,sideways,2,,"),
                         (2, "rounding", "sideways")),
    C.UNKNOWN_DESTINATION: (deck("rate,day,mars,any,all,00:00,0,0,0.21,60,60,,,,,,,"),
                            (2, "destination", "mars")),
    C.BAD_NAME: (deck("rate,-day,interstate,any,all,00:00,0,0,0.21,60,60,,,,,,,"),
                 (2, "line", "-day")),
    C.NOT_USED: (deck(DAY, "tax,usf,interstate,any,all,,,,,,,,,,,,3,"), (3, "days", "all")),
    C.UNKNOWN_FACILITY: (deck(DAY + "atlantis"), (2, "facility", "atlantis")),
    C.WRONG_FACILITY: (deck(DAY + "riverside", DAY2 + "hillside"), (3, "facility", "hillside")),
    C.CONTRADICTS_LINE: (deck(DAY, "rate,day,intrastate,,,,,60,0.21,60,6,,,,,,,"),
                         (3, "destination", "intrastate")),
    C.DUPLICATE_NAME: (deck(DAY, "tax,usf,*,any,,,,,,,,,,,,,3,", "tax,usf,*,any,,,,,,,,,,,,,1,"),
                       (4, "line", "usf")),
    C.GROUP_ORDER: (deck(DAY, "rate,day,,,,,,90,0.21,60,6,,,,,,,"), (3, "from_second", "90")),
    C.MISSING_BAND: (deck("rate,weekday,interstate,any,mon-fri,00:00,0,0,0.21,60,60,,,,,,,"),
                     (2, "days", "mon-fri")),
    C.OVERLAP: (deck(DAY, EVENING, "rate,late,interstate,any,fri-mon,19:00,0,0,0.1,60,60,,,,,,,"),
                (4, "start", "19:00")),
}
FOUND_WITH_A_DATABASE = {C.RATE_CAP, C.UNKNOWN_PARENT, C.FALLBACK_CYCLE, C.FALLBACK_TOO_DEEP}


def test_every_import_error_code_has_a_row_in_this_table():
    assert set(CASES) | FOUND_WITH_A_DATABASE == set(C)


@pytest.mark.parametrize("code", list(CASES), ids=lambda c: c.value)
def test_each_import_error_is_named_by_line_column_value_and_code(code):
    data, (line, column, value) = CASES[code]
    assert (line, column, value, code.value) in errors_of(
        data, facility="riverside", known_facilities={"riverside", "hillside"})


def test_all_errors_of_all_rows_and_columns_come_in_one_pass():
    text = deck("rate,a,interstate,any,all,00:00,0,0,x,60,60,,,,,,,",
                "rate,b,interstate,any,all,00:00,0,0,0.1,y,z,,,,,,,",
                "rate,c,international,any,mon-fri,00:00,0,0,0.1,60,60,,,,,,,",
                "rate,d,local,any,all,00:00,0,0,0.1,60,60,,,,,,,",
                "rate,d,,,,,,45,0.1,60,6,,,,,,,",
                "rate,e,local,any,mon,00:00,0,0,0.1,60,60,,,,,,,")
    assert [(l, c, code) for l, c, _, code in errors_of(text)] == [
        (2, "price", "bad_number"), (3, "per_seconds", "bad_number"),
        (3, "increment", "bad_number"),
        (4, "days", "missing_band"), (4, "days", "missing_band"),       # sat and sun
        (6, "from_second", "group_order"), (7, "start", "overlap")]


def test_an_overlap_names_both_rows_in_deck_terms():
    text = deck(DAY, EVENING, "rate,late,interstate,any,fri-mon,19:00,0,0,0.1,60,60,,,,,,,")
    with pytest.raises(DeckError) as e:
        parse(text)
    (err,) = e.value.errors
    assert (err.line, err.value) == (4, "19:00")
    assert "line 'evening' (line 3)" in err.message and "68400" not in str(e.value)


def test_a_missing_column_is_reported_once_not_once_per_row():
    text = ("kind,line,destination,payment,start,from_second,price,per_seconds,increment\n"
            + "".join(f"rate,l{i},interstate,any,00:00,0,0.1,60,60\n" for i in range(5)))
    assert errors_of(text) == [(1, "days", "", "missing_column")]
    with pytest.raises(DeckError, match="needed by rate rows, the first at line 2"):
        parse(text)


def test_bytes_that_are_not_utf8_are_named_at_line_and_column_without_a_traceback():
    data = deck(DAY).encode() + b"rate,night,interstate,any,all,19:00,1,0,0.1\xff,60,60,,,,,,,\n"
    with pytest.raises(DeckError) as e:
        parse(data)
    (err,) = e.value.errors
    assert (err.line, err.column, err.code) == (3, "price", "not_utf8")
    assert "byte 0xff at column 44" in err.message
    assert parse(b"\xef\xbb\xbf" + deck(DAY, DAY2).encode()).lines[0].name == "day"


def test_errors_are_capped_in_count_with_the_total_given():
    text = deck(*[f"rate,l{i},interstate,any,all,00:00,{i},0,x,60,60,,,,,,," for i in range(500)])
    with pytest.raises(DeckError) as e:
        parse(text)
    assert e.value.total == 500 and len(e.value.errors) == decks.ERRORS_MAX
    assert f"... and {500 - decks.ERRORS_MAX} more" in str(e.value)


def test_a_quoted_cell_spanning_lines_keeps_file_lines_right():
    text = deck('rate,"day",interstate,any,all,00:00,0,0,0.21,60,60,,,,,,,',
                'tax,"levy\nspread",*,any,,,,,,,,,,,,,3,',
                "rate,x,interstate,any,all,00:00,0,0,bad,60,60,,,,,,,")
    assert (5, "price", "bad", "bad_number") in errors_of(text)
