"""A facility's wall clock as data: the UTC offset in force at any instant and when it next changes.

Pricing needs local time (bands, midnight) at many instants and the instant the offset changes
(a call is split there), for one call or a million. Both come from one sorted table of offset
changes, found once per time zone by scanning `zoneinfo` day by day and bisecting to the second.
Instants are integer microseconds since the Unix epoch (UTC), offsets integer seconds.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["LocalClock", "clock_for", "to_micros", "from_micros", "FAR_FUTURE_US", "US"]

US = 1_000_000  # microseconds per second
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCAN_FROM = datetime(1970, 1, 1, tzinfo=UTC)
SCAN_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)  # offsets after this repeat the last one
FAR_FUTURE_US = 2**62


def to_micros(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError(f"{at.isoformat()} has no time zone; give instants in UTC")
    return (at - EPOCH) // timedelta(microseconds=1)


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class LocalClock:
    """``changes_us[i]`` is the instant offset ``offsets[i]`` takes effect; ``changes_us[0]`` is
    minus infinity in practice (the offset before the scanned range)."""

    zone: str
    changes_us: tuple[int, ...]
    offsets: tuple[int, ...]

    def offset_at(self, us: int) -> tuple[int, int]:
        """The offset (seconds) at instant ``us`` and the instant it next changes."""
        i = bisect.bisect_right(self.changes_us, us) - 1
        nxt = self.changes_us[i + 1] if i + 1 < len(self.changes_us) else FAR_FUTURE_US
        return self.offsets[i], nxt


def _offset(zone: ZoneInfo, at: datetime) -> int:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # an aware datetime always has one
    return int(offset.total_seconds())


@functools.cache
def clock_for(zone_name: str) -> LocalClock:
    zone = ZoneInfo(zone_name)
    changes = [-FAR_FUTURE_US]
    offsets = [_offset(zone, SCAN_FROM)]
    day = timedelta(days=1)
    at = SCAN_FROM
    current = offsets[0]
    while at < SCAN_UNTIL:
        nxt = at + day
        off = _offset(zone, nxt)
        if off != current:
            lo, hi = to_micros(at) // US, to_micros(nxt) // US  # offset(lo) = current, (hi) = off
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, EPOCH + timedelta(seconds=mid)) == current:
                    lo = mid
                else:
                    hi = mid
            changes.append(hi * US)
            offsets.append(off)
            current = off
        at = nxt
    return LocalClock(zone_name, tuple(changes), tuple(offsets))
