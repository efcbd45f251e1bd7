"""The demo's progress display: services, events flowing, decisions made, each tenant's story."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from capstream.core.models import ACCOUNT_WIDE_BOT, EnforcementState
from capstream.demo.processes import Supervisor
from capstream.simulator import Simulator, TenantScenario


@dataclass(slots=True)
class Counters:
    """Pipeline counters the demo's threads increment."""

    decisions: int = 0
    blocks: int = 0
    cap_states: int = 0
    started: float = field(default_factory=time.monotonic)

    def on_state(self, state: EnforcementState) -> None:
        """ControlView callback: one more decision received from the control topic."""
        self.decisions += 1
        if state.blocked_until_ms is not None:
            self.blocks += 1
        if state.caps:
            self.cap_states += 1


def _left(ms: int, now: int) -> str:
    s = max(0, (ms - now) // 1000)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def bot_story(state: EnforcementState | None, now: int) -> list[str]:
    """What a bot's enforcement state means right now, in a few words."""
    if state is None:
        return []
    out = []
    if state.blocked_until_ms is not None and state.blocked_until_ms > now:
        out.append(f"paused {_left(state.blocked_until_ms, now)}")
    for cat, cap in sorted(state.caps.items()):
        if cap.resumes_at_ms > now:
            out.append(f"{cat} capped ({cap.period})")
    if state.downgraded_until_ms is not None and state.downgraded_until_ms > now:
        out.append(f"→ {state.model}")
    if state.batching_interval_s >= 60:
        out.append(f"throttled ({(state.throttle_reason or '').replace('_', ' ')})")
    return out


class Progress:
    """A rich renderable (refreshed by ``rich.live.Live``) and a one-line form for logs."""

    def __init__(
        self,
        url: str,
        supervisor: Supervisor,
        simulator: Simulator,
        states: dict[tuple[str, str], EnforcementState],
        counters: Counters,
        delivered: Callable[[], int],
        mails: Callable[[], int],
    ) -> None:
        self.url = url
        self.supervisor = supervisor
        self.simulator = simulator
        self.states = states
        self.counters = counters
        self._delivered = delivered
        self._mails = mails

    def tenant_state(self, tenant: TenantScenario, now: int) -> str:
        parts = []
        states, account = self.states, tenant.account_id
        for bot in tenant.bots:  # a bot with no state of its own follows its account's
            state = states.get((account, bot.bot_id)) or states.get((account, ACCOUNT_WIDE_BOT))
            story = bot_story(state, now)
            if story:
                parts.append(f"{bot.bot_id}: {', '.join(story)}")
        return "; ".join(parts) or "all bots replying"

    def __rich__(self) -> RenderableType:
        now = time.time_ns() // 1_000_000
        up = int(time.monotonic() - self.counters.started)
        services = Text("services: ")
        for s in self.supervisor.services.values():
            services.append("● " if s.running else "✖ ", style="green" if s.running else "red")
            services.append(f"{s.name}  ")
        services.append(f"up {up // 60}:{up % 60:02d}", style="dim")
        sim = self.simulator.stats.values()
        flow = Text.assemble(
            ("pipeline: ", "bold"),
            f"{sum(t.messages for t in sim):,} customer messages → ",
            f"{sum(t.replies for t in sim):,} AI replies → ",
            (f"{self._delivered():,} usage events delivered", "cyan"),
            " · ",
            (f"{self.counters.decisions:,} decisions", "magenta"),
            f" ({self.counters.blocks} with a block, {self.counters.cap_states} with a cap) · ",
            f"{sum(t.cap_hits for t in sim):,} cap hits · ",
            (f"{self._mails()} emails caught", "yellow"),
        )
        table = Table(expand=True, show_edge=False, pad_edge=False)
        for col, just in (("tenant", "left"), ("plan", "left"), ("msgs", "right"),
                          ("AI replies", "right"), ("fallback", "right"), ("skipped", "right"),
                          ("paused", "right"), ("model", "left"), ("state", "left")):  # fmt: skip
            table.add_column(col, justify=just, no_wrap=col != "state")  # type: ignore[arg-type]
        for t in self.simulator.tenants:
            st = self.simulator.stats[t.account_id]
            table.add_row(
                t.account_id, t.plan, f"{st.messages:,}", f"{st.replies:,}", f"{st.fallbacks:,}",
                f"{st.skipped:,}", f"{st.paused:,}", st.model or "—", self.tenant_state(t, now),
            )  # fmt: skip
        head = Text.assemble(("dashboard ", "bold"), (self.url, "bold underline blue"),
                             ("   Ctrl-C stops everything", "dim"))  # fmt: skip
        return Group(head, services, flow, table)

    def line(self) -> str:
        """One line for logs (when stdout is not a terminal)."""
        sim = self.simulator.stats.values()
        now = time.time_ns() // 1_000_000
        stories = " | ".join(
            f"{t.account_id}: {self.tenant_state(t, now)}" for t in self.simulator.tenants
        )
        msgs, replies = sum(t.messages for t in sim), sum(t.replies for t in sim)
        return (
            f"messages {msgs:,}, replies {replies:,}, events delivered {self._delivered():,}, "
            f"decisions {self.counters.decisions:,}, cap hits {sum(t.cap_hits for t in sim):,}, "
            f"emails {self._mails()} — {stories}"
        )
