"""Cap behaviour (seed 004): daily/monthly caps, auto-downgrade, adaptive throttle, versions."""

from __future__ import annotations

from array import array

import pytest
from core_builders import HOUR, MIN, T0, Harness, caps, ev, ms, settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from capstream.core import (
    FallbackLedger,
    SettingsError,
    TenantSettings,
    gate,
    next_deadline,
    reevaluate,
)
from capstream.core.caps import LOOP_TRACKED_CONVERSATIONS, LOOP_WINDOW_MS, loop_suspected
from capstream.core.models import ACCOUNT_WIDE_BOT
from capstream.core.usage import BotUsage

NY = "America/New_York"


def test_daily_cap_pauses_the_category_until_local_midnight() -> None:
    h = Harness(tenant=settings(timezone=NY, caps=caps(text=(1_000, None))))
    at = ms(NY, 2026, 11, 18, 15, 0)
    h.send(ev(0, at, credits=600))
    assert "text" not in h.enforcement().caps
    eff = h.send(ev(1, at + MIN, credits=400))
    cap = h.enforcement().caps["text"]
    assert (cap.period, cap.period_key) == ("daily", "2026-11-18")
    assert cap.resumes_at_ms == ms(NY, 2026, 11, 19, 0, 0)
    (note,) = eff.notifications
    assert note.kind == "cap_reached" and note.recipients == ("owner@example.com",)
    # more in-flight usage: no second notification, no new state
    assert not h.send(ev(2, at + 2 * MIN, credits=50))


def test_daily_cap_lifts_at_local_midnight_by_the_clock_alone() -> None:
    h = Harness(tenant=settings(timezone=NY, caps=caps(text=(1_000, None))))
    h.send(ev(0, ms(NY, 2026, 11, 18, 23, 0), credits=1_000))
    capped = h.enforcement()
    midnight = ms(NY, 2026, 11, 19, 0, 0)
    assert next_deadline(h.state) == midnight
    # One record for the account; its bots follow it (they have nothing of their own).
    (state,) = h.tick(midnight).enforcement
    assert state.bot_id == ACCOUNT_WIDE_BOT and state.caps == {}
    assert state.version == capped.version + 1
    assert gate(state, "text", "conv-1", midnight, FallbackLedger()).action == "allow"


def test_monthly_cap_resumes_at_local_midnight_on_the_first() -> None:
    tz = "Australia/Lord_Howe"
    h = Harness(tenant=settings(timezone=tz, caps=caps(vision=(None, 5_000))))
    h.send(ev(0, ms(tz, 2026, 11, 10, 9, 0), credits=5_000, category="vision"))
    cap = h.enforcement().caps["vision"]
    assert (cap.period, cap.period_key) == ("monthly", "2026-11")
    assert cap.resumes_at_ms == ms(tz, 2026, 12, 1, 0, 0)
    assert not h.tick(ms(tz, 2026, 11, 30, 23, 59)).enforcement
    h.tick(ms(tz, 2026, 12, 1, 0, 0))
    assert h.enforcement().caps == {}


def test_when_daily_and_monthly_are_hit_together_monthly_wins() -> None:
    h = Harness(tenant=settings(caps=caps(text=(1_000, 1_000))))
    h.send(ev(0, T0, credits=1_000))
    cap = h.enforcement().caps["text"]
    assert cap.period == "monthly"
    (note,) = h.notes("cap_reached")
    assert "Monthly" in note.subject


def test_whichever_cap_is_hit_first_gates() -> None:
    h = Harness(tenant=settings(caps=caps(text=(10_000, 1_500))))
    h.send(ev(0, T0, credits=1_500))  # monthly cap reached long before the daily one
    assert h.enforcement().caps["text"].period == "monthly"
    h2 = Harness(tenant=settings(caps=caps(text=(1_000, 50_000))))
    h2.send(ev(0, T0, credits=1_000))
    assert h2.enforcement().caps["text"].period == "daily"


def test_caps_are_independent_per_category() -> None:
    h = Harness(tenant=settings(caps=caps(vision=(100, None), text=(10_000, None))))
    h.send(ev(0, T0, credits=100, category="vision"))
    state = h.enforcement()
    assert set(state.caps) == {"vision"}
    ledger = FallbackLedger()
    assert gate(state, "vision", "conv-1", T0 + 1, ledger).action == "skip"
    assert gate(state, "text", "conv-1", T0 + 1, ledger).action == "allow"
    assert gate(state, "audio", "conv-1", T0 + 1, ledger).action == "allow"


