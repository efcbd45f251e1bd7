"""Traffic simulator: customers chat with tenants' bots through a gateway that behaves like a
real one — ``gate()`` before every AI call, replies batched per interval, usage recorded after
each call, fallback text sent once, capped media skipped, paused bots silent."""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from capstream.core.models import Verdict
from capstream.gateway.batcher import ReplyBatch, ReplyBatcher

MODEL_PRICE = {"claude-haiku": 0.3}
"""Credits per call relative to the premium model (the downgrade model is cheaper)."""


class GatePort(Protocol):
    """What the simulator asks before each AI call (``capstream.gateway.Gateway`` fits)."""

    def gate(
        self,
        account_id: str,
        bot_id: str,
        conversation_id: str,
        category: str,
        now: int | None = None,
    ) -> Verdict: ...


class RecordPort(Protocol):
    """Where usage goes after each AI call (``capstream.gateway.UsageRecorder`` fits)."""

    def record(self, *args: Any, **fields: Any) -> bool: ...


@dataclass(frozen=True, slots=True)
class BotTraffic:
    """One bot's customers: how many at once, how often they write, what it costs."""

    bot_id: str
    name: str
    conversations: int
    mean_gap_s: float
    mix: tuple[tuple[str, int], ...] = (("text", 1),)
    tokens: tuple[int, int] = (300, 900)
    credits_micro: tuple[int, int] = (1_000, 3_000)
    messages_per_conversation: int = 12
    loop_conversations: int = 0
    """conversations stuck in a loop: a message every ``loop_gap_s``, never ending"""
    loop_gap_s: float = 0.6


@dataclass(frozen=True, slots=True)
class TenantScenario:
    """A tenant of the demo: its account, settings, policies, bots and what to watch for."""

    account_id: str
    owner_email: str
    plan: str
    timezone: str
    story: str
    settings: dict[str, Any]
    policies: tuple[dict[str, Any], ...]
    bots: tuple[BotTraffic, ...]


@dataclass(slots=True)
class TenantStats:
    """What happened to one tenant's traffic (read by the progress display)."""

    messages: int = 0
    replies: int = 0
    fallbacks: int = 0
    skipped: int = 0
    paused: int = 0
    cap_hits: int = 0
    events: int = 0
    tokens: int = 0
    credits_micro: int = 0
    model: str = ""
    batching_s: int = 0
    last_fallback: str = ""


@dataclass(slots=True)
class _Conversation:
    tenant: TenantScenario
    bot: BotTraffic
    conversation_id: str
    loop: bool
    sent: int = 0
    started: bool = False


@dataclass(slots=True)
class _Message:
    category: str
    tokens: int
    credits_micro: int


