"""gate(): allow / fallback once per conversation per cap period / silent skip / paused."""

from __future__ import annotations

import dataclasses

import pytest
from core_builders import ACC, MIN, T0
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capstream.core import (
    DEFAULT_FALLBACK,
    CapStatus,
    CoreError,
    EnforcementState,
    FallbackLedger,
    fallback_text,
    gate,
)
from capstream.core.gate import (
    OUTCOME_ALLOW,
    OUTCOME_DELAYED,
    OUTCOME_FALLBACK,
    OUTCOME_PAUSED,
    OUTCOME_SKIP,
    gate_outcome,
)
from capstream.core.messages import TIMEFRAME
from capstream.core.models import Action, Verdict

HOUR_LATER = T0 + 3_600_000
DAILY = CapStatus("daily", "2026-11-18", HOUR_LATER)
MONTHLY = CapStatus("monthly", "2026-11", HOUR_LATER)


def state(**kw: object) -> EnforcementState:
    base: dict[str, object] = {
        "account_id": ACC,
        "bot_id": "bot-1",
        "version": 3,
        "updated_at_ms": T0,
        "blocked_until_ms": None,
        "block_policy_id": None,
        "model": "claude-sonnet-4-6",
        "downgraded_until_ms": None,
        "batching_interval_s": 3,
        "throttled_until_ms": None,
        "throttle_reason": None,
        "caps": {},
        "plan": "pro",
        "fallback_text_daily": fallback_text("", "en", "daily"),
        "fallback_text_monthly": fallback_text("", "en", "monthly"),
        "premium_model": "claude-sonnet-4-6",
    }
    base.update(kw)
    return EnforcementState(**base)  # type: ignore[arg-type]


def test_allow_uses_the_premium_model_and_fast_batching() -> None:
    v = gate(state(), "text", "c1", T0, FallbackLedger())
    assert (v.action, v.model, v.batching_interval_s, v.cap_hit) == (
        "allow",
        "claude-sonnet-4-6",
        3,
        None,
    )


def test_text_cap_sends_the_fallback_once_per_conversation_then_skips() -> None:
    s, ledger = state(caps={"text": DAILY}), FallbackLedger()
    first = gate(s, "text", "c1", T0, ledger)
    assert first.action == "fallback"
    assert first.text == "Thanks! 👋 We're on a quick break — back tomorrow!"
    assert first.cap_hit is not None and first.cap_hit.period_key == "2026-11-18"
    second = gate(s, "text", "c1", T0 + 1, ledger)
    assert (second.action, second.text) == ("skip", None)
    assert second.cap_hit is not None  # still counted in the amber row
    assert gate(s, "text", "c2", T0 + 2, ledger).action == "fallback"  # another conversation


def test_a_new_cap_period_gets_the_fallback_again() -> None:
    ledger = FallbackLedger()
    assert gate(state(caps={"text": DAILY}), "text", "c1", T0, ledger).action == "fallback"
    tomorrow = CapStatus("daily", "2026-11-19", HOUR_LATER + 86_400_000)
    later = state(caps={"text": tomorrow})
    assert gate(later, "text", "c1", T0 + 86_400_000, ledger).action == "fallback"


def test_monthly_text_cap_says_next_week() -> None:
    v = gate(state(caps={"text": MONTHLY}), "text", "c1", T0, FallbackLedger())
    assert v.text == "Thanks! 👋 We're on a quick break — back next week!"
    assert v.reason == "cap:monthly:text"


@pytest.mark.parametrize("category", ["vision", "audio", "documents"])
def test_media_caps_skip_silently_and_other_categories_keep_working(category: str) -> None:
    s, ledger = state(caps={category: DAILY}), FallbackLedger()
    for i in range(3):
        v = gate(s, category, "c1", T0 + i, ledger)
        assert (v.action, v.text) == ("skip", None)
        assert v.cap_hit is not None and v.cap_hit.category == category
    assert gate(s, "text", "c1", T0 + 5, ledger).action == "allow"


def test_cap_hit_carries_what_the_feed_row_needs_with_a_stable_id() -> None:
    v = gate(state(caps={"vision": MONTHLY}), "vision", "c9", T0 + 7, FallbackLedger())
    hit = v.cap_hit
    assert hit is not None
    assert (hit.account_id, hit.bot_id, hit.conversation_id) == (ACC, "bot-1", "c9")
    assert (hit.period, hit.period_key, hit.occurred_at_ms) == ("monthly", "2026-11", T0 + 7)
    again = gate(state(caps={"vision": MONTHLY}), "vision", "c9", T0 + 7, FallbackLedger())
    assert again.cap_hit is not None and again.cap_hit.hit_id == hit.hit_id


def test_a_cap_whose_resume_time_passed_allows_even_from_a_stale_state() -> None:
    v = gate(state(caps={"text": DAILY}), "text", "c1", HOUR_LATER, FallbackLedger())
    assert v.action == "allow"


