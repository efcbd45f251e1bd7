"""Soft thresholds: warning levels of usage policies (per window) and of caps (per period),
each sent once, across restarts (state through bytes) and replays (same ids)."""

from __future__ import annotations

import pytest
from core_builders import ACC, HOUR, MIN, T0, Harness, ev, ms, policy, settings

from capstream.core import (
    AccountState,
    CategoryCaps,
    Notification,
    PolicyError,
    PolicySet,
    SettingsError,
    TenantSettings,
    UsageEvent,
    evaluate,
    expire,
    reevaluate,
)

DAY = 24 * HOUR
CR = 1_000_000  # one credit in micro-credits


def warnings(effects: list[Notification], kind: str = "policy_warning") -> list[str]:
    """``kind`` notifications as 'percent@bot' (policy) or 'period percent' (cap) labels."""
    out = []
    for n in effects:
        if n.kind != kind:
            continue
        pct = n.subject.split(" at ")[1].split("%")[0]
        label = f"{pct}@{n.bot_id}" if kind == "policy_warning" else f"{n.subject.split()[0]} {pct}"
        out.append(label)
    return out


def notes(h: Harness) -> list[Notification]:
    return [n for e in h.log for n in e.notifications]


def restart(h: Harness, now: int) -> Harness:
    """The worker's restart: the state through its two tables' bytes, then a reevaluate
    without alerts (as the processor does after loading)."""
    acct = h.state.account.to_bytes()
    bots = [b.to_bytes() for b in h.state.bots.values()]
    again = Harness(policies=h.policies, tenant=h.tenant, state=AccountState.load(acct, bots))
    again.offset = h.offset
    _, eff = reevaluate(again.state, again.policy_set, again.tenant, now, alerts=False)
    again.log.append(eff)
    return again


def test_each_policy_warning_level_fires_once_per_window_across_a_restart() -> None:
    h = Harness(policies=[policy("p", threshold=10, window=3600, warn=None)])
    for i in range(6):  # 6 messages: 50% (5 of 10) reached at the 5th
        h.send(ev(i, T0 + i * MIN))
    assert warnings(notes(h)) == ["50@bot-1"]
    h = restart(h, T0 + 6 * MIN)
    for i in range(6, 14):
        h.send(ev(i, T0 + i * MIN))
    sent = notes(h)
    assert warnings(sent) == ["80@bot-1", "90@bot-1"]  # 50% not again after the restart
    assert [n.kind for n in sent] == ["policy_warning", "policy_warning", "policy_alert"]
    alert = sent[-1]
    assert alert.created_at_ms == T0 + 9 * MIN  # the 10th message
    # A window later every level is armed again, and each fires once more
    for i in range(14, 30):
        h.send(ev(i, T0 + 2 * HOUR + i * MIN))
    later = notes(h)[3:]
    assert warnings(later) == ["50@bot-1", "80@bot-1", "90@bot-1"]
    assert [n.kind for n in later][-1] == "policy_alert"
    assert len({n.notification_id for n in notes(h)}) == len(notes(h))


def test_one_event_crossing_several_levels_sends_the_highest_only() -> None:
    h = Harness(policies=[policy("p", threshold=10, warn=None)])
    h.send(ev(1, T0, messages=8))
    assert warnings(notes(h)) == ["80@bot-1"]
    h.send(ev(2, T0 + MIN, messages=1))
    assert warnings(notes(h)) == ["80@bot-1", "90@bot-1"]
    # straight over the threshold: the alert says it, no warning with it
    g = Harness(policies=[policy("p", threshold=10, warn=None)])
    g.send(ev(1, T0, messages=12))
    assert [n.kind for n in notes(g)] == ["policy_alert"]
    g.send(ev(2, T0 + MIN, messages=1))
    assert [n.kind for n in notes(g)] == ["policy_alert"]  # the levels count as sent
    # a block-only policy has no alert: its highest level crossed warns
    b = Harness(policies=[policy("p", threshold=10, alert=False, block_s=600, warn=None)])
    b.send(ev(1, T0, messages=12))
    assert warnings(notes(b)) == ["90@bot-1"]
    assert b.enforcement().blocked_until_ms == T0 + 600_000


