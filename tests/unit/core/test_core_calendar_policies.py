"""Calendar policies (issue 24.4): a policy counting over the tenant's local day, week or
month, reset at its start, alerting once per period per (policy, bot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_builders import HOUR, MIN, Harness, ev, ms, policy, settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import (
    AccountState,
    AccountUsage,
    AlertAction,
    BotUsage,
    Policy,
    PolicyError,
    PolicySet,
    reevaluate,
)
from capstream.core.periods import week_period

KHI = "Asia/Karachi"  # UTC+5, no DST
# Monday 2026-11-16 is the first day of ISO week 47.
MON = ms(KHI, 2026, 11, 16, 9, 0)


def _weekly(**kw: object) -> Harness:
    return Harness(
        policies=[policy("p-week", metric="tokens", threshold=1_000, period="week", **kw)],  # type: ignore[arg-type]
        tenant=settings(timezone=KHI),
    )


def test_a_weekly_policy_counts_across_the_days_of_the_local_week_and_alerts_once() -> None:
    h = _weekly()
    for day in range(4):  # 300 tokens a day, Monday to Thursday: 1,200 by Thursday
        h.send(ev(day, MON + day * 24 * HOUR, tokens=300))
    alerts = h.notes("policy_alert")
    assert len(alerts) == 1
    assert alerts[0].window_start_ms == ms(KHI, 2026, 11, 16, 0, 0)  # local Monday 00:00
    assert "1200 this week" in alerts[0].body
    # More usage the same week sends nothing more (a rolling window would re-arm after it).
    for i in range(4, 8):
        h.send(ev(i, MON + 3 * 24 * HOUR + i * HOUR, tokens=500))
    assert len(h.notes("policy_alert")) == 1


def test_the_week_resets_at_local_monday_midnight_not_utc() -> None:
    h = _weekly()
    sunday_late = ms(KHI, 2026, 11, 22, 23, 30)  # Sunday 18:30 UTC
    h.send(ev(0, sunday_late, tokens=900))
    monday_early = ms(KHI, 2026, 11, 23, 0, 30)  # Sunday 19:30 UTC: a new local week
    h.send(ev(1, monday_early, tokens=900))
    assert h.notes("policy_alert") == []
    h.send(ev(2, monday_early + MIN, tokens=100))
    (alert,) = h.notes("policy_alert")
    assert alert.window_start_ms == ms(KHI, 2026, 11, 23, 0, 0)


def test_a_new_week_re_arms_the_alert_and_a_replay_gives_the_same_ids() -> None:
    def run() -> list[str]:
        h = _weekly()
        for week in range(3):
            h.send(ev(week, MON + week * 7 * 24 * HOUR, tokens=1_500))
        return [n.notification_id for n in h.notes("policy_alert")]

    first = run()
    assert len(first) == len(set(first)) == 3
    assert run() == first


def test_a_daily_policy_blocks_and_the_next_local_day_counts_afresh() -> None:
    h = Harness(
        policies=[policy("p-day", threshold=3, period="day", block_s=600, alert=False)],
        tenant=settings(timezone=KHI),
    )
    evening = ms(KHI, 2026, 11, 17, 22, 0)
    for i in range(3):
        h.send(ev(i, evening + i * MIN))
    assert h.enforcement().blocked_until_ms == evening + 2 * MIN + 600_000
    after_midnight = ms(KHI, 2026, 11, 18, 0, 5)
    for i in range(3, 5):
        h.send(ev(i, after_midnight + i * MIN))
    e = h.enforcement()
    assert e.blocked_until_ms is None or e.blocked_until_ms <= after_midnight


def test_a_monthly_policy_counts_a_late_event_from_an_earlier_day_of_the_month() -> None:
    h = Harness(
        policies=[policy("p-month", metric="credits", threshold=10_000, period="month")],
        tenant=settings(timezone=KHI),
    )
    now = ms(KHI, 2026, 11, 20, 12, 0)
    h.send(ev(0, now, credits=6_000))
    h.send(ev(1, ms(KHI, 2026, 11, 3, 12, 0), credits=5_000), now=now + MIN)  # late
    (alert,) = h.notes("policy_alert")
    assert alert.window_start_ms == ms(KHI, 2026, 11, 1, 0, 0)
    # An event from last month counts in no total of this month, and decides nothing.
    h2 = Harness(policies=h.policies, tenant=h.tenant)
    h2.send(ev(0, now, credits=6_000))
    h2.send(ev(1, ms(KHI, 2026, 10, 30, 12, 0), credits=5_000), now=now + MIN)
    assert h2.notes("policy_alert") == []


def test_a_late_event_from_an_earlier_day_of_the_week_counts_in_the_week() -> None:
    h = _weekly()
    wednesday = MON + 2 * 24 * HOUR
    h.send(ev(0, wednesday, tokens=600))
    h.send(ev(1, MON + HOUR, tokens=600), now=wednesday + MIN)  # Monday's, arriving late
    assert len(h.notes("policy_alert")) == 1


def test_lowering_a_calendar_threshold_below_the_period_total_fires_at_once() -> None:
    h = _weekly()
    h.send(ev(0, MON, tokens=800))
    h.send(ev(1, MON + 24 * HOUR, tokens=100))
    lower = [policy("p-week", metric="tokens", threshold=500, period="week")]
    _, eff = reevaluate(h.state, PolicySet(lower), h.tenant, MON + 24 * HOUR + MIN)
    assert [n.kind for n in eff.notifications] == ["policy_alert"]
    assert "900 this week" in eff.notifications[0].body


def test_the_week_survives_a_restore_and_the_alert_is_not_sent_twice() -> None:
    h = _weekly()
    h.send(ev(0, MON, tokens=600))
    h.send(ev(1, MON + 24 * HOUR, tokens=600))
    assert len(h.notes("policy_alert")) == 1
    acct = h.state.account
    again = AccountUsage.from_bytes(acct.to_bytes())
    assert again.week_base == acct.week_base and again.week_key == "2026-W47"
    h.state = AccountState.load(acct.to_bytes(), [b.to_bytes() for b in h.state.bots.values()])
    reevaluate(h.state, h.policy_set, h.tenant, MON + 2 * 24 * HOUR, alerts=False, blocks=False)
    h.send(ev(2, MON + 2 * 24 * HOUR, tokens=10))
    assert len(h.notes("policy_alert")) == 1
    h.send(ev(3, MON + 7 * 24 * HOUR, tokens=1_000))  # next week
    assert len(h.notes("policy_alert")) == 2


def test_states_written_before_week_totals_read_and_count_the_week_from_their_day() -> None:
    # Written by the release before (CSUA v3 / CSUB v4): 6 messages of 200 tokens on
    # 2026-11-18 (Asia/Karachi), p-msg's block running.
    data = Path(__file__).parent / "data"
    raw_acct, raw_bot = (data / "account_v3.bin").read_bytes(), (data / "bot_v4.bin").read_bytes()
    assert raw_acct[:5] == b"CSUA\x03" and raw_bot[:5] == b"CSUB\x04"
    acct, bot = AccountUsage.from_bytes(raw_acct), BotUsage.from_bytes(raw_bot)
    assert acct.day[0] == 1_200 and bot.blocks
    assert acct.week_key == bot.week_key == "2026-W47"
    assert acct.week_base == [0] * 8  # the week counts from the state's day: today's 1,200
    assert AccountUsage.from_bytes(acct.to_bytes()) == acct
    assert acct.to_bytes()[:5] == b"CSUA\x05" and bot.to_bytes()[:5] == b"CSUB\x05"
    state = AccountState.load(raw_acct, [raw_bot])
    h = _weekly()
    h.state, h.offset = state, 100  # past the fixture's watermark
    reevaluate(state, h.policy_set, h.tenant, ms(KHI, 2026, 11, 19, 9, 0), alerts=False)
    assert state.account.week_base[0] == 1_200  # the 18th folded into the week at the roll
    h.send(ev(101, ms(KHI, 2026, 11, 19, 9, 1), tokens=100))
    (alert,) = h.notes("policy_alert")
    assert "1300 this week" in alert.body


def test_week_periods_follow_the_local_calendar_across_dst_and_year_ends() -> None:
    london = "Europe/London"
    p = week_period(ms(london, 2026, 3, 29, 12, 0), london)  # Sunday of the DST change
    assert p.key == "2026-W13"
    assert p.start_ms == ms(london, 2026, 3, 23, 0, 0)
    assert p.end_ms - p.start_ms == 7 * 24 * HOUR - HOUR  # a 167-hour week
    assert week_period(ms("UTC", 2027, 1, 1, 12, 0), "UTC").key == "2026-W53"


@pytest.mark.parametrize(
    ("window", "period", "message"),
    [
        (3600, "week", "has no rolling window"),
        (0, "fortnight", "period must be one of"),
        (0, None, "window_seconds must be between"),
    ],
)
def test_calendar_policies_refuse_what_cannot_be_enforced(
    window: int, period: str | None, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy("p", "acc-1", "n", "tokens", 10, window, "account_total", None, AlertAction(),
               None, period=period)  # fmt: skip


def test_the_api_can_say_a_calendar_policy_counts_its_whole_period_at_once() -> None:
    from capstream.core.seeding import CALENDAR, NONE, window_seeding

    week = policy("p-week", metric="tokens", threshold=1_000, period="week")
    seeding = window_seeding(week, [])
    assert seeding.kind == CALENDAR and "current week" in seeding.message
    # A calendar policy holds no ring: a rolling policy of its metric has none to seed from.
    assert window_seeding(policy("p-hour", metric="tokens"), [week]).kind == NONE


@st.composite
def _arrivals(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """(arrival ms, lateness ms, tokens) over three weeks, arrivals in order."""
    n = draw(st.integers(1, 40))
    gaps = draw(st.lists(st.integers(0, 36 * HOUR), min_size=n, max_size=n))
    late = draw(st.lists(st.sampled_from([0, 0, 0, MIN, 20 * HOUR, 4 * 24 * HOUR]),
                         min_size=n, max_size=n))  # fmt: skip
    tokens = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n))
    out, at = [], MON - 2 * 24 * HOUR
    for gap, lateness, amount in zip(gaps, late, tokens, strict=True):
        at += gap
        out.append((at, lateness, amount))
    return out


@given(_arrivals())
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_weekly_alerts_match_a_brute_force_of_the_local_calendar(
    rows: list[tuple[int, int, int]],
) -> None:
    # Reference: an event counts in the week (local, from Monday) holding its time if that
    # is the current week when it arrives; the policy alerts at the first event that brings
    # the week's total to the threshold, once per week.
    h = Harness(
        policies=[policy("p-week", metric="tokens", threshold=1_000, period="week",
                         scope="account_total")],
        tenant=settings(timezone=KHI),
    )  # fmt: skip
    totals: dict[str, int] = {}
    alerted: set[str] = set()
    expected: list[int] = []
    for i, (arrival, lateness, amount) in enumerate(rows):
        t = arrival - lateness
        h.send(ev(i, t, tokens=amount, messages=1), now=arrival)
        week = week_period(arrival, KHI)
        if t < week.start_ms:
            continue
        totals[week.key] = totals.get(week.key, 0) + amount
        if totals[week.key] >= 1_000 and week.key not in alerted:
            alerted.add(week.key)
            expected.append(t)
    got = [(n.window_start_ms, n.notification_id) for n in h.notes("policy_alert")]
    assert [start for start, _ in got] == [week_period(t, KHI).start_ms for t in expected]