def test_zero_cap_switches_a_category_off_as_soon_as_settings_say_so() -> None:
    h = Harness()
    h.send(ev(0, T0))
    _, eff = reevaluate(h.state, h.policy_set, settings(caps=caps(audio=(0, None))), T0 + 1)
    assert all("audio" in e.caps for e in eff.enforcement)


def test_raising_a_cap_lifts_it_at_once() -> None:
    h = Harness(tenant=settings(caps=caps(text=(1_000, None))))
    h.send(ev(0, T0, credits=1_000))
    assert "text" in h.enforcement().caps
    _, eff = reevaluate(h.state, h.policy_set, settings(caps=caps(text=(5_000, None))), T0 + 1)
    # the account-wide state only: bot-1 follows it
    assert [(e.bot_id, e.caps) for e in eff.enforcement] == [(ACCOUNT_WIDE_BOT, {})]


def pro(**kw: object) -> TenantSettings:
    return settings(plan="pro", auto_downgrade=True, timezone=NY, **kw)


def test_auto_downgrade_at_80_percent_of_the_daily_text_cap_until_midnight() -> None:
    h = Harness(tenant=pro(caps=caps(text=(1_000, None))))
    at = ms(NY, 2026, 11, 18, 10, 0)
    h.send(ev(0, at, credits=790))
    assert h.enforcement().model == "claude-sonnet-4-6"
    h.send(ev(1, at + MIN, credits=10))
    state = h.enforcement()
    assert state.model == "claude-haiku"
    assert state.downgraded_until_ms == ms(NY, 2026, 11, 19, 0, 0)
    verdict = gate(state, "text", "conv-1", at + 2 * MIN, FallbackLedger())
    assert (verdict.action, verdict.model) == ("allow", "claude-haiku")
    # premium again at local midnight, even from the stale state a gateway still holds
    midnight = ms(NY, 2026, 11, 19, 0, 0)
    assert gate(state, "text", "conv-1", midnight, FallbackLedger()).model == "claude-sonnet-4-6"
    h.tick(midnight)
    assert h.enforcement().model == "claude-sonnet-4-6"


def test_downgrade_models_are_configurable() -> None:
    h = Harness(
        tenant=pro(caps=caps(text=(100, None)), premium_model="big", downgrade_model="small")
    )
    h.send(ev(0, T0, credits=10))
    assert h.enforcement().model == "big"
    h.send(ev(1, T0 + 1, credits=70))
    assert h.enforcement().model == "small"


def test_downgrade_off_keeps_the_premium_model() -> None:
    h = Harness(tenant=settings(plan="pro", caps=caps(text=(100, None))))
    h.send(ev(0, T0, credits=90))
    assert h.enforcement().model == "claude-sonnet-4-6"


