"""The demo's progress display: events flowing, decisions made, each bot's state in words."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from capstream.core.models import Action, CapStatus, EnforcementState, Verdict
from capstream.demo.display import Counters, Progress, bot_story
from capstream.demo.processes import Supervisor
from capstream.simulator import BotTraffic, Simulator, TenantScenario

NOW = 1_780_000_000_000
ALLOW = Verdict(Action.ALLOW, "claude-sonnet-4-6", 3, None, None, None)


BASE = EnforcementState(
    "acme", "bot-1", 1, NOW, None, None, "claude-sonnet-4-6", None, 3, None, None, {}, "pro", "", ""
)


def state(**changes: Any) -> EnforcementState:
    return dataclasses.replace(BASE, **changes)


def test_bot_story_names_what_holds_a_bot_back_right_now() -> None:
    assert bot_story(None, NOW) == []
    assert bot_story(state(), NOW) == []
    busy = state(
        blocked_until_ms=NOW + 125_000, caps={"text": CapStatus("daily", "d", NOW + 1)},
        downgraded_until_ms=NOW + 1, model="claude-haiku", batching_interval_s=60,
        throttle_reason="loop_suspected",
    )  # fmt: skip
    assert bot_story(busy, NOW) == [
        "paused 2:05", "text capped (daily)", "→ claude-haiku", "throttled (loop suspected)"
    ]  # fmt: skip
    assert bot_story(state(blocked_until_ms=NOW + 7_200_000), NOW) == ["paused 2h00m"]
    over = state(blocked_until_ms=NOW, caps={"text": CapStatus("daily", "d", NOW)})
    assert bot_story(over, NOW) == []  # what has ended is not shown


def test_counters_count_decisions_blocks_and_cap_states() -> None:
    c = Counters()
    for s in (state(), state(blocked_until_ms=NOW), state(caps={"vision": CapStatus("monthly",
              "m", NOW)})):  # fmt: skip
        c.on_state(s)
    assert (c.decisions, c.blocks, c.cap_states) == (3, 1, 1)


class Gateway:
    def gate(self, account_id: str, bot_id: str, conversation_id: str, category: str,
             now: int | None = None) -> Verdict:  # fmt: skip
        return ALLOW


class Recorder:
    def __init__(self) -> None:
        self.events = 0

    def record(self, **fields: Any) -> bool:
        self.events += 1
        return True


def test_progress_shows_messages_events_decisions_and_each_tenant(tmp_path: Path) -> None:
    bot = BotTraffic("bot-1", "Bot", conversations=2, mean_gap_s=0.5)
    tenant = TenantScenario("acme", "o@acme.test", "free", "UTC", "story", {}, (), (bot,))
    recorder = Recorder()
    sim = Simulator(Gateway(), recorder, (tenant,), clock=lambda: NOW, seed=3)
    for t in range(NOW, NOW + 30_000, 100):
        sim.step(t)
    counters = Counters()
    counters.on_state(state(blocked_until_ms=NOW * 2))
    states = {("acme", "bot-1"): state(blocked_until_ms=NOW * 2)}
    progress = Progress("http://127.0.0.1:1/dashboard/", Supervisor(tmp_path, {}), sim, states,
                        counters, lambda: recorder.events, lambda: 2)  # fmt: skip
    messages = sim.stats["acme"].messages
    assert messages > 0 and recorder.events > 0
    line = progress.line()
    assert f"messages {messages:,}" in line
    assert f"events delivered {recorder.events:,}, decisions 1," in line
    assert "emails 2" in line and "acme: bot-1: paused" in line
    console = Console(record=True, width=200)
    console.print(progress)
    screen = console.export_text()
    assert f"{recorder.events:,} usage events delivered" in screen
    assert "1 decisions (1 with a block, 0 with a cap)" in screen
    assert "acme" in screen and "bot-1: paused" in screen
