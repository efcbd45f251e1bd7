"""Usage policy evaluation: compiled policy sets, the windows they watch, alerts and blocks.

Rules: a policy fires when its rolling total is at or above its threshold, checked on every
event that adds to its metric (and on re-evaluation). Its alert is sent at most once per
fixed window (``now // window``); the notification id is derived from the policy, the bot
(``*`` for ``account_total``) and the window start, so a replay yields the same id. Its block
pauses the bot (``bot``, ``account_each_bot``) or every bot of the account
(``account_total``) until ``now + duration``; a running block is not extended, and the
block ends by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from capstream.core.errors import PolicyError
from capstream.core.models import (
    NEVER,
    Notification,
    Policy,
    PolicyScope,
    TenantSettings,
)
from capstream.core.notifications import policy_alert
from capstream.core.usage import (
    N_CATEGORIES,
    SERIES_BY_CATEGORY,
    UsageBase,
    WatchEntry,
    series_of,
)
from capstream.core.windows import Ring


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy reduced to what the hot path needs."""

    policy: Policy
    policy_id: str
    series: int
    window_ms: int
    threshold: int
    block_ms: int
    alerts: bool


class PolicySet:
    """The enabled policies of one account, indexed by scope. Immutable; build a new one on
    change (evaluate() rebuilds its windows when it is handed a different set).

    ``resumes``: per bot, the instant a person last resumed it (lifts the blocks that
    started before; see :mod:`capstream.core.resume`).
    """

    __slots__ = ("account_id", "by_bot", "each_bot", "policies", "resumes", "total")

    def __init__(self, policies: Iterable[Policy], resumes: dict[str, int] | None = None) -> None:
        self.resumes: dict[str, int] = dict(resumes) if resumes else {}
        self.policies: tuple[Policy, ...] = tuple(policies)
        accounts = {p.account_id for p in self.policies}
        if len(accounts) > 1:
            raise PolicyError(f"a policy set holds one account's policies, got {sorted(accounts)}")
        self.account_id: str | None = accounts.pop() if accounts else None
        by_bot: dict[str, list[CompiledPolicy]] = {}
        each_bot: list[CompiledPolicy] = []
        total: list[CompiledPolicy] = []
        for p in self.policies:
            if not p.enabled:
                continue
            cp = CompiledPolicy(
                policy=p,
                policy_id=p.policy_id,
                series=series_of(p.metric, p.category),
                window_ms=p.window_seconds * 1000,
                threshold=p.threshold,
                block_ms=p.block.duration_seconds * 1000 if p.block is not None else 0,
                alerts=p.alert is not None,
            )
            if p.scope == PolicyScope.BOT:
                assert p.bot_id is not None
                by_bot.setdefault(p.bot_id, []).append(cp)
            elif p.scope == PolicyScope.ACCOUNT_EACH_BOT:
                each_bot.append(cp)
            else:
                total.append(cp)
        self.by_bot = {b: tuple(cps) for b, cps in by_bot.items()}
        self.each_bot = tuple(each_bot)
        self.total = tuple(total)

    def for_bot(self, bot_id: str) -> tuple[CompiledPolicy, ...]:
        """A bot's own policies followed by the account's per-bot policies."""
        return self.by_bot.get(bot_id, ()) + self.each_bot

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicySet):
            return NotImplemented
        return self.policies == other.policies and self.resumes == other.resumes

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.policies)


def build_watch(
    usage: UsageBase,
    policies: tuple[CompiledPolicy, ...],
    extra: Iterable[tuple[int, int]] = (),
) -> None:
    """Give ``usage`` the rings ``policies`` (and ``extra`` (series, window_ms) pairs) need.

    Rings still needed keep their counts; new ones start empty; others are dropped.
    """
    groups: dict[tuple[int, int], list[CompiledPolicy]] = {}
    for cp in policies:
        groups.setdefault((cp.series, cp.window_ms), []).append(cp)
    for key in extra:
        groups.setdefault(key, [])
    old = usage.rings
    rings = {key: old.get(key) or Ring(key[1]) for key in groups}
    usage.rings = rings
    usage.watched = [
        WatchEntry(key[0], rings[key], min((cp.threshold for cp in cps), default=NEVER), tuple(cps))
        for key, cps in groups.items()
    ]
    usage.quiet = {}
    _arm(usage)
    ids = {cp.policy_id for cp in policies}
    usage.alerted = {pid: e for pid, e in usage.alerted.items() if pid in ids}


