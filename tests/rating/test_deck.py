"""Rate decks: every error names its line, column and value; nothing is half-read."""
import pytest

from rating import deck as decks
from rating.deck import DeckError, format_days, parse, parse_days, write
from rating.tariff import ALL_DAYS, PaymentType, Rounding, SurchargeKind

HEADER = ("kind,line,destination,payment,days,start,weight,from_second,price,per_seconds,"
          "increment,connect_fee,minimum_seconds,cost_cap,rounding,decimals,percent")
DAY = "rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,,,"
DAY2 = "rate,day,interstate,any,all,00:00,0,60,0.21,60,6,,,,,,"


def deck(*rows: str) -> str:
    return "\n".join((HEADER,) + rows) + "\n"


def errors_of(text: str, **kw) -> list[tuple]:
    with pytest.raises(DeckError) as e:
        parse(text, **kw)
    return [(x.line, x.column, x.value) for x in e.value.errors]


def test_the_demo_deck_parses_into_lines_groups_and_taxes(demo_deck_text):
    d = parse(demo_deck_text)
    names = [l.name for l in d.lines]
    assert names[:3] == ["local", "local-evening", "intrastate"] and len(d.lines) == 7
    assert [(g.from_second, g.price_micros, g.per_seconds, g.increment)
            for g in d.lines[0].groups] == [(0, 50_000, 60, 60), (60, 50_000, 60, 6)]
    assert d.lines[1].band.days == 0b11111 and d.lines[1].band.start == 19 * 3600
    assert [(s.kind, s.name, s.percent_ppm) for s in d.surcharges][-1] == (
        SurchargeKind.TAX, "federal-usf", 35_000)


def test_line_level_fields_may_be_left_blank_on_later_rows_of_a_line():
    d = parse(deck("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,0.5,0,10,up,2,",
                   "rate,day,,,,,,60,0.21,60,6,,,,,,"))
    (line,) = d.lines
    assert (line.connect_micros, line.cost_cap_micros, line.rounding, line.decimals) == (
        500_000, 10_000_000, Rounding.UP, 2)
    assert len(line.groups) == 2


@pytest.mark.parametrize("row,column,value", [
    ("rate,day,interstate,any,all,00:00,0,0,0.2.1,60,60,,,,,,", "price", "0.2.1"),
    ("rate,day,interstate,any,all,00:00,0,0,0.0000001,60,60,,,,,,", "price", "0.0000001"),
    ("rate,day,interstate,any,all,00:00,0,0,-0.21,60,60,,,,,,", "price", "-0.21"),
    ("rate,day,interstate,any,all,00:00,0,0,0.21,0,60,,,,,,", "per_seconds", "0"),
    ("rate,day,interstate,any,all,00:00,0,-5,0.21,60,60,,,,,,", "from_second", "-5"),
    ("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,-1,,,,,", "connect_fee", "-1"),
    ("rate,day,interstate,any,all,25:00,0,0,0.21,60,60,,,,,,", "start", "25:00"),
    ("rate,day,interstate,any,mon-fry,00:00,0,0,0.21,60,60,,,,,,", "days", "mon-fry"),
    ("rate,day,interstate,cash,all,00:00,0,0,0.21,60,60,,,,,,", "payment", "cash"),
    ("rate,day,mars,any,all,00:00,0,0,0.21,60,60,,,,,,", "destination", "mars"),
    ("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,sideways,2,", "rounding", "sideways"),
    ("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,up,,", "decimals", ""),
    ("rate,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,,,5", "percent", "5"),
    ("bonus,day,interstate,any,all,00:00,0,0,0.21,60,60,,,,,,", "kind", "bonus"),
    ("tax,usf,interstate,any,,,,,,,,,,,,,-3", "percent", "-3"),
    ("tax,usf,interstate,any,all,,,,,,,,,,,,3", "days", "all"),
])
def test_a_bad_cell_is_named_by_line_column_and_value(row, column, value):
    assert (2, column, value) in errors_of(deck(row))


def test_an_unknown_or_missing_column_is_named_in_the_header():
    assert errors_of("kind,line,destination,payment,colour\n") == [(1, "colour", "colour")]
    assert errors_of("kind,line,destination\n") == [(1, "payment", "")]