@pytest.mark.parametrize("plan", ["free", "starter"])
def test_auto_downgrade_needs_pro_or_enterprise(plan: str) -> None:
    with pytest.raises(SettingsError, match="Pro or Enterprise"):
        settings(plan=plan, auto_downgrade=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"language": "fr"}, "language"),
        ({"plan": "platinum"}, "plan"),
        ({"throttle": "sometimes"}, "throttle"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"caps": caps(smell=(1, None))}, "unknown category"),
        ({"caps": caps(text=(-1, None))}, "negative"),
    ],
)
def test_invalid_settings_name_what_to_fix(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        settings(**kwargs)


def chatty(h: Harness, n: int, start: int, conv: str = "conv-1") -> None:
    for i in range(n):
        h.send(ev(10_000 + start // 1000 + i, start + i * 1_000, conv=conv))


def test_throttle_off_always_replies_fast() -> None:
    h = Harness(tenant=settings(throttle="off"))
    chatty(h, 40, T0)  # a loop, but throttling is off
    state = h.enforcement()
    assert state.batching_interval_s == 3
    assert gate(state, "text", "conv-1", T0 + HOUR, FallbackLedger()).batching_interval_s == 3


def test_throttle_strict_always_batches_60_seconds() -> None:
    h = Harness(tenant=settings(throttle="strict"))
    h.send(ev(0, T0))
    state = h.enforcement()
    assert (state.batching_interval_s, state.throttle_reason) == (60, "strict")
    assert gate(state, "text", "conv-1", T0 + 1, FallbackLedger()).batching_interval_s == 60


def test_smart_throttle_is_fast_on_normal_traffic() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    for i in range(30):  # 30 messages spread over conversations and minutes
        h.send(ev(i, T0 + i * 20_000, conv=f"conv-{i % 5}"))
    assert h.enforcement().batching_interval_s == 3


def test_smart_throttle_kicks_in_when_a_conversation_loops() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    chatty(h, 20, T0)  # 20 messages in 20 s: not yet "more than 20 a minute"
    assert h.enforcement().batching_interval_s == 3
    chatty(h, 1, T0 + 20_000)
    state = h.enforcement()
    assert (state.batching_interval_s, state.throttle_reason) == (60, "loop_suspected")
    assert state.throttled_until_ms == T0 + 20_000 + 10 * MIN
    # the throttle ends by the clock
    assert next_deadline(h.state) == state.throttled_until_ms
    h.tick(state.throttled_until_ms)  # type: ignore[arg-type]
    assert h.enforcement().batching_interval_s == 3


def test_smart_throttle_kicks_in_when_the_budget_is_at_risk() -> None:
    tz = "Europe/London"
    h = Harness(tenant=settings(throttle="smart", timezone=tz, caps=caps(text=(100_000, None))))
    at = ms(tz, 2026, 11, 18, 8, 0)  # 16 hours left in the day
    h.send(ev(0, at, credits=1_000))  # 1,000/h projects 17,000 by midnight: fine
    assert h.enforcement().batching_interval_s == 3
    h.send(ev(1, at + 2_000, credits=9_000))  # 10,000 in the last hour: 170,000 by midnight
    state = h.enforcement()
    assert (state.batching_interval_s, state.throttle_reason) == (60, "budget_at_risk")


def test_smart_throttle_sees_a_monthly_budget_at_risk() -> None:
    tz = "Asia/Kathmandu"
    h = Harness(tenant=settings(throttle="smart", timezone=tz, caps=caps(documents=(None, 3_000))))
    at = ms(tz, 2026, 11, 3, 0, 0)  # 2 days into a 30-day month
    h.send(ev(0, at, credits=150, category="documents"))  # ~2,250 by month end
    assert h.enforcement().throttle_reason is None
    h.send(ev(1, at + 5_000, credits=100, category="documents"))  # 250 -> 3,750
    assert h.enforcement().throttle_reason == "budget_at_risk"


def test_versions_increase_and_states_are_emitted_only_on_change() -> None:
    h = Harness(tenant=settings(caps=caps(text=(1_000, None))))
    versions: dict[str, list[int]] = {}
    for i in range(8):
        for state in h.send(ev(i, T0 + i * MIN, credits=200)).enforcement:
            versions.setdefault(state.bot_id, []).append(state.version)
    # the account's first state, then the cap at 1,000: two states, nothing else; bot-1
    # says once, at first sight, that it follows the account
    assert versions == {ACCOUNT_WIDE_BOT: [1, 2], "bot-1": [1]}


def test_settings_change_reaches_every_bot_with_a_new_version() -> None:
    h = Harness()
    for i, bot in enumerate(["bot-1", "bot-2"]):
        h.send(ev(i, T0 + i, bot=bot))
    old = h.enforcement("bot-2").version
    h.tenant = settings(plan="starter", fallback_message="Back {{TIMEFRAME}}.")
    eff = h.send(ev(5, T0 + 5))
    # one record: both bots follow the account's state, which gateways answer them from
    (new,) = eff.enforcement
    assert new.bot_id == ACCOUNT_WIDE_BOT and new.version == old + 1
    for bot in ("bot-1", "bot-2"):
        assert h.enforcement(bot) is new
    assert new.fallback_text_daily == "Back tomorrow."
    assert new.plan == "starter"


def test_a_loop_that_goes_on_keeps_the_throttle_without_flapping() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    chatty(h, 21, T0)
    first = h.enforcement().throttled_until_ms
    assert first is not None
    # still looping 6 minutes later (second half of the 10-minute hold): extended
    chatty(h, 21, T0 + 6 * MIN)
    extended = h.enforcement()
    assert extended.throttled_until_ms is not None and extended.throttled_until_ms > first
    h.tick(first)  # the first hold's end passes: still throttled
    assert h.enforcement().batching_interval_s == 60


def test_loop_detection_is_per_conversation_and_counts_batched_messages() -> None:
    h = Harness(tenant=settings(throttle="smart"))
    for i in range(30):  # 30 messages in 30 s, but spread over two conversations
        h.send(ev(i, T0 + i * 1_000, conv=f"conv-{i % 2}"))
    assert h.enforcement().throttle_reason is None
    h.send(ev(99, T0 + 31_000, conv="conv-9", messages=21))  # one record of 21 messages
    assert h.enforcement().throttle_reason == "loop_suspected"


@hsettings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["c1", "c2"]), st.integers(0, 9_000), st.integers(1, 25)),
        max_size=120,
    )
)
def test_loop_detection_equals_counting_every_message_of_the_last_minute(
    steps: list[tuple[str, int, int]],
) -> None:
    """The ring of 20 times answers exactly "more than 20 messages in the last 60 s"."""
    bot = BotUsage("acct-1", bot_id="bot-1")
    every = _EveryMessage()
    t = T0
    for conversation, gap, messages in steps:
        t += gap
        expected = every.add(conversation, t, messages)
        assert loop_suspected(bot, conversation, t, messages) == expected