def test_policy_block_pauses_every_category_until_it_ends() -> None:
    s = state(blocked_until_ms=HOUR_LATER, block_policy_id="p7", caps={"text": DAILY})
    for cat in ["text", "vision", "audio", "documents"]:
        v = gate(s, cat, "c1", T0, FallbackLedger())
        assert (v.action, v.reason) == ("paused", "policy_block:p7")
    assert gate(s, "vision", "c1", HOUR_LATER, FallbackLedger()).action == "allow"


def test_throttled_replies_at_most_once_per_conversation_per_minute() -> None:
    s = state(batching_interval_s=60, throttled_until_ms=HOUR_LATER, throttle_reason="loop")
    ledger = FallbackLedger()
    first = gate(s, "text", "c1", T0, ledger)
    assert (first.action, first.batching_interval_s, first.reply_at_ms) == ("allow", 60, None)
    held = gate(s, "text", "c1", T0 + 20_000, ledger)
    assert held.reply_at_ms == T0 + MIN
    assert gate(s, "text", "c2", T0 + 20_000, ledger).reply_at_ms is None  # other conversation
    assert gate(s, "text", "c1", T0 + MIN, ledger).reply_at_ms is None
    # the throttle ended: fast batching again, no spacing
    after = gate(s, "text", "c1", HOUR_LATER, ledger)
    assert (after.batching_interval_s, after.reply_at_ms) == (3, None)


def test_strict_throttle_spaces_replies_too() -> None:
    s = state(batching_interval_s=60, throttle_reason="strict")
    ledger = FallbackLedger()
    assert gate(s, "text", "c1", T0, ledger).reply_at_ms is None
    assert gate(s, "text", "c1", T0 + 1_000, ledger).reply_at_ms == T0 + MIN


def test_downgraded_model_until_midnight_then_premium() -> None:
    s = state(model="claude-haiku", downgraded_until_ms=HOUR_LATER)
    assert gate(s, "text", "c1", T0, FallbackLedger()).model == "claude-haiku"
    assert gate(s, "text", "c1", HOUR_LATER, FallbackLedger()).model == "claude-sonnet-4-6"


def test_a_state_decoded_without_added_fields_still_returns_to_premium() -> None:
    s = state(model="claude-haiku", downgraded_until_ms=HOUR_LATER, premium_model="")
    assert gate(s, "text", "c1", HOUR_LATER, FallbackLedger()).model == "claude-sonnet-4-6"


def test_unknown_category_is_an_error() -> None:
    with pytest.raises(CoreError, match="unknown category"):
        gate(state(), "smell", "c1", T0, FallbackLedger())


def test_ledger_memory_is_bounded() -> None:
    s, ledger = state(caps={"text": DAILY}), FallbackLedger(max_entries=10)
    for i in range(100):
        gate(s, "text", f"c{i}", T0, ledger)
    assert len(ledger) <= 10


def test_enforcement_state_equality_ignores_gate_caches() -> None:
    a = state()
    assert dataclasses.replace(a) == a


@pytest.mark.parametrize("language", sorted(DEFAULT_FALLBACK))
def test_every_language_has_a_real_default_with_localized_timeframes(language: str) -> None:
    daily = fallback_text("", language, "daily")
    monthly = fallback_text("   ", language, "monthly")
    assert "{{TIMEFRAME}}" not in daily + monthly
    assert TIMEFRAME[language]["daily"] in daily
    assert TIMEFRAME[language]["monthly"] in monthly
    assert daily != monthly
    assert "👋" in daily
    if language != "en":
        assert daily != fallback_text("", "en", "daily")
        assert TIMEFRAME[language]["daily"] != "tomorrow"


def test_tenant_text_fills_in_the_timeframe_in_the_tenant_language() -> None:
    assert fallback_text("Back {{TIMEFRAME}} :)", "en", "daily") == "Back tomorrow :)"
    assert fallback_text("Kembali {{TIMEFRAME}}", "ms", "monthly") == "Kembali minggu depan"
    assert fallback_text("No token here", "ar", "daily") == "No token here"


def test_seven_languages_are_offered() -> None:
    assert set(DEFAULT_FALLBACK) == {"en", "ur", "ms", "ar", "bn", "id", "zh"}


_OUTCOMES = {
    "allow": OUTCOME_ALLOW,
    "fallback": OUTCOME_FALLBACK,
    "skip": OUTCOME_SKIP,
    "paused": OUTCOME_PAUSED,
}
_ENDS = st.one_of(st.none(), st.integers(T0 - 2 * MIN, T0 + 4 * MIN))


