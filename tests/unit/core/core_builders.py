"""Small builders shared by the core tests: events, policies, settings, a harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from capstream.core import (
    AccountState,
    AlertAction,
    BlockAction,
    CategoryCaps,
    Effects,
    EnforcementState,
    Notification,
    Policy,
    PolicySet,
    TenantSettings,
    UsageEvent,
    evaluate,
    expire,
)

ACC = "acc-1"
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def ms(tz: str, *args: int) -> int:
    """Epoch ms of a local wall time in ``tz`` (fold 0)."""
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


T0 = ms("UTC", 2026, 11, 18, 12, 0)


def ev(
    n: int,
    at: int,
    *,
    bot: str = "bot-1",
    conv: str = "conv-1",
    category: str = "text",
    tokens: int = 100,
    messages: int = 1,
    credits: int = 0,
    started: bool = False,
    event_id: str | None = None,
) -> UsageEvent:
    return UsageEvent(
        event_id=event_id or f"ev-{n}",
        account_id=ACC,
        bot_id=bot,
        conversation_id=conv,
        category=category,
        model="claude-sonnet-4-6",
        tokens_in=tokens,
        tokens_out=0,
        messages=messages,
        conversation_started=started,
        credits_micro=credits,
        occurred_at_ms=at,
    )


def policy(
    pid: str = "p1",
    *,
    metric: str = "messages",
    threshold: int = 5,
    window: int = 3600,
    scope: str = "account_each_bot",
    bot_id: str | None = None,
    alert: bool = True,
    recipients: tuple[str, ...] = (),
    block_s: int | None = None,
    category: str | None = None,
    enabled: bool = True,
    warn: tuple[int, ...] | None = (),
    period: str | None = None,
) -> Policy:
    """A policy; warning levels off unless ``warn`` says (``None``: the default levels)."""
    return Policy(
        policy_id=pid,
        account_id=ACC,
        name=f"policy {pid}",
        metric=metric,
        threshold=threshold,
        window_seconds=0 if period else window,
        scope=scope,
        bot_id=bot_id,
        alert=AlertAction(recipients) if alert else None,
        block=BlockAction(block_s) if block_s else None,
        enabled=enabled,
        warn_percents=warn,
        category=category,
        period=period,
    )


def settings(**kw: object) -> TenantSettings:
    base: dict[str, object] = {"owner_email": "owner@example.com", "throttle": "off"}
    base.update(kw)
    return TenantSettings(ACC, **base)  # type: ignore[arg-type]


def caps(**per_category: tuple[object, ...]) -> dict[str, CategoryCaps]:
    """Per category (daily, monthly[, daily warning levels, monthly warning levels])."""
    return {c: CategoryCaps(*v) for c, v in per_category.items()}  # type: ignore[arg-type]


@dataclass
class Harness:
    """An account state driven like a processor would: one partition, growing offsets."""

    policies: list[Policy] = field(default_factory=list)
    tenant: TenantSettings = field(default_factory=settings)
    state: AccountState = field(default_factory=lambda: AccountState(ACC))
    offset: int = 0
    log: list[Effects] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.policy_set = PolicySet(self.policies)

    def send(self, event: UsageEvent, now: int | None = None) -> Effects:
        now = event.occurred_at_ms if now is None else now
        _, eff = evaluate(
            self.state, event, self.policy_set, self.tenant, now, partition=0, offset=self.offset
        )
        self.offset += 1
        self.log.append(eff)
        return eff

    def tick(self, now: int) -> Effects:
        _, eff = expire(self.state, now)
        self.log.append(eff)
        return eff

    def enforcement(self, bot: str = "bot-1") -> EnforcementState:
        e = self.state.enforcement(bot)
        assert e is not None
        return e

    def notes(self, kind: str | None = None) -> list[Notification]:
        return [n for eff in self.log for n in eff.notifications if kind in (None, n.kind)]