@dataclass(order=True, slots=True)
class _Due:
    at_ms: int
    seq: int
    conversation: _Conversation = field(compare=False)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Simulator:
    """Drives every conversation of ``tenants`` through ``gateway`` and ``recorder``.

    Call :meth:`step` with the current time (tests do, with a fake clock) or :meth:`run` in a
    thread until ``stop`` is set. ``stats`` holds counters per account.
    """

    def __init__(
        self,
        gateway: GatePort,
        recorder: RecordPort,
        tenants: tuple[TenantScenario, ...],
        *,
        clock: Callable[[], int] = _now_ms,
        seed: int | None = None,
    ) -> None:
        self.gateway = gateway
        self.recorder = recorder
        self.tenants = tenants
        self.clock = clock
        self.rng = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.stats = {t.account_id: TenantStats() for t in tenants}
        self.batcher: ReplyBatcher[_Message] = ReplyBatcher(clock)
        self._open: dict[Hashable, _Conversation] = {}
        self._queue: list[_Due] = []
        self._seq = itertools.count()
        self._ids = itertools.count()
        now = clock()
        for tenant in tenants:
            for bot in tenant.bots:
                for i in range(bot.conversations + bot.loop_conversations):
                    self._start(tenant, bot, now, loop=i >= bot.conversations)

    def _start(self, tenant: TenantScenario, bot: BotTraffic, now: int, *, loop: bool) -> None:
        conv = _Conversation(tenant, bot, f"{'loop' if loop else 'conv'}-{next(self._ids)}", loop)
        self._schedule(conv, now)

    def _schedule(self, conv: _Conversation, now: int) -> None:
        gap = conv.bot.loop_gap_s if conv.loop else self.rng.expovariate(1 / conv.bot.mean_gap_s)
        heapq.heappush(self._queue, _Due(now + int(gap * 1000), next(self._seq), conv))

    def _message(self, bot: BotTraffic) -> _Message:
        cats, weights = zip(*bot.mix, strict=True)
        return _Message(
            self.rng.choices(cats, weights)[0],
            self.rng.randint(*bot.tokens),
            self.rng.randint(*bot.credits_micro),
        )

    def step(self, now: int | None = None) -> None:
        """Deliver every customer message due by ``now`` and make every AI call due by then."""
        now = self.clock() if now is None else now
        while self._queue and self._queue[0].at_ms <= now:
            conv = heapq.heappop(self._queue).conversation
            self._incoming(conv, self._message(conv.bot), now)
            conv.sent += 1
            if conv.loop or conv.sent < conv.bot.messages_per_conversation:
                self._schedule(conv, now)
            else:  # the customer leaves; another one arrives
                self._start(conv.tenant, conv.bot, now, loop=False)
        for batch in self.batcher.due(now):
            self._reply(batch, now)

    def _incoming(self, conv: _Conversation, msg: _Message, now: int) -> None:
        t = conv.tenant
        stats = self.stats[t.account_id]
        stats.messages += 1
        verdict = self.gateway.gate(t.account_id, conv.bot.bot_id, conv.conversation_id,
                                    msg.category, now)  # fmt: skip
        if verdict.cap_hit is not None:
            stats.cap_hits += 1
        if verdict.action == "allow":
            key = (t.account_id, conv.bot.bot_id, conv.conversation_id, msg.category)
            self._open[key] = conv
            self.batcher.add(key, msg, verdict, now)
            stats.batching_s = verdict.batching_interval_s
        elif verdict.action == "fallback":
            stats.fallbacks += 1  # the customer gets verdict.text instead of an AI reply
            stats.last_fallback = verdict.text or ""
        elif verdict.action == "skip":
            stats.skipped += 1
        else:
            stats.paused += 1

    def _reply(self, batch: ReplyBatch[_Message], now: int) -> None:
        """One AI call answers the batch; its usage is recorded afterwards."""
        conv = self._open.pop(batch.conversation, None)
        if conv is None or not batch.messages:
            return
        account_id = conv.tenant.account_id
        category = batch.messages[0].category  # batches are per (conversation, category)
        model = batch.model or ""
        price = MODEL_PRICE.get(model, 1.0)
        tokens = sum(m.tokens for m in batch.messages)
        credits = int(sum(m.credits_micro for m in batch.messages) * price)
        out = tokens // 3
        self.recorder.record(
            event_id=f"sim-{self.run_id}-{next(self._ids)}",
            account_id=account_id,
            bot_id=conv.bot.bot_id,
            conversation_id=conv.conversation_id,
            category=category,
            model=model,
            tokens_in=tokens - out,
            tokens_out=out,
            messages=len(batch.messages),
            conversation_started=not conv.started,
            credits_micro=credits,
            occurred_at_ms=now,
        )
        conv.started = True
        stats = self.stats[account_id]
        stats.replies += 1
        stats.events += 1
        stats.tokens += tokens
        stats.credits_micro += credits
        stats.model = model

    def next_due_ms(self) -> int | None:
        """The next instant something happens (a message or an AI call)."""
        times = [self._queue[0].at_ms] if self._queue else []
        batch = self.batcher.next_due_ms()
        if batch is not None:
            times.append(batch)
        return min(times) if times else None

    def run(self, stop: threading.Event, max_sleep_s: float = 0.2) -> None:
        """Step in real time until ``stop`` is set."""
        while not stop.is_set():
            self.step()
            nxt = self.next_due_ms()
            delay = max_sleep_s if nxt is None else (nxt - self.clock()) / 1000
            stop.wait(min(max_sleep_s, max(0.0, delay)))


