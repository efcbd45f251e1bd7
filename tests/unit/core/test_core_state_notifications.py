"""State changes worth telling (issue 19 item 2): the auto-downgrade starting and ending, the
smart throttle engaging (budget at risk, loop suspected), a block lifted by hand; each a kind
the tenant can switch off."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from core_builders import (
    MIN,
    T0,
    Harness,
    caps,
    ev,
    ms,
    policy,
    settings,
)
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import AccountState, Notification, PolicySet, SettingsError, reevaluate

NY = "America/New_York"


def kinds(h: Harness) -> list[str]:
    return [n.kind for e in h.log for n in e.notifications]


def of(h: Harness, kind: str) -> list[Notification]:
    return [n for e in h.log for n in e.notifications if n.kind == kind]


def pro(**kw: object) -> Harness:
    tenant = settings(plan="pro", auto_downgrade=True, timezone=NY, **kw)
    return Harness(tenant=tenant)


def restart(h: Harness, now: int) -> Harness:
    acct = h.state.account.to_bytes()
    bots = [b.to_bytes() for b in h.state.bots.values()]
    again = Harness(policies=h.policies, tenant=h.tenant, state=AccountState.load(acct, bots))
    again.offset = h.offset
    again.policy_set = h.policy_set
    _, eff = reevaluate(again.state, again.policy_set, again.tenant, now, alerts=False)
    again.log.append(eff)
    return again


def test_downgrade_start_and_end_are_told_once_each() -> None:
    h = pro(caps=caps(text=(100, None, (), ())))  # cap warnings off: only the downgrade
    at = ms(NY, 2026, 11, 18, 9, 0)
    midnight = ms(NY, 2026, 11, 19, 0, 0)
    for i in range(9):  # 10 credits each: 80 at the 8th
        h.send(ev(i, at + i * MIN, credits=10))
    started = of(h, "downgrade_started")
    assert len(started) == 1 and started[0].created_at_ms == at + 7 * MIN
    assert "claude-haiku replaces claude-sonnet-4-6" in started[0].body
    assert started[0].recipients == ("owner@example.com",)
    h = restart(h, at + 20 * MIN)  # a worker restart tells nothing again
    h.send(ev(20, at + 21 * MIN, credits=1))
    assert not kinds(h)
    h.tick(midnight)
    ended = of(h, "downgrade_ended")
    assert len(ended) == 1 and ended[0].notification_id != started[0].notification_id
    assert "claude-sonnet-4-6 answers again" in ended[0].body
    # the next day's downgrade is another one, with its own id
    for i in range(8):
        h.send(ev(30 + i, midnight + HOUR_NY + i * MIN, credits=10))
    assert [n.kind for n in of(h, "downgrade_started")] == ["downgrade_started"]
    assert of(h, "downgrade_started")[0].notification_id != started[0].notification_id


HOUR_NY = 3_600_000


def test_budget_at_risk_engaging_is_told_once_per_engagement() -> None:
    tz = "Europe/London"
    h = Harness(tenant=settings(throttle="smart", timezone=tz, caps=caps(text=(100_000, None))))
    at = ms(tz, 2026, 11, 18, 8, 0)
    h.send(ev(0, at, credits=1_000))
    assert not of(h, "throttle_engaged")
    h.send(ev(1, at + 2_000, credits=9_000))  # 170,000 projected by midnight
    (note,) = of(h, "throttle_engaged")
    assert (note.bot_id, note.account_id) == ("*", "acc-1")
    assert "text AI credit budget is at risk" in note.subject
    # still at risk in the second half of the hold: extended, not told again
    h.send(ev(2, at + 9 * MIN, credits=9_000))
    assert h.enforcement().throttled_until_ms == at + 9 * MIN + 15 * MIN
    assert len(of(h, "throttle_engaged")) == 1


def test_a_suspected_loop_is_told_with_its_conversation() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    for i in range(25):  # 25 messages in 25 s in conversation loop-7
        h.send(ev(i, T0 + i * 1_000, conv="loop-7"))
    (note,) = of(h, "throttle_engaged")
    assert note.bot_id == "bot-1"
    assert "Conversation loop-7 of bot bot-1" in note.body
    assert "loop" in note.subject


def test_a_block_lifted_by_hand_is_told_once_per_resume() -> None:
    pol = [policy("p", threshold=3, block_s=3600, alert=False)]
    h = Harness(policies=pol)
    for i in range(3):
        h.send(ev(i, T0 + i * MIN))
    assert h.enforcement().blocked_until_ms is not None
    resumed_at = T0 + 10 * MIN
    h.policy_set = PolicySet(pol, resumes={"bot-1": resumed_at})
    h.send(ev(10, T0 + 11 * MIN))
    (note,) = of(h, "block_lifted")
    assert (note.bot_id, note.policy_id) == ("bot-1", "p")
    assert h.enforcement().blocked_until_ms is None
    # a later re-decision (another policy change) does not tell it again
    h.policy_set = PolicySet([*pol, policy("q", threshold=99)], resumes={"bot-1": resumed_at})
    h.send(ev(11, T0 + 12 * MIN))
    assert len(of(h, "block_lifted")) == 1
    # after a restart the lift is recomputed under the same id (the notifier drops it)
    again = restart(h, T0 + 13 * MIN)
    assert [n.notification_id for n in of(again, "block_lifted")] == [note.notification_id]
    # a resume with no block running tells nothing
    g = Harness(policies=pol)
    g.send(ev(0, T0))
    g.policy_set = PolicySet(pol, resumes={"bot-1": T0 + MIN})
    g.send(ev(1, T0 + 2 * MIN))
    assert not of(g, "block_lifted")


def test_the_tenant_switches_kinds_off() -> None:
    muted = ("downgrade_started", "downgrade_ended", "cap_warning", "throttle_engaged")
    h = pro(caps=caps(text=(100, None)), muted_notifications=muted, throttle="smart")
    at = ms(NY, 2026, 11, 18, 9, 0)
    for i in range(10):
        h.send(ev(i, at + i * MIN, credits=10))
    h.tick(ms(NY, 2026, 11, 19, 0, 0))
    assert kinds(h) == ["cap_reached"]
    assert h.enforcement().downgraded_until_ms is None  # the downgrade itself still ran
    with pytest.raises(SettingsError, match="cannot be switched off"):
        settings(muted_notifications=("cap_reached",))


@hsettings(max_examples=500, deadline=None)
@given(at=st.integers(-30 * 10**12, 253_402_300_799_999))  # years 1019 to 9999
def test_times_in_notification_texts_read_as_strftime_writes_them(at: int) -> None:
    """The words carry instants as ``2026-11-18 12:00 UTC``: formatted from the fields
    (cheaper), exactly what ``strftime("%Y-%m-%d %H:%M UTC")`` gave, in alerts and forecasts."""
    from capstream.core import forecast, notifications

    expected = datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert notifications._iso(at) == expected
    assert forecast._iso(at) == expected
