"""gate() answers from the view's states through the core, and reports capped attempts."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from capstream.core.gate import FallbackLedger
from capstream.core.gate import gate as core_gate
from capstream.core.models import Action, CapHit, CapStatus, EnforcementState, ValueBlock
from capstream.errors import CapstreamError
from capstream.gateway import CONTROL_UNAVAILABLE, Gateway, UnknownCategoryError

NOW = 1_790_000_000_000
TOMORROW = NOW + 10 * 3_600_000


class FakeView:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], EnforcementState] = {}
        self.value_blocks: dict[str, dict[tuple[str, str, str], ValueBlock]] = {}
        self.closed = False
        self.ready = True
        self.staleness_s = 0.0

    def put(self, state: EnforcementState) -> None:
        self.states[(state.account_id, state.bot_id)] = state

    def close(self) -> None:
        pass


class ListReporter:
    def __init__(self) -> None:
        self.hits: list[CapHit] = []

    def report(self, hit: CapHit) -> bool:
        self.hits.append(hit)
        return True

    def close(self) -> int:
        return 0


def state(bot: str = "bot-1", version: int = 1, **changes: Any) -> EnforcementState:
    fields: dict[str, Any] = {
        "account_id": "acct-1",
        "bot_id": bot,
        "version": version,
        "updated_at_ms": NOW,
        "blocked_until_ms": None,
        "block_policy_id": None,
        "model": "claude-sonnet-4-6",
        "downgraded_until_ms": None,
        "batching_interval_s": 3,
        "throttled_until_ms": None,
        "throttle_reason": None,
        "caps": {},
        "plan": "pro",
        "fallback_text_daily": "Thanks! We're on a quick break - back tomorrow!",
        "fallback_text_monthly": "Back next month.",
    }
    fields.update(changes)
    return EnforcementState(**fields)


@pytest.fixture
def parts() -> tuple[Gateway, FakeView, ListReporter]:
    view, reporter = FakeView(), ListReporter()
    gw = Gateway(None, view=view, reporter=reporter)  # type: ignore[arg-type]
    return gw, view, reporter


def test_a_bot_without_state_is_allowed_on_the_default_model(parts: Any) -> None:
    gw, _, reporter = parts
    verdict = gw.gate("acct-1", "new-bot", "c1", "text", NOW)
    assert (verdict.action, verdict.model, verdict.batching_interval_s) == (
        "allow",
        "claude-sonnet-4-6",
        3,
    )
    assert reporter.hits == []


def test_the_account_wide_state_covers_bots_without_their_own(parts: Any) -> None:
    gw, view, _ = parts
    view.put(state(bot="*", blocked_until_ms=TOMORROW, block_policy_id="p-total"))
    view.put(state(bot="bot-2"))
    assert gw.gate("acct-1", "bot-1", "c1", "text", NOW).action == "paused"
    assert gw.gate("acct-1", "bot-2", "c1", "text", NOW).action == "allow"


def test_downgrade_and_throttle_come_from_the_state(parts: Any) -> None:
    gw, view, _ = parts
    view.put(
        state(
            model="claude-haiku",
            downgraded_until_ms=TOMORROW,
            batching_interval_s=60,
            throttled_until_ms=TOMORROW,
            throttle_reason="budget",
        )
    )
    verdict = gw.gate("acct-1", "bot-1", "c1", "text", NOW)
    assert (verdict.action, verdict.model, verdict.batching_interval_s) == (
        "allow",
        "claude-haiku",
        60,
    )


def test_capped_text_gets_the_fallback_once_per_conversation_then_silence(parts: Any) -> None:
    gw, view, reporter = parts
    cap = CapStatus("daily", "2026-09-21", TOMORROW)
    view.put(state(caps={"text": cap}))
    actions = [gw.gate("acct-1", "bot-1", "c1", "text", NOW + i).action for i in range(20)]
    assert actions == ["fallback"] + ["skip"] * 19
    assert gw.gate("acct-1", "bot-1", "c2", "text", NOW).text == (
        "Thanks! We're on a quick break - back tomorrow!"
    )
    # every capped attempt is reported, so the amber row counts 20 attempts for c1
    assert len(reporter.hits) == 21
    assert {h.conversation_id for h in reporter.hits} == {"c1", "c2"}
    assert len({h.hit_id for h in reporter.hits}) == 21


def test_capped_media_is_skipped_silently_while_text_still_works(parts: Any) -> None:
    gw, view, reporter = parts
    view.put(state(caps={"vision": CapStatus("monthly", "2026-09", TOMORROW)}))
    vision = gw.gate("acct-1", "bot-1", "c1", "vision", NOW)
    assert (vision.action, vision.text) == ("skip", None)
    assert gw.gate("acct-1", "bot-1", "c1", "text", NOW).action == "allow"
    assert [(h.category, h.period) for h in reporter.hits] == [("vision", "monthly")]


def test_a_fail_closed_view_pauses_every_call(parts: Any) -> None:
    gw, view, _ = parts
    view.closed = True
    assert gw.gate("acct-1", "bot-1", "c1", "text", NOW) is CONTROL_UNAVAILABLE
    view.closed = False
    assert gw.gate("acct-1", "bot-1", "c1", "text", NOW).action == "allow"


def test_unknown_categories_are_refused_clearly(parts: Any) -> None:
    gw, view, _ = parts
    with pytest.raises(UnknownCategoryError, match="video"):
        gw.gate("acct-1", "no-state", "c1", "video", NOW)
    view.put(state())
    with pytest.raises(CapstreamError, match="video"):
        gw.gate("acct-1", "bot-1", "c1", "video", NOW)


@pytest.mark.parametrize(
    "changes",
    [{}, {"blocked_until_ms": TOMORROW, "block_policy_id": "p"}, {"batching_interval_s": 60}],
)
def test_an_unknown_category_is_one_error_with_one_message(
    parts: Any, changes: dict[str, Any]
) -> None:
    """Issue 18 item 11: the same type and text with and without a state for the bot."""
    gw, view, _ = parts
    with pytest.raises(UnknownCategoryError) as without_state:
        gw.gate("acct-1", "bot-1", "c1", "video", NOW)
    view.put(state(**changes))
    with pytest.raises(UnknownCategoryError) as with_state:
        gw.gate("acct-1", "bot-1", "c1", "video", NOW)
    assert type(with_state.value) is type(without_state.value)
    assert str(with_state.value) == str(without_state.value)
    assert "'video'" in str(with_state.value) and "text" in str(with_state.value)


def test_threads_sharing_a_gateway_send_the_fallback_once(parts: Any) -> None:
    gw, view, _ = parts
    view.put(state(caps={"text": CapStatus("daily", "2026-09-21", TOMORROW)}))
    results: list[str] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        for i in range(200):
            results.append(gw.gate("acct-1", "bot-1", "c1", "text", NOW + i).action)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("fallback") == 1
    assert len(results) == 1600


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"model": "claude-haiku", "downgraded_until_ms": TOMORROW, "premium_model": "opus"},
        {"blocked_until_ms": TOMORROW, "block_policy_id": "p-1"},
        {"batching_interval_s": 60, "throttled_until_ms": TOMORROW, "throttle_reason": "b"},
        {"caps": {"audio": CapStatus("daily", "2026-09-21", TOMORROW)}},
    ],
)
@pytest.mark.parametrize("category", ["text", "vision", "audio", "documents"])
def test_the_gateway_answers_what_the_core_decides_around_each_deadline(
    parts: Any, changes: dict[str, Any], category: str
) -> None:
    gw, view, _ = parts
    s = state(**changes)
    view.put(s)
    for at in (NOW, TOMORROW - 1, TOMORROW, TOMORROW + 1):
        ours = gw.gate("acct-1", "bot-1", f"c-{at}", category, at)
        theirs = core_gate(s, category, f"c-{at}", at, FallbackLedger())
        assert (ours.action, ours.model, ours.batching_interval_s, ours.reason) == (
            theirs.action,
            theirs.model,
            theirs.batching_interval_s,
            theirs.reason,
        )
    if changes.get("downgraded_until_ms"):  # the premium model is back after the downgrade
        assert gw.gate("acct-1", "bot-1", "c1", category, TOMORROW).model == "opus"


def test_every_refusal_says_when_it_resumes(parts: Any) -> None:
    """Issue 18 item 10: paused, fallback and skip carry ``resumes_at_ms``; allow does not."""
    gw, view, _ = parts
    block_end, day_end, month_end = NOW + 600_000, NOW + 3_600_000, NOW + 86_400_000
    view.put(state(blocked_until_ms=block_end, block_policy_id="p1"))
    paused = gw.gate("acct-1", "bot-1", "c1", "text", NOW)
    assert (paused.action, paused.resumes_at_ms) == ("paused", block_end)
    view.put(state(
        version=2,
        caps={"text": CapStatus("daily", "2026-09-21", day_end),
              "vision": CapStatus("monthly", "2026-09", month_end)},
    ))  # fmt: skip
    fallback = gw.gate("acct-1", "bot-1", "c1", "text", NOW)
    skip = gw.gate("acct-1", "bot-1", "c1", "text", NOW + 1)
    media = gw.gate("acct-1", "bot-1", "c1", "vision", NOW)
    assert (fallback.action, fallback.resumes_at_ms) == ("fallback", day_end)
    assert (skip.action, skip.resumes_at_ms) == ("skip", day_end)
    assert (media.action, media.resumes_at_ms) == ("skip", month_end)
    allowed = gw.gate("acct-1", "bot-1", "c1", "audio", NOW)
    assert (allowed.action, allowed.resumes_at_ms) == ("allow", None)


@pytest.mark.parametrize(
    ("changes", "ends"),
    [
        ({}, False),
        ({"model": "claude-haiku", "downgraded_until_ms": TOMORROW}, True),
        ({"blocked_until_ms": TOMORROW, "block_policy_id": "p-1"}, True),
        ({"caps": {"audio": CapStatus("daily", "2026-09-21", TOMORROW)}}, False),
    ],
)
def test_the_public_fast_verdict_is_the_cores_answer_or_none(
    changes: dict[str, Any], ends: bool
) -> None:
    """What gate() (the gateway's) takes instead of the state's private fields: the core's
    precomputed answer where one holds, else None (then core.gate decides)."""
    s = state(**changes)
    for category in ("text", "vision", "audio", "documents"):
        for at in (NOW, TOMORROW - 1, TOMORROW, TOMORROW + 1):
            fast = s.fast_verdict(category, at)
            if fast is not None:
                assert fast is core_gate(s, category, "c", at, FallbackLedger())
        # the clock not read yet: only a verdict without an end
        assert (s.fast_verdict(category, -1) is None) == (ends or category in s.caps)
    assert s.fast_verdict("text", NOW) is not None


def test_a_verdicts_action_is_typed_and_still_its_string(parts: Any) -> None:
    gw, view, _ = parts
    view.put(state(caps={"audio": CapStatus("daily", "2026-09-21", TOMORROW)}))
    allow = gw.gate("acct-1", "bot-1", "c1", "text", NOW)
    skip = gw.gate("acct-1", "bot-1", "c1", "audio", NOW)
    assert (allow.action, skip.action) == (Action.ALLOW, Action.SKIP)
    assert isinstance(allow.action, Action) and isinstance(skip.action, Action)
    assert allow.action == "allow" and f"{skip.action}" == "skip"
    assert CONTROL_UNAVAILABLE.action is Action.PAUSED
    assert [a.value for a in Action] == ["allow", "fallback", "skip", "paused"]
