"""Per-attribute policies (issue 24.3): one window per end user, API key, team or model."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_builders import ACC, MIN, T0, Harness, policy

from capstream.core import (
    AccountState,
    AlertAction,
    BlockAction,
    Policy,
    PolicyError,
    StateFormatError,
    UsageEvent,
)
from capstream.core.usage import AccountUsage


def uev(
    n: int,
    at: int,
    *,
    user: str | None = None,
    bot: str = "bot-1",
    tokens: int = 100,
    model: str = "gpt-4o-mini",
    team: str | None = None,
) -> UsageEvent:
    attrs = {}
    if user is not None:
        attrs["end_user"] = user
    if team is not None:
        attrs["team"] = team
    return UsageEvent(
        f"ev-{n}", ACC, bot, f"conv-{n}", "text", model, tokens, 0, 1, False, 0, at, attrs
    )


def per_user(pid: str = "pu", *, threshold: int = 1_000, block_s: int | None = 600,
             scope: str = "account_each_bot", per: str = "end_user",
             per_value: str | None = None, bot_id: str | None = None) -> Policy:  # fmt: skip
    return Policy(
        pid, ACC, f"policy {pid}", "tokens", threshold, 3600, scope, bot_id,
        AlertAction(()), BlockAction(block_s) if block_s else None,
        warn_percents=(), per=per, per_value=per_value,
    )  # fmt: skip


def test_only_the_end_user_over_the_threshold_is_alerted_and_blocked_not_the_bot() -> None:
    h = Harness(policies=[per_user()])
    for i in range(9):  # alice 900, bob 900: both under 1,000
        h.send(uev(2 * i, T0 + i * MIN, user="alice"))
        h.send(uev(2 * i + 1, T0 + i * MIN, user="bob"))
    assert h.notes("policy_alert") == []
    h.send(uev(100, T0 + 10 * MIN, user="alice"))  # alice 1,000
    (alert,) = h.notes("policy_alert")
    assert (alert.attribute, alert.attribute_value, alert.bot_id) == ("end_user", "alice", "bot-1")
    assert "end_user 'alice'" in alert.subject
    assert "end_user alice is blocked until" in alert.body
    e = h.state.enforcement("bot-1")
    assert e is None or e.blocked_until_ms is None  # the bot itself is not paused
    counter = h.state.account.scoped["pu\x1fend_user\x1fbot-1\x1falice"]
    assert counter.blocked_until_ms == T0 + 10 * MIN + 600_000
    h.send(uev(101, T0 + 11 * MIN, user="alice"))  # blocked and alerted: nothing new
    assert len(h.notes("policy_alert")) == 1
    h.send(uev(102, T0 + 11 * MIN, user="bob", tokens=100))  # bob reaches 1,000 on his own
    bob = h.notes("policy_alert")[-1]
    assert bob.attribute_value == "bob" and bob.notification_id != alert.notification_id


def test_events_without_the_attribute_are_not_counted() -> None:
    h = Harness(policies=[per_user(threshold=200)])
    for i in range(5):
        h.send(uev(i, T0 + i * MIN, tokens=500))  # no end_user
    assert h.notes("policy_alert") == [] and h.state.account.scoped == {}


def test_a_filter_to_one_model_counts_only_that_model() -> None:
    h = Harness(policies=[per_user(per="model", per_value="gpt-4o", threshold=300)])
    for i in range(5):
        h.send(uev(i, T0 + i * MIN, model="gpt-4o-mini"))
    h.send(uev(10, T0 + 6 * MIN, model="gpt-4o", tokens=200))
    assert h.notes("policy_alert") == []
    h.send(uev(11, T0 + 7 * MIN, model="gpt-4o", tokens=100))
    (alert,) = h.notes("policy_alert")
    assert (alert.attribute, alert.attribute_value) == ("model", "gpt-4o")
    assert list(h.state.account.scoped) == ["pu\x1fmodel\x1fbot-1\x1fgpt-4o"]


def test_account_total_counts_a_team_over_every_bot_and_bot_scope_only_its_bot() -> None:
    total = per_user("pt", per="team", scope="account_total", threshold=300, block_s=None)
    own = per_user("pb", per="team", scope="bot", bot_id="bot-2", threshold=300, block_s=None)
    h = Harness(policies=[total, own])
    h.send(uev(1, T0, team="red", bot="bot-1"))
    h.send(uev(2, T0 + MIN, team="red", bot="bot-2"))
    assert h.notes("policy_alert") == []
    h.send(uev(3, T0 + 2 * MIN, team="red", bot="bot-1"))
    (alert,) = h.notes("policy_alert")
    assert (alert.policy_id, alert.bot_id, alert.attribute_value) == ("pt", "*", "red")
    assert set(h.state.account.scoped) == {"pt\x1fteam\x1f*\x1fred", "pb\x1fteam\x1fbot-2\x1fred"}


def test_the_window_slides_and_the_value_alerts_again_a_window_later() -> None:
    h = Harness(policies=[per_user(threshold=300, block_s=None)])
    for i in range(3):
        h.send(uev(i, T0 + i * MIN, user="alice"))
    assert len(h.notes("policy_alert")) == 1
    h.send(uev(10, T0 + 70 * MIN, user="alice"))  # the first three left the hour
    assert len(h.notes("policy_alert")) == 1
    h.send(uev(11, T0 + 71 * MIN, user="alice"))
    h.send(uev(12, T0 + 72 * MIN, user="alice"))
    assert len(h.notes("policy_alert")) == 2


def test_the_bound_drops_idle_values_first_then_the_least_recently_used() -> None:
    h = Harness(policies=[per_user(threshold=10_000, block_s=None)])
    acct = h.state.account
    acct.scoped_capacity = 2
    h.send(uev(1, T0, user="a"))
    h.send(uev(2, T0 + MIN, user="b"))
    h.send(uev(3, T0 + 2 * MIN, user="a"))  # a used last: b is the least recently used
    h.send(uev(4, T0 + 3 * MIN, user="c"))  # at the bound: b (in its window) is dropped
    assert [k.rsplit("\x1f", 1)[1] for k in acct.scoped] == ["a", "c"]
    assert acct.scoped_evicted == 1
    h.send(uev(5, T0 + 3 * 60 * MIN, user="d"))  # a and c idle (window passed): no loss
    assert [k.rsplit("\x1f", 1)[1] for k in acct.scoped] == ["d"]
    assert acct.scoped_evicted == 1


def test_counters_survive_a_restore_and_a_replay_does_not_count_twice() -> None:
    h = Harness(policies=[per_user(threshold=300)])
    h.send(uev(1, T0, user="alice"))
    h.send(uev(2, T0 + MIN, user="alice"))
    raw = h.state.account.to_bytes()
    assert raw[:5] == b"CSUA\x05"
    restored = AccountUsage.from_bytes(raw)
    assert restored == h.state.account
    assert AccountUsage.from_bytes(restored.to_bytes()).to_bytes() == raw
    h.state = AccountState.load(raw, [b.to_bytes() for b in h.state.bots.values()])
    h.offset = 1
    h.send(uev(2, T0 + MIN, user="alice"))  # replay of offset 1: already counted
    assert h.notes("policy_alert") == []
    h.send(uev(3, T0 + 2 * MIN, user="alice"))
    (alert,) = h.notes("policy_alert")
    assert "300" in alert.body and alert.attribute_value == "alice"


def test_an_account_state_written_before_per_attribute_counters_still_reads() -> None:
    # Written by the release before (CSUA v4): 4 messages of bot-1, p1's block running.
    raw = (Path(__file__).parent / "data" / "account_v4.bin").read_bytes()
    assert raw[:5] == b"CSUA\x04"
    acct = AccountUsage.from_bytes(raw)
    assert acct.day[1] == 4 and acct.scoped == {} and acct.scoped_capacity == 10_000
    assert AccountUsage.from_bytes(acct.to_bytes()) == acct


def test_removing_a_policy_or_changing_its_attribute_drops_its_counters() -> None:
    h = Harness(policies=[per_user(threshold=10_000), policy("p2", threshold=100)])
    h.send(uev(1, T0, user="alice"))
    assert h.state.account.scoped
    h.policy_set = Harness(policies=[per_user(per="team"), policy("p2", threshold=100)]).policy_set
    h.send(uev(2, T0 + MIN, user="alice", team="alice"))  # the same id, now per team
    assert list(h.state.account.scoped) == ["pu\x1fteam\x1fbot-1\x1falice"]
    assert h.state.account.scoped["pu\x1fteam\x1fbot-1\x1falice"].ring.total == 100
    h.policy_set = Harness(policies=[policy("p2", threshold=100)]).policy_set
    h.send(uev(3, T0 + 2 * MIN, user="alice"))
    assert h.state.account.scoped == {}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"per": "country"}, "per must be one of"),
        ({"per_value": "gpt-4o"}, "per_value needs per"),
        ({"per": "model", "per_value": ""}, "per_value cannot be empty"),
        ({"per": "end_user", "alert": None}, "add an alert action"),
        ({"per": "end_user", "period": "day", "window_seconds": 0}, "rolling window"),
    ],
)
def test_invalid_per_attribute_policies_say_what_to_change(
    kw: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {
        "policy_id": "p", "account_id": ACC, "name": "n", "metric": "tokens",
        "threshold": 10, "window_seconds": 3600, "scope": "account_each_bot", "bot_id": None,
        "alert": AlertAction(()), "block": BlockAction(60),
    }  # fmt: skip
    args.update(kw)
    with pytest.raises(PolicyError, match=message):
        Policy(**args)  # type: ignore[arg-type]


def test_sparse_and_full_windows_both_round_trip_and_corrupt_counters_are_refused() -> None:
    h = Harness(policies=[per_user(threshold=10**9, block_s=None)])
    h.send(uev(0, T0, user="rare"))  # one bucket of 61: written as (slot, amount)
    for i in range(61):  # every bucket: written whole
        h.send(uev(i + 1, T0 + i * MIN, user="busy"))
    acct = h.state.account
    raw = acct.to_bytes()
    back = AccountUsage.from_bytes(raw)
    assert back.scoped == acct.scoped and back.to_bytes() == raw
    busy = back.scoped["pu\x1fend_user\x1fbot-1\x1fbusy"]
    assert busy.ring.total == 6_100  # 61 minutes of 100 tokens, read back whole
    assert back.scoped["pu\x1fend_user\x1fbot-1\x1frare"].ring.total == 100
    with pytest.raises(StateFormatError):
        AccountUsage.from_bytes(raw[:-8])


def test_a_value_whose_block_starts_is_in_the_effects_for_gateways_and_no_other_value() -> None:
    h = Harness(policies=[per_user(), per_user("pt", scope="account_total", per="team")])
    for i in range(9):  # alice and bob 900 each: no block, no value block in any effects
        h.send(uev(2 * i, T0 + i * MIN, user="alice", team="red"))
        assert h.send(uev(2 * i + 1, T0 + i * MIN, user="bob")).value_blocks == ()
    eff = h.send(uev(100, T0 + 10 * MIN, user="alice"))  # alice 1,000; team red 1,000
    (vb,) = eff.value_blocks
    assert (vb.account_id, vb.bot_id, vb.attribute, vb.value, vb.policy_id) == (
        ACC, "bot-1", "end_user", "alice", "pu",
    )  # fmt: skip
    assert vb.blocked_until_ms == T0 + 10 * MIN + 600_000
    (alert,) = eff.notifications  # says that gateways given the end user refuse it
    assert "Gateways refuse its calls until then when given the call's end_user" in alert.body
    assert h.send(uev(101, T0 + 11 * MIN, user="alice")).value_blocks == ()  # already blocked
    eff = h.send(uev(102, T0 + 11 * MIN, user="carol", team="red"))  # red over every bot
    (team,) = eff.value_blocks
    assert (team.bot_id, team.attribute, team.value, team.policy_id) == ("*", "team", "red", "pt")
    late = T0 + 10 * MIN + 600_000  # alice's block ended: her next crossing blocks her again
    assert h.send(uev(103, late, user="alice")).value_blocks[0].blocked_until_ms == late + 600_000
