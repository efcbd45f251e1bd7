"""Calendar days, weeks (ISO, from Monday) and months in a tenant's timezone: keys, bounds
and resume instants, DST-safe.

A local day is the span of instants whose local date is that day: 23 or 25 hours on DST
changes (23.5/24.5 in Australia/Lord_Howe), and a day a zone skipped (Pacific/Apia,
2011-12-30) has no instants at all. ``end_ms`` of a day is the next local midnight (the first
instant of the next day that exists); ``end_ms`` of a month is local 00:00 on the first of the
next month. All instants are epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from capstream.core.errors import SettingsError

_DAY = timedelta(days=1)
_SEARCH_SPAN_S = 40 * 3600  # local midnight lies within ±(14 h offset + gaps) of UTC midnight


@dataclass(frozen=True, slots=True)
class Period:
    """One local calendar day or month: its key and the half-open span [start_ms, end_ms)."""

    key: str
    start_ms: int
    end_ms: int

    def __contains__(self, ms: int) -> bool:
        return self.start_ms <= ms < self.end_ms


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises :class:`SettingsError` if it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise SettingsError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/London'"
        ) from exc


def local_date(ms: int, tz: ZoneInfo) -> date:
    """The local calendar date at instant ``ms``."""
    return datetime.fromtimestamp(ms // 1000, tz).date()


def _first_instant(d: date, tz: ZoneInfo) -> int:
    """The first instant (ms) whose local date is ``d`` or later."""
    for fold in (0, 1):
        guess = int(datetime(d.year, d.month, d.day, fold=fold, tzinfo=tz).timestamp()) * 1000
        if local_date(guess, tz) >= d > local_date(guess - 1, tz):
            return guess
    # Midnight does not exist (a gap across it, or the whole day skipped): binary search in
    # whole seconds, relying on local dates never going backwards across midnight.
    utc_midnight = (d - date(1970, 1, 1)).days * 86_400
    lo, hi = utc_midnight - _SEARCH_SPAN_S, utc_midnight + _SEARCH_SPAN_S
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).date() >= d:
            hi = mid
        else:
            lo = mid + 1
    return lo * 1000


@lru_cache(maxsize=8192)
def _day(tz_name: str, ordinal: int) -> Period:
    tz = zone(tz_name)
    d = date.fromordinal(ordinal)
    return Period(d.isoformat(), _first_instant(d, tz), _first_instant(d + _DAY, tz))


@lru_cache(maxsize=4096)
def _month(tz_name: str, year: int, month: int) -> Period:
    tz = zone(tz_name)
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    return Period(
        f"{year:04d}-{month:02d}", _first_instant(first, tz), _first_instant(following, tz)
    )


def day_period(ms: int, tz_name: str) -> Period:
    """The tenant's local day containing instant ``ms`` (key ``YYYY-MM-DD``)."""
    return _day(tz_name, local_date(ms, zone(tz_name)).toordinal())


@lru_cache(maxsize=4096)
def _week(tz_name: str, monday: int) -> Period:
    tz = zone(tz_name)
    d = date.fromordinal(monday)
    year, week, _ = d.isocalendar()
    return Period(
        f"{year:04d}-W{week:02d}", _first_instant(d, tz), _first_instant(d + 7 * _DAY, tz)
    )


def week_period(ms: int, tz_name: str) -> Period:
    """The tenant's local ISO week containing instant ``ms``: from local Monday 00:00 to the
    next (key ``YYYY-Www``, the ISO year and week number)."""
    d = local_date(ms, zone(tz_name))
    return _week(tz_name, d.toordinal() - d.weekday())


def month_period(ms: int, tz_name: str) -> Period:
    """The tenant's local month containing instant ``ms`` (key ``YYYY-MM``)."""
    d = local_date(ms, zone(tz_name))
    return _month(tz_name, d.year, d.month)


def next_local_midnight(ms: int, tz_name: str) -> int:
    """When a daily cap hit at ``ms`` resumes: the next local midnight."""
    return day_period(ms, tz_name).end_ms


def first_of_next_month(ms: int, tz_name: str) -> int:
    """When a monthly cap hit at ``ms`` resumes: local 00:00 on the first of next month."""
    return month_period(ms, tz_name).end_ms