def _arm(usage: UsageBase) -> None:
    """Build ``usage.watch`` from ``usage.watched``, leaving quiet policies out of the
    lowest thresholds (an entry whose policies are all quiet has NEVER)."""
    quiet = usage.quiet
    watched = usage.watched
    if quiet:
        watched = [
            WatchEntry(e.series, e.ring, min((cp.threshold for cp in e.cps
                                              if cp.policy_id not in quiet), default=NEVER),
                       e.cps)
            for e in watched
        ]  # fmt: skip
    usage.watch = [
        [e for e in watched if e.series < SERIES_BY_CATEGORY or e.series == SERIES_BY_CATEGORY + ci]
        for ci in range(N_CATEGORIES)
    ]


def mute(usage: UsageBase, cps: tuple[CompiledPolicy, ...], total: int, now: int) -> int:
    """After ``cps`` were checked at ``total``: make quiet those that can do nothing more
    for a while, so the events that follow skip them; returns until when (the earliest)
    those stay quiet, ``NEVER`` if none became quiet.

    A policy can do nothing more while its block runs (``blocked_until_ms`` is cleared only
    once it has passed) and its alert went out for the current fixed window: ``fire`` is
    a no-op for any ``now`` from now until then, whatever the total.
    """
    until = NEVER
    for cp in cps:
        if total < cp.threshold or cp.policy_id in usage.quiet:
            continue
        q = quiet_until(cp, usage, now)
        if now < q < NEVER:
            usage.quiet[cp.policy_id] = q
            until = min(until, q)
    if until < NEVER:
        _arm(usage)
    return until


def unmute(usage: UsageBase) -> None:
    """Check every policy again on the next event."""
    if usage.quiet:
        usage.quiet = {}
        _arm(usage)


def quiet_until(cp: CompiledPolicy, usage: UsageBase, now: int) -> int:
    """Until when ``fire(cp, usage, ...)`` is a no-op (``now`` or before: not now)."""
    until = NEVER
    if cp.block_ms:
        blocked = usage.blocked_until_ms
        if blocked is None or blocked <= now:
            return now
        until = blocked
    if cp.alerts:
        epoch = now // cp.window_ms
        if usage.alerted.get(cp.policy_id) != epoch:
            return now
        until = min(until, (epoch + 1) * cp.window_ms)
    return until


def fire(
    cp: CompiledPolicy,
    usage: UsageBase,
    bot_id: str,
    total: int,
    now: int,
    settings: TenantSettings | None,
    notes: list[Notification],
) -> bool:
    """Apply a crossed policy's actions to ``usage``; True if a new block started."""
    blocked = False
    if cp.block_ms:
        until = usage.blocked_until_ms
        if until is None or until <= now:
            usage.blocked_until_ms = now + cp.block_ms
            usage.block_policy_id = cp.policy_id
            blocked = True
    if cp.alerts:
        epoch = now // cp.window_ms
        if usage.alerted.get(cp.policy_id) != epoch:
            usage.alerted[cp.policy_id] = epoch
            until = usage.blocked_until_ms if cp.block_ms else None
            notes.append(
                policy_alert(cp.policy, bot_id, total, epoch * cp.window_ms, now, settings, until)
            )
    return blocked


def check_all(
    usage: UsageBase,
    bot_id: str,
    now: int,
    settings: TenantSettings | None,
    notes: list[Notification],
) -> bool:
    """Check every watched policy against current totals (no event); True if a block started."""
    blocked = False
    for e in usage.watched:
        if not e.cps:
            continue
        total = e.ring.total_at(now)
        for cp in e.cps:
            if total >= cp.threshold and fire(cp, usage, bot_id, total, now, settings, notes):
                blocked = True
    return blocked
