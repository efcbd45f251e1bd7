"""A client resend replayed after a crash counts nowhere, whichever table's value the restart
restored from the later changelog point (a bot's day total counted one event twice)."""

from __future__ import annotations

from core_builders import ACC, T0, ev

from capstream.core import AccountState, PolicySet, TenantSettings, evaluate

SETTINGS = TenantSettings(ACC)
POLICIES = PolicySet([])


def apply(state: AccountState, offset: int, event_id: str) -> None:
    evaluate(state, ev(offset, T0 + offset, event_id=event_id), POLICIES, SETTINGS, T0 + offset,
             partition=0, offset=offset)  # fmt: skip


def test_a_resend_replayed_into_an_older_bot_value_is_still_dropped() -> None:
    state = AccountState(ACC)
    apply(state, 5, "e-5")
    bot_before = state.bots["bot-1"].to_bytes()  # the bots table flushed here...
    apply(state, 10, "e-10")
    apply(state, 20, "e-10")  # an SDK resend: dropped
    account_after = state.account.to_bytes()  # ...the accounts table later, then a crash
    want = state.bots["bot-1"].day[0]
    restored = AccountState.load(account_after, [bot_before])
    apply(restored, 10, "e-10")  # the replay from the last commit: the original counts
    apply(restored, 20, "e-10")  # the resend still does not
    assert restored.bots["bot-1"].day[0] == want
    assert restored.account.day[0] == state.account.day[0]


def test_the_position_of_each_recent_id_is_kept_and_a_v2_value_has_none() -> None:
    from pathlib import Path

    from capstream.core import AccountUsage

    state = AccountState(ACC)
    apply(state, 1, "e-1")
    loaded = AccountUsage.from_bytes(state.account.to_bytes())
    assert loaded.recent_set == {"e-1": 1 * 65536}
    v2 = AccountUsage.from_bytes((Path(__file__).parent / "data" / "account_v2.bin").read_bytes())
    assert v2.recent_ids and set(v2.recent_set.values()) == {-1}  # unknown: the old rule