def test_warning_levels_are_editable_or_off_and_validated() -> None:
    h = Harness(policies=[policy("p", threshold=100, warn=(70, 25))])
    for i in range(100):
        h.send(ev(i, T0 + i * 1000))
    assert warnings(notes(h)) == ["25@bot-1", "70@bot-1"]
    sent = [n for n in notes(h) if n.kind == "policy_warning"]
    assert "messages: 25 in the last 1 hour" in sent[0].body
    assert sent[0].recipients == ("owner@example.com",)
    off = Harness(policies=[policy("p", threshold=100, warn=())])
    for i in range(100):
        off.send(ev(i, T0 + i * 1000))
    assert [n.kind for n in notes(off)] == ["policy_alert"]
    for bad, word in (((0,), "1 to 99"), ((100,), "1 to 99"), ((50, 50), "repeat"),
                      (tuple(range(1, 12)), "at most 10")):  # fmt: skip
        with pytest.raises(PolicyError, match=word):
            policy("p", warn=bad)
    with pytest.raises(SettingsError, match="daily text cap's warn_percents"):
        TenantSettings(ACC, caps={"text": CategoryCaps(10, None, (120,))})


def test_policy_warning_ids_are_replay_stable_and_name_the_account() -> None:
    pol = [policy("p", threshold=10, warn=None, scope="account_total")]
    h = Harness(policies=pol)
    h.send(ev(0, T0))
    snapshot = h.state.account.to_bytes(), [b.to_bytes() for b in h.state.bots.values()]
    for i in range(1, 10):
        h.send(ev(i, T0 + i * MIN))
    first = [n.notification_id for n in notes(h) if n.kind == "policy_warning"]
    assert len(first) == 3
    assert {n.bot_id for n in notes(h) if n.kind == "policy_warning"} == {"*"}
    # Replay the same records into a state restored from before them, at another wall clock
    replay = Harness(policies=pol, state=AccountState.load(*snapshot))
    replay.offset = 1
    reevaluate(replay.state, replay.policy_set, replay.tenant, T0 + 30 * MIN, alerts=False)
    for i in range(1, 10):
        replay.send(ev(i, T0 + i * MIN), now=T0 + 30 * MIN)
    assert [n.notification_id for n in notes(replay) if n.kind == "policy_warning"] == first
    # Another account's identical usage gets other ids
    other = "zeta"
    state = AccountState(other)
    ps = PolicySet([policy_for(other)])
    tenant = TenantSettings(other, owner_email="o@zeta.example", throttle="off")
    ids = []
    for i in range(10):
        e = UsageEvent(f"e{i}", other, "bot-1", "c1", "text", "m", 0, 0, 1, False, 0, T0 + i * MIN)
        _, eff = evaluate(state, e, ps, tenant, T0 + i * MIN, partition=0, offset=i)
        ids += [n.notification_id for n in eff.notifications if n.kind == "policy_warning"]
    assert len(ids) == 3 and not set(ids) & set(first)


def policy_for(account: str) -> object:
    from dataclasses import replace

    return replace(policy("p", threshold=10, warn=None, scope="account_total"), account_id=account)


def cap_settings(**kw: object) -> TenantSettings:
    return settings(
        plan="pro",
        caps={"text": CategoryCaps(100 * CR, 1000 * CR, **kw)},  # type: ignore[arg-type]
    )


