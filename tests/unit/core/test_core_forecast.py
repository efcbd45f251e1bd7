"""Forecast alerts (core/forecast.py): a cap in reach within the lead time at the current
pace sends one ``cap_forecast`` per period, across restarts (state through bytes) and
replays (same ids); a pace that does not reach the cap in time sends none."""

from __future__ import annotations

import pytest
from core_builders import ACC, HOUR, MIN, Harness, caps, ev, ms, settings

from capstream.core import AccountState, Notification, SettingsError, reevaluate

CR = 1_000_000
DAY0 = ms("UTC", 2026, 11, 18, 0, 0)
LEAD = 2 * 3600  # two hours ahead


def forecasts(h: Harness) -> list[Notification]:
    return h.notes("cap_forecast")


def spend(h: Harness, start: int, minutes: int, per_minute: int, first: int = 0) -> None:
    """One text event a minute from ``start`` spending ``per_minute`` micro-credits."""
    for i in range(minutes):
        h.send(ev(first + i, start + i * MIN, credits=per_minute))


def daily(lead: int | None = LEAD, cap: int = 100 * CR, **kw: object) -> Harness:
    return Harness(tenant=settings(caps=caps(text=(cap, None, (), (), lead, None)), **kw))


def test_a_steady_pace_reaching_the_daily_cap_within_the_lead_fires_once() -> None:
    h = daily()
    # 30 credits an hour: the cap of 100 is reached at 3 h 20 min; two hours ahead of that
    # is 1 h 20 min, once 40 credits are spent (the hour's ring counts up to one minute
    # more: a minute or two earlier).
    spend(h, DAY0, 6 * 60, CR // 2)
    sent = forecasts(h)
    assert len(sent) == 1
    n = sent[0]
    assert DAY0 + 76 * MIN <= n.created_at_ms <= DAY0 + 80 * MIN
    assert n.recipients == ("owner@example.com",)
    assert n.subject.startswith("Daily text AI credit cap in reach in about 2 h")
    assert "2026-11-18" in n.body and "of the daily cap of 100 credits" in n.body
    # ... and it came before the cap itself
    reached = h.notes("cap_reached")
    assert len(reached) == 1 and reached[0].created_at_ms > n.created_at_ms + HOUR


def test_a_pace_that_does_not_reach_the_cap_in_time_sends_nothing() -> None:
    # 3 credits an hour: 72 a day, under the cap of 100 until midnight
    h = daily()
    spend(h, DAY0, 24 * 60 - 1, CR // 20)
    assert forecasts(h) == []
    # 12 credits an hour reaches the cap after 8 h 20 min: not yet two hours ahead at 6 h
    h = daily()
    spend(h, DAY0, 6 * 60, CR // 5)
    assert forecasts(h) == []


def test_no_lead_no_forecast_and_the_lead_needs_its_cap() -> None:
    h = daily(lead=None)
    spend(h, DAY0, 4 * 60, CR // 2)
    assert forecasts(h) == [] and h.notes("cap_reached")
    with pytest.raises(SettingsError, match="daily forecast lead needs a daily cap"):
        settings(caps=caps(text=(None, 500 * CR, (), (), LEAD, None)))
    with pytest.raises(SettingsError, match="monthly forecast lead must be 60-2678400"):
        settings(caps=caps(text=(None, 500 * CR, (), (), None, 30)))


def test_a_new_day_fires_again_and_a_restart_or_replay_does_not() -> None:
    h = daily()
    spend(h, DAY0, 3 * 60, CR // 2)
    assert len(forecasts(h)) == 1
    # restart: the state through its bytes, reevaluated without alerts like the processor
    acct = h.state.account.to_bytes()
    bots = [b.to_bytes() for b in h.state.bots.values()]
    again = Harness(tenant=h.tenant, state=AccountState.load(acct, bots))
    again.offset = h.offset
    reevaluate(again.state, again.policy_set, again.tenant, DAY0 + 3 * HOUR, alerts=False)
    spend(again, DAY0 + 3 * HOUR, 30, CR // 2, first=1000)
    assert forecasts(again) == []
    # the next local day: the same pace forecasts again, under another id
    spend(again, DAY0 + 24 * HOUR, 3 * 60, CR // 2, first=2000)
    (second,) = forecasts(again)
    assert "2026-11-19" in second.body
    assert second.notification_id != forecasts(h)[0].notification_id
    # a replay of the first day's events decides the same notification, same id
    replay = daily()
    spend(replay, DAY0, 3 * 60, CR // 2)
    assert [n.notification_id for n in forecasts(replay)] == [
        n.notification_id for n in forecasts(h)
    ]
    assert forecasts(replay)[0].created_at_ms == forecasts(h)[0].created_at_ms


def test_the_monthly_cap_at_the_month_to_date_pace() -> None:
    start = ms("UTC", 2026, 11, 1, 0, 0)
    # 100 credits a day against a monthly cap of 1,000 (reached on the 11th); a lead of
    # two days fires once the month-to-date pace reaches it within two days: with 800
    # credits spent, at the end of the 8th day
    h = Harness(tenant=settings(caps=caps(text=(None, 1000 * CR, (), (), None, 2 * 86_400))))
    for d in range(12):
        for i in range(24):
            h.send(ev(d * 24 + i, start + d * 24 * HOUR + i * HOUR, credits=100 * CR // 24))
    (n,) = forecasts(h)
    assert start + 7 * 24 * HOUR + 22 * HOUR <= n.created_at_ms <= start + 8 * 24 * HOUR
    assert n.subject.startswith("Monthly text AI credit cap in reach in about")
    assert n.account_id == ACC