class _EveryMessage:
    """The reference: every message's time, per conversation."""

    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {}

    def add(self, conversation: str, t: int, messages: int) -> bool:
        """Record ``messages`` at ``t``; more than 20 in the last 60 s?"""
        times = self.seen.setdefault(conversation, [])
        times += [t] * messages
        return len(times) > 20 and t - times[-21] < LOOP_WINDOW_MS

    def active(self, t: int) -> int:
        """Conversations with a message in the minute up to ``t``."""
        return sum(1 for v in self.seen.values() if v[-1] > t - LOOP_WINDOW_MS)


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 700), st.integers(1, 3)),
        min_size=1,
        max_size=1_500,
    )
)
def test_loop_detection_with_more_conversations_than_it_tracks_counts_the_recent_ones(
    steps: list[tuple[int, int, int]],
) -> None:
    """Up to 400 conversations for a bound of 256: while fewer than 192 of them spoke in
    the last minute, every answer is still exactly "more than 20 in the last 60 s" (only
    silent conversations are forgotten)."""
    bot = BotUsage("acct-1", bot_id="bot-1")
    every = _EveryMessage()
    t = T0
    for conversation, gap, messages in steps:
        t += gap
        expected = every.add(f"c{conversation}", t, messages)
        active = every.active(t)
        got = loop_suspected(bot, f"c{conversation}", t, messages)
        if active < LOOP_TRACKED_CONVERSATIONS * 3 // 4:
            assert got == expected
        assert len(bot.loops) <= LOOP_TRACKED_CONVERSATIONS


def test_a_busy_conversation_is_still_watched_after_hundreds_of_short_ones() -> None:
    """The first conversation seen keeps talking while 1,000 one-message conversations come
    and go: it is the silent ones that are forgotten, and its loop is still caught."""
    bot = BotUsage("acct-1", bot_id="bot-1")
    t = T0
    for i in range(1_000):
        t += 5_000
        assert not loop_suspected(bot, f"short-{i}", t, 1)
        if i % 4 == 0:
            assert not loop_suspected(bot, "busy", t, 1)  # one message every 20 s
    assert "busy" in bot.loops and len(bot.loops) <= LOOP_TRACKED_CONVERSATIONS
    answers = [loop_suspected(bot, "busy", t + k * 1_000, 1) for k in range(1, 22)]
    # Its messages 15 and 35 s before these count: 21 in a minute from the 19th on (had it
    # been forgotten, only from the 21st).
    assert answers == [False] * 18 + [True] * 3


def test_loop_detection_of_one_message_conversations_leaves_nothing_for_the_gc() -> None:
    """A stream of new conversations must not leave a tracked container per event: young
    collections would scan every one of them (measured: 20-60 ms pauses in the worker)."""
    import gc

    bot = BotUsage("acct-1", bot_id="bot-1")
    for i in range(300):
        loop_suspected(bot, f"c{i}", T0 + i, 1)  # one message each: most conversations
    assert not any(gc.is_tracked(ring) for ring in bot.loops.values())
    for n in range(1, 30):
        loop_suspected(bot, "busy", T0 + 1_000 + 1_000 * n, 1 + n % 3)
    assert isinstance(bot.loops["busy"], array)  # a ring of times, no list of int objects
