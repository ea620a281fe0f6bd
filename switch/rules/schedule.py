"""Calling schedules: when a housing unit may call, in the facility's time zone, and for how long.

A schedule is a set of weekly windows (days of week, local start, local end). An instant is inside
the schedule when some window contains its local wall-clock time. Windows that touch (22:00-24:00
then Monday 00:00-06:00) chain, so "time left" runs to the end of the chain. Local times are turned
into UTC with zoneinfo, so a window on a daylight-saving day is as long as the wall clock says
(02:00-04:00 on the spring-forward day lasts one real hour).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from switch.errors import SwitchError

__all__ = ["Window", "Schedule", "ScheduleError", "parse_window"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS_MAX = 8        # far enough to see a whole week of chained windows


class ScheduleError(SwitchError, ValueError):
    """A schedule window is malformed; the message names the text and what is wrong."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]        # 0 = Monday .. 6 = Sunday, the local day the window starts on
    start: int                  # seconds after local midnight
    end: int                    # seconds after local midnight, start < end <= 86400

    def __post_init__(self) -> None:
        if not self.days or not all(0 <= d <= 6 for d in self.days):
            raise ScheduleError(f"window days must be 0..6, got {sorted(self.days)}")
        if not 0 <= self.start < self.end <= 86_400:
            raise ScheduleError(f"window must have 0 <= start < end <= 24:00, got "
                                f"{_hhmm(self.start)}-{_hhmm(self.end)}")

    def text(self) -> str:
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days))
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _parse_clock(text: str, where: str) -> int:
    try:
        hh, mm = text.split(":")
        h, m = int(hh), int(mm)
    except ValueError:
        raise ScheduleError(f"{where}: {text!r} is not HH:MM") from None
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ScheduleError(f"{where}: {text!r} is not a time of day")
    return h * 3600 + m * 60


def _parse_days(text: str, where: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            if a not in DAY_NAMES or b not in DAY_NAMES:
                raise ScheduleError(f"{where}: unknown day range {part!r}")
            i, j = DAY_NAMES.index(a), DAY_NAMES.index(b)
            days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in DAY_NAMES:
            days.add(DAY_NAMES.index(part))
        elif part in ("daily", "all"):
            days.update(range(7))
        else:
            raise ScheduleError(f"{where}: unknown day {part!r} (use mon..sun, ranges, or daily)")
    return frozenset(days)


def parse_window(text: str) -> Window:
    """'mon-fri 08:00-22:00', 'sat,sun 10:00-20:00', 'daily 00:00-24:00'."""
    try:
        days, span = text.split()
        start, end = span.split("-")
    except ValueError:
        raise ScheduleError(f"window {text!r}: expected 'DAYS HH:MM-HH:MM'") from None
    where = f"window {text!r}"
    return Window(_parse_days(days, where), _parse_clock(start, where), _parse_clock(end, where))


@dataclass(frozen=True)
class Schedule:
    windows: tuple[Window, ...]
    tz: ZoneInfo

    def _intervals(self, around: datetime) -> list[tuple[datetime, datetime]]:
        """UTC intervals of every window occurrence from the local day before `around` on."""
        local_day = around.astimezone(self.tz).date() - timedelta(days=1)
        out = []
        for offset in range(HORIZON_DAYS_MAX + 1):
            day = local_day + timedelta(days=offset)
            for w in self.windows:
                if day.weekday() in w.days:
                    out.append((self._utc(day, w.start), self._utc(day, w.end)))
        out.sort()
        return out

    def _utc(self, day: date, seconds: int) -> datetime:
        if seconds == 86_400:
            day, seconds = day + timedelta(days=1), 0
        local = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60), self.tz)
        return local.astimezone(timezone.utc)

    def allows(self, at: datetime) -> bool:
        return self.seconds_left(at) > 0

    def seconds_left(self, at: datetime, horizon: int = 7 * 86_400) -> int:
        """Seconds from `at` until calling is no longer allowed (0 if not allowed now)."""
        end = None
        for lo, hi in self._intervals(at):
            if end is None:
                if lo <= at < hi:
                    end = hi
            elif lo <= end:
                end = max(end, hi)       # touching or overlapping windows chain
            else:
                break
        if end is None:
            return 0
        return min(int((end - at).total_seconds()), horizon)