def test_each_cap_warning_level_fires_once_per_period_across_a_restart() -> None:
    h = Harness(tenant=cap_settings())
    t = T0
    for i in range(6):  # 60 credits today: 50% of the daily cap
        h.send(ev(i, t + i * MIN, credits=10 * CR))
    assert warnings(notes(h), "cap_warning") == ["Daily 50"]
    h = restart(h, t + 7 * MIN)
    assert not notes(h)
    for i in range(6, 10):  # 100 credits: 80%, 90%, then the cap itself
        h.send(ev(i, t + i * MIN, credits=10 * CR))
    assert warnings(notes(h), "cap_warning") == ["Daily 80", "Daily 90"]
    assert [n.kind for n in notes(h)][-1] == "cap_reached"
    daily = [n for n in notes(h) if n.kind == "cap_warning"]
    assert "80 of 100 credits" in daily[0].body
    # the next local day: the daily levels fire again (once), the monthly at its own levels
    h = restart(h, T0 + DAY)
    h.tick(T0 + DAY)
    for i in range(10, 22):
        h.send(ev(i, T0 + DAY + i * MIN, credits=9 * CR))
    got = warnings(notes(h), "cap_warning")
    assert got.count("Daily 50") == 1 and got.count("Daily 80") == 1
    assert got.count("Daily 90") == 1
    assert "Monthly 50" not in got  # 100 + 99 credits this month, under 500
    ids = [n.notification_id for n in notes(h) if n.kind == "cap_warning"]
    assert len(set(ids)) == len(ids)


def test_monthly_cap_levels_and_levels_off() -> None:
    h = Harness(tenant=cap_settings(daily_warn_percents=(), monthly_warn_percents=(10, 20)))
    start = ms("UTC", 2026, 11, 1, 0, 30)
    for i in range(29):  # 9 credits a day: 10% (100) on day 12, 20% (200) on day 23
        h.send(ev(i, start + i * DAY, credits=9 * CR))
    sent = [n for n in notes(h) if n.kind == "cap_warning"]
    assert warnings(sent, "cap_warning") == ["Monthly 10", "Monthly 20"]
    assert [n.created_at_ms for n in sent] == [start + 11 * DAY, start + 22 * DAY]
    h.send(ev(40, ms("UTC", 2026, 12, 1, 0, 30), credits=150 * CR))  # a new month
    assert warnings(notes(h), "cap_warning")[2:] == ["Monthly 10"]


def test_a_replay_sends_cap_warnings_under_the_same_ids() -> None:
    tenant = cap_settings()
    h = Harness(tenant=tenant)
    h.send(ev(0, T0, credits=1))
    snapshot = h.state.account.to_bytes(), [b.to_bytes() for b in h.state.bots.values()]
    for i in range(1, 10):
        h.send(ev(i, T0 + i * MIN, credits=10 * CR))
    first = [n.notification_id for n in notes(h) if n.kind == "cap_warning"]
    assert len(first) == 3
    replay = Harness(tenant=tenant, state=AccountState.load(*snapshot))
    replay.offset = 1
    _, eff = reevaluate(replay.state, replay.policy_set, tenant, T0 + 2 * HOUR, alerts=False)
    for i in range(1, 10):
        replay.send(ev(i, T0 + i * MIN, credits=10 * CR), now=T0 + 2 * HOUR)
    assert [n.notification_id for n in notes(replay) if n.kind == "cap_warning"] == first
    _, eff = expire(replay.state, T0 + 3 * HOUR)
    assert not eff.notifications


def test_a_cap_changed_mid_day_keeps_the_levels_sent_and_arms_the_rest_on_the_new_cap() -> None:
    h = Harness(tenant=cap_settings())
    for i in range(6):  # 60 of 100: 50% sent
        h.send(ev(i, T0 + i * MIN, credits=10 * CR))
    assert warnings(notes(h), "cap_warning") == ["Daily 50"]
    h.tenant = settings(plan="pro", caps={"text": CategoryCaps(200 * CR, 1000 * CR)})
    h.send(ev(6, T0 + 6 * MIN, credits=1))  # 60 of 200 now: 30%, nothing new
    assert warnings(notes(h), "cap_warning") == ["Daily 50"]
    for i in range(7, 17):  # 160 of 200: 80% (50% was sent today already)
        h.send(ev(i, T0 + i * MIN, credits=10 * CR))
    assert warnings(notes(h), "cap_warning") == ["Daily 50", "Daily 80"]
    sent = [n for n in notes(h) if n.kind == "cap_warning"]
    assert "160 of 200 credits" in sent[-1].body