@st.composite
def states(draw: st.DrawFn) -> EnforcementState:
    """Enforcement states of every kind: blocked, capped (daily or monthly, ended or not),
    downgraded, throttled (strict, smart with an end) or not, in any combination."""
    blocked = draw(_ENDS)
    caps = {}
    for cat in draw(st.sets(st.sampled_from(["text", "vision", "audio", "documents"]))):
        period = draw(st.sampled_from(["daily", "monthly"]))
        end = draw(st.integers(T0 - MIN, T0 + 4 * MIN))
        caps[cat] = CapStatus(period, "2026-11-18" if period == "daily" else "2026-11", end)
    throttled = draw(st.booleans())
    return state(
        blocked_until_ms=blocked,
        block_policy_id=None if blocked is None else "p1",
        downgraded_until_ms=draw(_ENDS),
        caps=caps,
        batching_interval_s=60 if throttled else 3,
        throttled_until_ms=draw(_ENDS) if throttled else None,
        throttle_reason=draw(st.sampled_from(["strict", "budget_at_risk", "loop_suspected"]))
        if throttled
        else None,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    s=states(),
    calls=st.lists(
        st.tuples(
            st.sampled_from(["text", "text", "vision", "audio", "documents"]),
            st.sampled_from(["c1", "c2", "c3"]),
            st.integers(0, 70_000),
        ),
        min_size=1,
        max_size=40,
    ),
    entries=st.sampled_from([1, 2, 100_000]),
)
def test_gate_outcome_answers_what_gate_answers_and_leaves_the_ledger_the_same(
    s: EnforcementState, calls: list[tuple[str, str, int]], entries: int
) -> None:
    """The simulation counts outcomes with gate_outcome (no verdict built): call by call,
    the same answer as gate() (delayed: allowed with reply_at_ms), and the same ledger."""
    by_gate, by_outcome = FallbackLedger(entries), FallbackLedger(entries)
    now = T0 - 3 * MIN
    for category, conv, step in calls:
        now += step
        v = gate(s, category, conv, now, by_gate)
        expected = _OUTCOMES[v.action]
        if v.action == "allow" and v.reply_at_ms is not None:
            expected = OUTCOME_DELAYED
        assert gate_outcome(s, category, conv, now, by_outcome) == expected
        assert [list(m.items()) for m in (by_gate._sent, by_gate._replies, by_gate._older)] == [
            list(m.items()) for m in (by_outcome._sent, by_outcome._replies, by_outcome._older)
        ]


def test_gate_outcome_refuses_an_unknown_category_as_gate_does() -> None:
    with pytest.raises(CoreError, match="unknown category 'video'"):
        gate_outcome(state(batching_interval_s=60), "video", "c1", T0, FallbackLedger())


@settings(max_examples=100, deadline=None)
@given(s=states())
def test_a_state_holds_the_paused_verdict_its_block_gives_shared_when_it_has_none(
    s: EnforcementState,
) -> None:
    """The paused verdict is built per state only when it has a block; without one the
    shared verdict has what building it gave (``policy_block:None``, no end)."""
    built = Verdict(
        Action.PAUSED, None, 0, None, f"policy_block:{s.block_policy_id}", None, None,
        s.blocked_until_ms,
    )  # fmt: skip
    assert s._paused == built


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(
        st.tuples(st.sampled_from([f"c{i}" for i in range(8)]), st.integers(0, 45_000)),
        min_size=1,
        max_size=120,
    ),
    entries=st.sampled_from([3, 100_000]),
)
def test_throttled_replies_are_spaced_as_if_the_ledger_kept_every_reply(
    calls: list[tuple[str, int]], entries: int
) -> None:
    """The ledger forgets replies over a minute old (its map stays small): call by call, in
    time order, the same answers as a ledger that only forgets its oldest beyond
    ``entries``."""
    s = state(batching_interval_s=60, throttle_reason="strict")
    ledger = FallbackLedger(entries)
    last: dict[str, int] = {}  # the reference: most recent last, the oldest forgotten
    now = T0
    for conv, step in calls:
        now += step
        held = last.get(conv)
        if held is not None and now - held < MIN:
            expected = held + MIN
        else:
            expected = None
            last.pop(conv, None)
            last[conv] = now
            if len(last) > entries:
                del last[next(iter(last))]
        assert gate(s, "text", conv, now, ledger).reply_at_ms == expected


def test_a_long_throttle_keeps_only_the_last_minutes_replies() -> None:
    """A day of throttled calls over 50,000 conversations: the reply map holds the last
    minute or two of them, not 50,000."""
    s = state(batching_interval_s=60, throttle_reason="strict")
    ledger = FallbackLedger()
    for i in range(50_000):
        gate_outcome(s, "text", f"c{i}", T0 + i * 1_728, ledger)  # one call every 1.7 s
    assert len(ledger) <= 2 * (MIN // 1_728 + 1)
    assert gate(s, "text", "c49999", T0 + 49_999 * 1_728 + 1_000, ledger).reply_at_ms == (
        T0 + 49_999 * 1_728 + MIN
    )
