from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from switch.rules.schedule import Schedule, ScheduleError, Window, parse_window

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


def utc(*a):
    return datetime(*a, tzinfo=timezone.utc)


def test_window_text_round_trips():
    w = parse_window("mon-fri 08:00-22:00")
    assert w.days == frozenset(range(5)) and w.start == 8 * 3600 and w.end == 22 * 3600
    assert parse_window(w.text()) == w
    assert parse_window("fri-mon 00:00-24:00").days == frozenset({4, 5, 6, 0})


@pytest.mark.parametrize("text,message", [
    ("mon 08:00", "expected 'DAYS HH:MM-HH:MM'"),
    ("funday 08:00-09:00", "unknown day 'funday'"),
    ("mon 25:00-26:00", "not a time of day"),
    ("mon 09:00-08:00", "start < end"),
    ("mon 8h-9h", "is not HH:MM"),
])
def test_bad_window_says_what_is_wrong(text, message):
    with pytest.raises(ScheduleError, match=message):
        parse_window(text)


def test_same_wall_clock_window_means_different_utc_in_different_zones():
    at = utc(2026, 11, 25, 14, 30)           # 09:30 in New York, 06:30 in Los Angeles
    ny = Schedule((parse_window("daily 08:00-22:00"),), NY)
    la = Schedule((parse_window("daily 08:00-22:00"),), LA)
    assert ny.allows(at) and not la.allows(at)
    assert ny.seconds_left(at) == 12 * 3600 + 30 * 60


def test_touching_windows_chain_across_midnight():
    s = Schedule((parse_window("wed 20:00-24:00"), parse_window("thu 00:00-01:00")), NY)
    at = datetime(2026, 11, 25, 23, 0, tzinfo=NY)  # a Wednesday
    assert s.seconds_left(at) == 2 * 3600


def test_window_on_spring_forward_day_lasts_one_real_hour():
    # 2026-03-08: New York clocks jump from 02:00 to 03:00.
    s = Schedule((parse_window("sun 01:00-03:00"),), NY)
    at = datetime(2026, 3, 8, 1, 0, tzinfo=NY)
    assert s.seconds_left(at) == 3600


def test_window_on_fall_back_day_lasts_three_real_hours():
    # 2026-11-01: New York repeats 01:00-02:00.
    s = Schedule((parse_window("sun 00:00-02:00"),), NY)
    at = datetime(2026, 11, 1, 0, 0, tzinfo=NY)
    assert s.seconds_left(at) == 3 * 3600


def test_outside_every_window_is_zero():
    s = Schedule((parse_window("mon-fri 08:00-22:00"),), NY)
    assert s.seconds_left(datetime(2026, 11, 28, 12, 0, tzinfo=NY)) == 0   # Saturday
    assert s.seconds_left(datetime(2026, 11, 25, 22, 0, tzinfo=NY)) == 0   # end is exclusive


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6), st.integers(0, 86_399), st.integers(1, 86_400),
       st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)))
def test_seconds_left_agrees_with_stepping_the_clock(day, a, b, naive):
    start, end = sorted((a, b)) if a != b else (a, a + 1)
    end = min(end, 86_400)
    if start >= end:
        return
    s = Schedule((Window(frozenset({day}), start, end),), NY)
    at = naive.replace(tzinfo=timezone.utc)
    left = s.seconds_left(at)
    assert left >= 0
    if left:
        assert s.allows(at + timedelta(seconds=left - 1))
    assert not s.allows(at + timedelta(seconds=left)) or left == 7 * 86_400
