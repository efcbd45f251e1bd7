"""Local days and months, and cap resume instants, across DST changes and skipped days."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from core_builders import ACC, ms
from core_builders import settings as tenant_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capstream.core import (
    AccountState,
    PolicySet,
    SettingsError,
    day_period,
    first_of_next_month,
    month_period,
    next_local_midnight,
    reevaluate,
)
from capstream.core.recompute import new_bot
from capstream.core.usage import BotUsage

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
]
# 2010..2030 covers Apia's DST years and its 2011 dateline jump, and Lord Howe's half-hour DST.
INSTANTS = st.integers(ms("UTC", 2010, 1, 1), ms("UTC", 2030, 12, 31))


def _changes(tz: str) -> list[int]:
    """Instants (to the day) around which ``tz`` changed its UTC offset, 2010-2030."""
    zone, out = ZoneInfo(tz), []
    t = ms("UTC", 2010, 1, 1)
    prev = datetime.fromtimestamp(t / 1000, zone).utcoffset()
    while t < ms("UTC", 2031, 1, 1):
        t += 86_400_000
        off = datetime.fromtimestamp(t / 1000, zone).utcoffset()
        if off != prev:
            out.append(t)
        prev = off
    return out


CHANGES = [(tz, t) for tz in ZONES for t in _changes(tz)]
NEAR_CHANGES = st.tuples(
    st.sampled_from(CHANGES), st.integers(-3 * 86_400_000, 2 * 86_400_000)
).map(lambda c: (c[0][1] + c[1], c[0][0]))


def local(ms_: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, ZoneInfo(tz))


def scan_day_start(ms_: int, tz: str) -> int:
    """Oracle: walk back minute by minute (zone changes fall on whole minutes)."""
    day = local(ms_, tz).date()
    t = ms_ - ms_ % 60_000
    while local(t - 60_000, tz).date() == day:
        t -= 60_000
    return t


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=INSTANTS, tz=st.sampled_from(ZONES))
def test_local_day_is_the_span_of_instants_with_that_local_date(at: int, tz: str) -> None:
    p = day_period(at, tz)
    assert p.start_ms <= at < p.end_ms
    assert p.key == local(at, tz).date().isoformat()
    assert local(p.start_ms, tz).date().isoformat() == p.key
    assert local(p.start_ms - 1, tz).date().isoformat() < p.key
    assert local(p.end_ms - 1, tz).date().isoformat() == p.key
    assert local(p.end_ms, tz).date().isoformat() > p.key
    hours = (p.end_ms - p.start_ms) / 3_600_000
    assert hours in {23, 23.5, 24, 24.5, 25}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=NEAR_CHANGES)
def test_days_next_to_offset_changes_are_bounded_by_their_midnights(case: tuple[int, str]) -> None:
    at, tz = case
    p = day_period(at, tz)
    assert p.start_ms <= at < p.end_ms
    assert local(p.start_ms - 1, tz).date() < local(at, tz).date() < local(p.end_ms, tz).date()
    assert (p.end_ms - p.start_ms) / 3_600_000 in {23, 23.5, 24, 24.5, 25}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=NEAR_CHANGES)
def test_day_start_matches_a_minute_scan(case: tuple[int, str]) -> None:
    at, tz = case
    assert day_period(at, tz).start_ms == scan_day_start(at, tz)


def test_the_five_zones_change_offset_where_expected() -> None:
    # Guards the property tests above: they must see real DST changes in every zone but
    # Kathmandu (fixed +05:45), including Apia's dateline jump.
    per_zone = {tz: len(_changes(tz)) for tz in ZONES}
    assert per_zone["Asia/Kathmandu"] == 0
    assert all(per_zone[tz] >= 20 for tz in ZONES if tz != "Asia/Kathmandu")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=INSTANTS, tz=st.sampled_from(ZONES))
def test_month_resumes_at_local_midnight_on_the_first(at: int, tz: str) -> None:
    p = month_period(at, tz)
    here = local(at, tz)
    assert p.key == f"{here.year:04d}-{here.month:02d}"
    assert p.start_ms <= at < p.end_ms
    resume = local(first_of_next_month(at, tz), tz)
    assert resume.day == 1
    assert (resume.year, resume.month) == (
        (here.year + 1, 1) if here.month == 12 else (here.year, here.month + 1)
    )
    assert (resume.hour, resume.minute) == (0, 0)
    assert local(first_of_next_month(at, tz) - 1, tz).month == here.month


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/London", date(2026, 3, 29), 23),
        ("Europe/London", date(2026, 10, 25), 25),
        ("Australia/Lord_Howe", date(2026, 10, 4), 23.5),
        ("Australia/Lord_Howe", date(2026, 4, 5), 24.5),
        ("Pacific/Apia", date(2010, 9, 26), 23),
        ("Pacific/Apia", date(2021, 4, 4), 25),
        ("Asia/Kathmandu", date(2026, 6, 1), 24),
    ],
)
def test_dst_days_have_their_real_length(tz: str, day: date, hours: float) -> None:
    noon = ms(tz, day.year, day.month, day.day, 12, 0)
    p = day_period(noon, tz)
    assert p.key == day.isoformat()
    assert (p.end_ms - p.start_ms) / 3_600_000 == hours


def test_daily_cap_hit_late_on_a_dst_night_resumes_at_the_real_midnight() -> None:
    # 23:30 on the night New York falls back (the day is 25 h long): resume at 00:00 next day.
    hit = ms("America/New_York", 2026, 11, 1, 23, 30)
    resume = next_local_midnight(hit, "America/New_York")
    assert local(resume, "America/New_York").isoformat() == "2026-11-02T00:00:00-05:00"
    assert resume - hit == 30 * 60_000


def test_apia_skipped_a_whole_day_so_the_29th_ends_at_the_31st() -> None:
    late = ms("Pacific/Apia", 2011, 12, 29, 23, 0)
    resume = next_local_midnight(late, "Pacific/Apia")
    assert local(resume, "Pacific/Apia").date() == date(2011, 12, 31)
    assert resume - late == 3_600_000  # one hour later, a calendar day was skipped


def test_kathmandu_midnight_that_never_happened_starts_the_day_at_the_change() -> None:
    # 1986-01-01: clocks went from 00:00 +05:30 straight to 00:15 +05:45.
    p = day_period(ms("Asia/Kathmandu", 1986, 1, 1, 12, 0), "Asia/Kathmandu")
    start = local(p.start_ms, "Asia/Kathmandu")
    assert (start.hour, start.minute) == (0, 15)
    assert p.start_ms == scan_day_start(p.start_ms + 3_600_000, "Asia/Kathmandu")


def test_lord_howe_half_hour_change_keeps_midnight_resume() -> None:
    at = ms("Australia/Lord_Howe", 2026, 10, 3, 22, 0)
    resume = local(next_local_midnight(at, "Australia/Lord_Howe"), "Australia/Lord_Howe")
    assert resume.date() == date(2026, 10, 4)
    assert (resume.hour, resume.minute) == (0, 0)
    assert resume.utcoffset() == timedelta(hours=10, minutes=30)


def test_unknown_timezone_is_a_settings_error_naming_the_fix() -> None:
    with pytest.raises(SettingsError, match="IANA"):
        day_period(0, "Mars/Olympus_Mons")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tz=st.sampled_from(ZONES),
    first=INSTANTS,
    later=st.one_of(st.integers(0, 86_400_000), st.integers(0, 40 * 86_400_000)),
)
def test_a_new_bot_counts_in_the_same_local_periods_as_computing_them_from_its_clock(
    tz: str, first: int, later: int
) -> None:
    """A bot first seen takes its account's current day, week and month when ``now`` is in
    all three (not computed from the calendar again); the result is what rolling a fresh bot
    to ``now`` gives, across DST changes, skipped days and month ends."""
    state = AccountState(ACC)
    reevaluate(state, PolicySet([]), tenant_settings(timezone=tz), first)
    now = first + later
    fields = ("day_key", "day_start_ms", "day_end_ms", "week_key", "week_start_ms",
              "week_end_ms", "month_key", "month_start_ms", "month_end_ms", "day",
              "week_base", "month_base", "timezone")  # fmt: skip
    bot = new_bot(state, "b", now)
    ref = BotUsage(ACC, timezone=tz, bot_id="b")
    ref.roll_to(now)
    assert [getattr(bot, f) for f in fields] == [getattr(ref, f) for f in fields]