def test_non_increasing_group_starts_are_refused_on_the_offending_row():
    assert errors_of(deck(DAY, DAY2, "rate,day,,,,,,60,0.1,60,6,,,,,,")) == [
        (4, "from_second", "60")]


def test_a_first_group_must_start_at_second_zero_and_later_ones_on_an_increment():
    assert errors_of(deck("rate,day,interstate,any,all,00:00,0,30,0.21,60,60,,,,,,")) == [
        (2, "from_second", "30")]
    assert errors_of(deck(DAY, "rate,day,,,,,,90,0.21,60,6,,,,,,")) == [(3, "from_second", "90")]


def test_a_band_gap_so_that_some_minute_has_no_price_is_refused():
    text = deck("rate,weekday,interstate,any,mon-fri,00:00,0,0,0.21,60,60,,,,,,")
    assert errors_of(text) == [(2, "days", "mon-fri"), (2, "days", "mon-fri")]   # sat and sun
    with pytest.raises(DeckError, match="no price from 00:00 on sat"):
        parse(text)


def test_overlapping_bands_that_tie_are_refused():
    text = deck(DAY, "rate,night,interstate,any,fri-mon,00:00,0,0,0.1,60,60,,,,,,")
    assert errors_of(text) == [(3, "start", "00:00")]


def test_a_later_row_contradicting_its_line_is_refused():
    assert errors_of(deck(DAY, "rate,day,intrastate,,,,,60,0.21,60,6,,,,,,")) == [
        (3, "destination", "intrastate")]


def test_every_error_in_the_file_is_reported_at_once():
    text = deck("rate,a,interstate,any,all,00:00,0,0,x,60,60,,,,,,",
                "rate,b,interstate,any,all,00:00,0,0,0.1,y,60,,,,,,",
                "rate,c,interstate,any,all,00:00,0,0,0.1,60,60,,,,,,,extra")
    assert errors_of(text) == [(2, "price", "x"), (3, "per_seconds", "y"), (4, "percent", "extra")]


def test_a_facility_column_must_name_a_known_facility():
    text = ("kind,line,destination,payment,days,start,from_second,price,per_seconds,increment,"
            "facility\nrate,day,interstate,any,all,00:00,0,0.21,60,60,atlantis\n")
    assert errors_of(text, known_facilities={"riverside"}) == [(2, "facility", "atlantis")]
    assert errors_of(text.replace("atlantis", "riverside"), facility="elsewhere",
                     known_facilities={"riverside", "elsewhere"}) == [(2, "facility", "riverside")]
    assert parse(text.replace("atlantis", "riverside"), known_facilities={"riverside"}).facility \
        == "riverside"


def test_export_is_canonical_and_reimports_to_the_same_lines(demo_deck_text):
    loose = deck("RATE,day,Interstate,ANY,Mon-Sun,0:00,,0,$0.210,60,60,,,,,,",
                 "rate,day,,,,,,60,.21,60,6,,,,,,".replace(".21", "0.21"),
                 "tax,usf,*,any,,,,,,,,,,,,,3.50%")
    d = parse(loose)
    text = write(d.lines, d.surcharges)
    assert text.splitlines()[1:] == [
        "rate,day,interstate,any,all,00:00,0,0,0.21,60,60,0,0,,,,",
        "rate,day,interstate,any,all,00:00,0,60,0.21,60,6,0,0,,,,",
        "tax,usf,*,any,,,,,,,,,,,,,3.5"]
    again = parse(text)
    assert (again.lines, again.surcharges) == (d.lines, d.surcharges)
    assert write(again.lines, again.surcharges) == text


def test_days_read_and_write_in_a_spreadsheet_friendly_way():
    assert parse_days("all") == ALL_DAYS and parse_days("mon-fri") == 0b11111
    assert parse_days("fri-mon") == 0b1110001 and parse_days("sat, sun") == 0b1100000
    assert format_days(0b1110001) == "mon,fri-sun" and format_days(0b0000101) == "mon,wed"
    assert decks.format_money(210_000) == "0.21" and decks.format_money(3_000_000) == "3"
    assert decks.parse_money("0.000001") == 1 and PaymentType("any") is PaymentType.ANY