def _hourly_token_policy(threshold: int, block_s: int) -> dict[str, Any]:
    return {
        "policy_id": "per-hour-tokens",
        "name": "Per-hour token cap",
        "metric": "tokens",
        "threshold": threshold,
        "window_seconds": 3_600,
        "scope": "account_each_bot",
        "alert": {"recipients": []},
        "block": {"duration_seconds": block_s},
    }


DEMO_TENANTS: tuple[TenantScenario, ...] = (
    TenantScenario(
        account_id="acme",
        owner_email="owner@acme.example",
        plan="free",
        timezone="Europe/London",
        story="free plan: the daily text cap runs out → fallback once per conversation, "
        "amber rows with 'Upgrade to Starter →'",
        settings={
            "caps": {"text": {"daily_micro": 60_000, "monthly_micro": 2_000_000}},
            "throttle": "off",
        },
        policies=(),
        bots=(
            BotTraffic(
                "helpdesk",
                "Helpdesk",
                conversations=3,
                mean_gap_s=2.5,
                credits_micro=(1_500, 3_000),
            ),
            BotTraffic(
                "shop-bot",
                "Shop assistant",
                conversations=2,
                mean_gap_s=3.0,
                mix=(("text", 1), ("vision", 1)),
                tokens=(800, 1_600),
                credits_micro=(2_000, 4_000),
            ),
        ),
    ),
    TenantScenario(
        account_id="globex",
        owner_email="ops@globex.example",
        plan="pro",
        timezone="Asia/Kuala_Lumpur",
        story="pro plan, auto-downgrade: at 80% of the daily text cap the AI moves to "
        "claude-haiku, then the cap is reached",
        settings={
            "language": "ms",
            "caps": {"text": {"daily_micro": 300_000, "monthly_micro": 10_000_000}},
            "auto_downgrade": True,
            "throttle": "off",
        },
        policies=(),
        bots=(
            BotTraffic(
                "concierge",
                "Concierge",
                conversations=5,
                mean_gap_s=2.0,
                credits_micro=(2_000, 4_000),
            ),
            BotTraffic(
                "catalog-bot",
                "Catalog",
                conversations=2,
                mean_gap_s=4.0,
                mix=(("vision", 2), ("documents", 1)),
                tokens=(600, 1_400),
            ),
        ),
    ),
    TenantScenario(
        account_id="initech",
        owner_email="admin@initech.example",
        plan="starter",
        timezone="America/New_York",
        story="a tight per-hour token policy: the busy bot is paused for 5 minutes and the "
        "owner is emailed",
        settings={"caps": {"text": {"monthly_micro": 50_000_000}}, "throttle": "smart"},
        policies=(_hourly_token_policy(30_000, 300),),
        bots=(
            BotTraffic("sales-bot", "Sales", conversations=4, mean_gap_s=2.0, tokens=(400, 1_200)),
            BotTraffic(
                "support-bot", "Support", conversations=1, mean_gap_s=6.0, tokens=(150, 400)
            ),
        ),
    ),
    TenantScenario(
        account_id="umbrella",
        owner_email="it@umbrella.example",
        plan="starter",
        timezone="UTC",
        story="a conversation stuck in a loop: smart throttle moves that bot to 60-second "
        "batching, one reply per conversation per minute",
        settings={"throttle": "smart"},
        policies=(),
        bots=(
            BotTraffic("agent-bot", "Agent", conversations=2, mean_gap_s=4.0, loop_conversations=1),
            BotTraffic("frontdesk", "Front desk", conversations=2, mean_gap_s=3.0),
        ),
    ),
)
"""The demo's tenants: one free, one pro with auto-downgrade, one with a tight per-hour
token policy, one with a looping conversation."""
