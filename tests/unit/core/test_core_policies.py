"""Usage policies (seed 000): validation, scopes, alerts once per window, blocks, re-evaluation."""

from __future__ import annotations

import pytest
from core_builders import ACC, HOUR, MIN, T0, Harness, ev, policy, settings

from capstream.core import (
    ACCOUNT_WIDE_BOT,
    AlertAction,
    FallbackLedger,
    Policy,
    PolicyError,
    PolicySet,
    gate,
    next_deadline,
    reevaluate,
)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 59}, "between 60"),
        ({"window": 31 * 86_400 + 1}, "31 days"),
        ({"threshold": 0}, "positive"),
        ({"alert": False}, "at least one action"),
        ({"scope": "bot"}, "needs the bot_id"),
        ({"bot_id": "bot-1"}, "only allowed with scope 'bot'"),
        ({"metric": "tokens", "category": "text"}, "only allowed with the credits metric"),
        ({"metric": "credits", "category": "smell"}, "category must be one of"),
        ({"metric": "vibes"}, "metric must be one of"),
        ({"scope": "galaxy"}, "scope must be one of"),
        ({"recipients": ("not-an-email",)}, "not an email"),
        ({"block_s": -5}, "block duration_seconds must be positive"),
    ],
)
def test_invalid_policies_are_refused_with_an_actionable_message(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(PolicyError, match=match):
        policy(**kwargs)  # type: ignore[arg-type]


def test_one_minute_to_31_day_windows_and_notify_only_policies_are_valid() -> None:
    policy(window=60)
    policy(window=31 * 86_400)
    notify_only = policy(alert=True, block_s=None)
    assert notify_only.block is None


def test_policy_set_holds_one_account() -> None:
    other = Policy(
        "x", "acc-2", "x", "messages", 1, 60, "account_total", None, AlertAction(()), None
    )
    with pytest.raises(PolicyError, match="one account"):
        PolicySet([policy(), other])


def test_alert_fires_when_threshold_is_crossed_and_once_per_window() -> None:
    h = Harness(policies=[policy(threshold=3, window=3600)])
    for i in range(2):
        assert not h.send(ev(i, T0 + i * MIN)).notifications
    crossed = h.send(ev(2, T0 + 2 * MIN)).notifications
    assert [n.kind for n in crossed] == ["policy_alert"]
    # a sustained breach inside the same window sends nothing more
    for i in range(3, 30):
        assert not h.send(ev(i, T0 + i * MIN)).notifications
    # a full window after the first alert: one more heads-up, for the window ending there
    later = T0 + 2 * MIN + HOUR
    assert not h.send(ev(98, later - 1)).notifications
    again = h.send(ev(99, later)).notifications
    assert len(again) == 1
    assert again[0].notification_id != crossed[0].notification_id
    assert again[0].window_start_ms == later - HOUR


def test_alert_goes_to_the_owner_or_to_the_listed_recipients() -> None:
    h = Harness(
        policies=[
            policy("owner", threshold=1),
            policy("list", threshold=1, recipients=("a@x.io", "b@x.io")),
        ]
    )
    notes = {n.policy_id: n for n in h.send(ev(0, T0)).notifications}
    assert notes["owner"].recipients == ("owner@example.com",)
    assert notes["list"].recipients == ("a@x.io", "b@x.io")
    assert "policy owner" in notes["owner"].subject


def test_notify_only_policy_never_pauses_the_bot() -> None:
    h = Harness(policies=[policy(threshold=1)])
    h.send(ev(0, T0))
    h.send(ev(1, T0 + 1))
    assert h.enforcement().blocked_until_ms is None
    assert gate(h.enforcement(), "text", "conv-1", T0 + 2, FallbackLedger()).action == "allow"


def test_block_pauses_the_bot_for_its_duration_and_ends_by_itself() -> None:
    h = Harness(policies=[policy(threshold=2, block_s=600, alert=False)])
    h.send(ev(0, T0))
    eff = h.send(ev(1, T0 + MIN))
    (state,) = eff.enforcement
    assert state.blocked_until_ms == T0 + MIN + 600_000
    assert state.block_policy_id == "p1"
    verdict = gate(state, "text", "conv-1", T0 + 2 * MIN, FallbackLedger())
    assert (verdict.action, verdict.reason) == ("paused", "policy_block:p1")
    assert next_deadline(h.state) == T0 + MIN + 600_000
    assert not h.tick(T0 + MIN + 599_999).enforcement
    (resumed,) = h.tick(T0 + MIN + 600_000).enforcement
    assert resumed.blocked_until_ms is None
    assert resumed.version == state.version + 1
    assert gate(resumed, "text", "conv-1", T0 + 11 * MIN, FallbackLedger()).action == "allow"


def test_bot_scope_watches_only_its_bot() -> None:
    h = Harness(policies=[policy(scope="bot", bot_id="bot-2", threshold=2, block_s=60)])
    for i in range(5):
        h.send(ev(i, T0 + i, bot="bot-1"))
    assert h.enforcement("bot-1").blocked_until_ms is None
    h.send(ev(10, T0 + 10, bot="bot-2"))
    h.send(ev(11, T0 + 11, bot="bot-2"))
    assert h.enforcement("bot-2").blocked_until_ms is not None
    assert h.enforcement("bot-1").blocked_until_ms is None


def test_account_each_bot_counts_every_bot_separately() -> None:
    h = Harness(policies=[policy(threshold=3, block_s=60)])
    for i, bot in enumerate(["bot-1", "bot-2", "bot-1", "bot-2"]):
        h.send(ev(i, T0 + i, bot=bot))  # 2 each, 4 in total: nobody over 3
    assert h.enforcement("bot-1").blocked_until_ms is None
    h.send(ev(9, T0 + 9, bot="bot-2"))  # bot-2 reaches 3
    assert h.enforcement("bot-2").blocked_until_ms is not None
    assert h.enforcement("bot-1").blocked_until_ms is None


def test_account_total_counts_all_bots_and_blocks_every_bot() -> None:
    h = Harness(policies=[policy(scope="account_total", threshold=3, block_s=300)])
    for i, bot in enumerate(["bot-1", "bot-2", "bot-3"]):
        eff = h.send(ev(i, T0 + i, bot=bot))
    # The account's state; bot-3, seen for the first time, says it follows it; bots 1 and 2
    # follow it already (nothing of their own): no record of theirs.
    until = T0 + 2 + 300_000
    got = {e.bot_id: (e.blocked_until_ms, e.follows_account) for e in eff.enforcement}
    assert got == {ACCOUNT_WIDE_BOT: (until, False), "bot-3": (until, True)}
    for bot in ("bot-1", "bot-2", "bot-3", "bot-4"):
        assert h.enforcement(bot).blocked_until_ms == T0 + 2 + 300_000
    (note,) = eff.notifications
    assert note.notification_id and "all bots" in note.subject


def test_bot_policies_and_account_policies_are_evaluated_on_the_same_event() -> None:
    h = Harness(
        policies=[
            policy("own", scope="bot", bot_id="bot-1", threshold=1),
            policy("each", threshold=1),
            policy("total", scope="account_total", threshold=1),
        ]
    )
    fired = {n.policy_id for n in h.send(ev(0, T0)).notifications}
    assert fired == {"own", "each", "total"}


def test_usage_that_slid_out_of_the_window_no_longer_counts() -> None:
    h = Harness(policies=[policy(threshold=3, window=60, block_s=60, alert=False)])
    h.send(ev(0, T0))
    h.send(ev(1, T0 + 1_000))
    h.send(ev(2, T0 + 3 * MIN))  # the first two are 3 minutes old: 1 in the window
    assert h.enforcement().blocked_until_ms is None


def test_credits_policy_can_watch_one_category() -> None:
    h = Harness(policies=[policy(metric="credits", category="vision", threshold=100)])
    h.send(ev(0, T0, category="text", credits=500))
    assert not h.notes("policy_alert")
    h.send(ev(1, T0 + 1, category="vision", credits=100))
    assert len(h.notes("policy_alert")) == 1


def test_lowering_a_threshold_below_current_usage_blocks_at_once() -> None:
    h = Harness(policies=[policy(threshold=100, block_s=900)])
    for i in range(10):
        h.send(ev(i, T0 + i * MIN))
    assert h.enforcement().blocked_until_ms is None
    lowered = PolicySet([policy(threshold=5, block_s=900)])
    now = T0 + 20 * MIN
    _, eff = reevaluate(h.state, lowered, h.tenant, now)
    blocked = {e.bot_id: e.blocked_until_ms for e in eff.enforcement}
    assert blocked["bot-1"] == now + 900_000
    assert [n.kind for n in eff.notifications] == ["policy_alert"]


def test_handing_evaluate_a_changed_policy_list_reevaluates_first() -> None:
    h = Harness(policies=[policy(threshold=100, block_s=900)])
    for i in range(10):
        h.send(ev(i, T0 + i))
    h.policy_set = PolicySet([policy(threshold=5, block_s=900)])
    eff = h.send(ev(10, T0 + 10, bot="bot-2"))
    assert {e.bot_id for e in eff.enforcement if e.blocked_until_ms} == {"bot-1"}


def test_disabled_policies_do_nothing() -> None:
    h = Harness(policies=[policy(threshold=1, block_s=60, enabled=False)])
    h.send(ev(0, T0))
    assert h.enforcement().blocked_until_ms is None
    assert not h.notes()


def test_alert_ids_are_deterministic_across_replays_from_a_snapshot() -> None:
    def run() -> list[str]:
        h = Harness(policies=[policy(threshold=2), policy("t", scope="account_total", threshold=3)])
        for i in range(6):
            h.send(ev(i, T0 + i * MIN, bot=f"bot-{i % 2}"))
        return [n.notification_id for n in h.notes()]

    first, second = run(), run()
    assert first == second and len(set(first)) == len(first) == 3


def test_settings_for_another_account_are_refused() -> None:
    from capstream.core import AccountState, CoreError, evaluate

    with pytest.raises(CoreError, match="settings are for account"):
        evaluate(AccountState(ACC), ev(0, T0), [], settings().__class__("acc-2"), T0)
