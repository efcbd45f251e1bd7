"""The traffic simulator behaves like a real bot gateway: gate first, batch, record after."""

from __future__ import annotations

import itertools
from typing import Any

from capstream.core.models import Action, CapHit, Verdict
from capstream.simulator import DEMO_TENANTS, BotTraffic, Simulator, TenantScenario

ALLOW = Verdict(Action.ALLOW, "claude-sonnet-4-6", 3, None, None, None)


class FakeGateway:
    """Answers every gate() with ``verdict`` (changeable) and remembers the calls."""

    def __init__(self, verdict: Verdict = ALLOW) -> None:
        self.verdict = verdict
        self.calls: list[tuple[str, str, str, str, int | None]] = []

    def gate(
        self, account_id: str, bot_id: str, conversation_id: str, category: str,
        now: int | None = None,
    ) -> Verdict:  # fmt: skip
        self.calls.append((account_id, bot_id, conversation_id, category, now))
        return self.verdict


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, *args: Any, **fields: Any) -> bool:
        assert not args
        self.events.append(fields)
        return True


def tenant(*bots: BotTraffic) -> TenantScenario:
    return TenantScenario("acme", "o@acme.test", "free", "UTC", "story", {}, (), bots)


def run(sim: Simulator, start: int, seconds: float, step_ms: int = 100) -> None:
    for t in range(start, start + int(seconds * 1000) + 1, step_ms):
        sim.step(t)


def test_allowed_messages_become_one_recorded_ai_call_per_batching_interval() -> None:
    gw, rec = FakeGateway(), FakeRecorder()
    t0 = 1_000_000
    bot = BotTraffic("bot-1", "Bot", conversations=1, mean_gap_s=0.5, tokens=(100, 100),
                     credits_micro=(10, 10), messages_per_conversation=1000)  # fmt: skip
    sim = Simulator(gw, rec, (tenant(bot),), clock=lambda: t0, seed=7)
    run(sim, t0, 30)
    stats = sim.stats["acme"]
    assert stats.messages == len(gw.calls) > 30  # every message asked the gateway first
    pending = sum(len(b.messages) for b in sim.batcher.due(1 << 62))  # the last open batch
    assert sum(e["messages"] for e in rec.events) + pending == stats.messages  # none lost
    # one AI call (one usage event) answers every message of its 3-second batch
    assert 8 <= len(rec.events) <= 11 < stats.messages
    assert all(e["messages"] >= 1 for e in rec.events)
    assert [e["conversation_started"] for e in rec.events] == [True] + [False] * (
        len(rec.events) - 1
    )
    assert all(e["tokens_in"] + e["tokens_out"] == 100 * e["messages"] for e in rec.events)
    assert all(e["credits_micro"] == 10 * e["messages"] for e in rec.events)
    assert len({e["event_id"] for e in rec.events}) == len(rec.events)
    times = [e["occurred_at_ms"] for e in rec.events]
    assert all(b - a >= 3_000 for a, b in itertools.pairwise(times))


def test_throttled_conversations_get_at_most_one_reply_a_minute() -> None:
    gw, rec = (
        FakeGateway(Verdict(Action.ALLOW, "claude-haiku", 60, None, "throttle", None)),
        FakeRecorder(),
    )
    t0 = 5_000_000
    bot = BotTraffic("bot-1", "Bot", conversations=0, mean_gap_s=1.0, loop_conversations=1,
                     loop_gap_s=0.5, credits_micro=(1_000, 1_000))  # fmt: skip
    sim = Simulator(gw, rec, (tenant(bot),), clock=lambda: t0, seed=1)
    run(sim, t0, 150)
    assert sim.stats["acme"].messages == 300  # a loop: a message every half second
    assert len(rec.events) == 2  # replies at 60 s and 120 s only
    assert all(e["messages"] >= 100 for e in rec.events)
    assert rec.events[0]["credits_micro"] == int(rec.events[0]["messages"] * 1_000 * 0.3)  # haiku
    assert all(e["conversation_id"].startswith("loop-") for e in rec.events)


def test_fallback_skip_and_paused_send_no_ai_call_and_record_nothing() -> None:
    t0 = 9_000_000
    hit = CapHit("acme", "bot-1", "c", "text", "daily", "2026-05-28", t0, "h1")
    bot = BotTraffic("bot-1", "Bot", conversations=2, mean_gap_s=0.5)
    for verdict, counter in (
        (Verdict(Action.FALLBACK, None, 0, "Back tomorrow!", "cap:daily:text", hit), "fallbacks"),
        (Verdict(Action.SKIP, None, 0, None, "cap:daily:text", hit), "skipped"),
        (Verdict(Action.PAUSED, None, 0, None, "policy_block:p1", None), "paused"),
    ):
        gw, rec = FakeGateway(verdict), FakeRecorder()
        sim = Simulator(gw, rec, (tenant(bot),), clock=lambda: t0, seed=3)
        run(sim, t0, 20)
        stats = sim.stats["acme"]
        assert rec.events == [] and stats.replies == 0
        assert getattr(stats, counter) == stats.messages > 0
        assert stats.cap_hits == (stats.messages if verdict.cap_hit else 0)
    assert stats.last_fallback == "" and sim.stats["acme"].paused > 0


def test_customers_leave_and_new_conversations_start() -> None:
    gw, rec = FakeGateway(), FakeRecorder()
    t0 = 2_000_000
    bot = BotTraffic("bot-1", "Bot", conversations=2, mean_gap_s=0.5, messages_per_conversation=3)
    sim = Simulator(gw, rec, (tenant(bot),), clock=lambda: t0, seed=5)
    run(sim, t0, 30)
    per_conv: dict[str, int] = {}
    for _, _, conv, _, _ in gw.calls:
        per_conv[conv] = per_conv.get(conv, 0) + 1
    assert len(per_conv) > 10 and max(per_conv.values()) == 3
    assert sum(e["conversation_started"] for e in rec.events) == len(
        {e["conversation_id"] for e in rec.events}
    )


def test_categories_follow_the_bots_mix_and_batches_never_mix_them() -> None:
    gw, rec = FakeGateway(), FakeRecorder()
    t0 = 3_000_000
    bot = BotTraffic("bot-1", "Bot", conversations=3, mean_gap_s=0.3,
                     mix=(("text", 1), ("vision", 1)))  # fmt: skip
    sim = Simulator(gw, rec, (tenant(bot),), clock=lambda: t0, seed=11)
    run(sim, t0, 60)
    cats = [c[3] for c in gw.calls]
    assert 0.35 < cats.count("vision") / len(cats) < 0.65
    assert {e["category"] for e in rec.events} == {"text", "vision"}


def test_the_demo_tenants_tell_the_four_stories() -> None:
    by_id = {t.account_id: t for t in DEMO_TENANTS}
    assert by_id["acme"].plan == "free" and by_id["acme"].settings["caps"]["text"]["daily_micro"]
    assert by_id["globex"].plan == "pro" and by_id["globex"].settings["auto_downgrade"] is True
    (policy,) = by_id["initech"].policies
    assert (policy["metric"], policy["window_seconds"]) == ("tokens", 3_600) and policy["block"]
    assert any(b.loop_conversations for b in by_id["umbrella"].bots)
    assert by_id["umbrella"].settings["throttle"] == "smart"
