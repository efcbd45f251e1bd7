"""Usage policy evaluation: policy sets, the windows they watch, alerts and blocks (policies
are compiled in :mod:`capstream.core.series`).

Rules: a policy fires when its rolling total (a calendar policy: its period's total, from
the usage's calendar totals, no ring) is at or above its threshold, checked on every
event that adds to its metric (and on re-evaluation), at the event's own time ``at`` (the
window ending there; see :meth:`Ring.add` for a late event). Its alert goes out when none
did for it (and that bot) within the last full window: the next may go out only once
``at >= last alert + window``, and the notification id is derived from the account, the
policy, the bot (``*`` for ``account_total``) and ``at``, so a replay of the same events
yields the same id whatever the clock. A calendar policy alerts once per local day, week
or month (per policy and bot): again only once its last alert is before the current period's
start. Its block pauses the bot (``bot``,
``account_each_bot``) or every bot of the account (``account_total``) from ``at`` for its
own duration: each policy keeps its own block (``UsageBase.blocks``), the bot is paused until
the latest ends (``blocked_until_ms``, named by ``block_policy_id``), a running block is not
extended by its own policy, and blocks end by themselves.

Soft thresholds: each warning level of a policy (``Policy.warn_percents``, default 50, 80
and 90%) is compiled as one more alert-only entry of the same watched window, with the
level's lower threshold (so the hot path is the one of alerts: the window's lowest
threshold, the quiet mechanism). Its sent time is kept in ``UsageBase.alerted`` under
``warn_key(policy, percent)``; it goes out once per full window like an alert. When one
event crosses several levels (or the policy's own alerting threshold) only the highest
sends: the lower ones are recorded as sent without a notification.
"""

from __future__ import annotations

from collections.abc import Iterable

from capstream.core.errors import PolicyError
from capstream.core.models.decisions import Notification
from capstream.core.models.policy import Policy
from capstream.core.models.tenant import TenantSettings
from capstream.core.models.vocabulary import NEVER, PolicyScope
from capstream.core.notifications import policy_alert, policy_warning
from capstream.core.scopes import ScopedPolicy
from capstream.core.series import (
    N_CATEGORIES,
    SERIES_BY_CATEGORY,
    CompiledPolicy,
    WatchEntry,
    compile_policy,
)
from capstream.core.usage_base import CAP_WARN, UsageBase
from capstream.core.windows import Ring, bucket_width_ms


class PolicySet:
    """The enabled policies of one account, indexed by scope (each policy followed by its
    warning levels). Immutable; build a new one on change (evaluate() rebuilds its windows
    when it is handed a different set).

    ``resumes``: per bot, the instant a person last resumed it (lifts the blocks that
    started before; see :mod:`capstream.core.resume`).

    Per-attribute policies (``Policy.per``) are not among ``by_bot``, ``each_bot`` and
    ``total`` (they watch no window of the bot or account): ``scoped_by_bot`` holds, per bot
    with its own, every one that applies to it, ``scoped_common`` those that apply to every
    other bot (the account's per-bot and account-total ones); see :mod:`capstream.core.scopes`.
    """

    __slots__ = (
        "account_id", "by_bot", "each_bot", "policies", "resumes", "scoped", "scoped_by_bot",
        "scoped_common", "total",
    )  # fmt: skip

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
        scoped_own: dict[str, list[ScopedPolicy]] = {}
        scoped_common: list[ScopedPolicy] = []
        for p in self.policies:
            if not p.enabled:
                continue
            cps = compile_policy(p)
            if p.per is not None:  # its value's window, alert and block (no warning levels)
                sp = ScopedPolicy(cps[0])
                if p.scope == PolicyScope.BOT:
                    assert p.bot_id is not None
                    scoped_own.setdefault(p.bot_id, []).append(sp)
                else:
                    scoped_common.append(sp)
                continue
            if p.scope == PolicyScope.BOT:
                assert p.bot_id is not None
                by_bot.setdefault(p.bot_id, []).extend(cps)
            elif p.scope == PolicyScope.ACCOUNT_EACH_BOT:
                each_bot.extend(cps)
            else:
                total.extend(cps)
        self.by_bot = {b: tuple(cps) for b, cps in by_bot.items()}
        self.each_bot = tuple(each_bot)
        self.total = tuple(total)
        self.scoped_common = tuple(scoped_common)
        self.scoped_by_bot = {b: (*sps, *scoped_common) for b, sps in scoped_own.items()}
        self.scoped: tuple[ScopedPolicy, ...] = (
            *(sp for sps in scoped_own.values() for sp in sps), *scoped_common,
        )  # fmt: skip

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
    now: int,
    extra: Iterable[tuple[int, int]] = (),
) -> None:
    """Give ``usage`` the rings ``policies`` (and ``extra`` (series, window_ms) pairs) need.

    Rings still needed keep their counts; a new one is seeded from a ring of the same series
    this usage already holds (see :func:`seed_source`), else starts empty; others are
    dropped. Alert times read from an old state format (fixed-window numbers) become the
    start of that fixed window.
    """
    groups: dict[tuple[int, int], list[CompiledPolicy]] = {}
    for cp in policies:  # a calendar policy's key: (series, -period); it has no ring
        key = (cp.series, -cp.period if cp.period else cp.window_ms)
        groups.setdefault(key, []).append(cp)
    for key in extra:
        groups.setdefault(key, [])
    old = usage.rings
    rings: dict[tuple[int, int], Ring] = {}
    for key in groups:
        if key[1] < 0:
            continue
        ring = old.get(key)
        if ring is None:
            ring = Ring(key[1])
            src = seed_source(key[0], key[1], [(k[0], k[1], r.head) for k, r in old.items()])
            if src is not None:
                ring.seed_from(old[(key[0], src)], now)
        rings[key] = ring
    usage.rings = rings
    watched = usage.watched = [
        WatchEntry(key[0], rings.get(key), min((cp.threshold for cp in cps), default=NEVER),
                   tuple(cps), max(0, -key[1]))
        for key, cps in groups.items()
    ]  # fmt: skip
    usage.watch = [
        [e for e in watched if e.series < SERIES_BY_CATEGORY or e.series == SERIES_BY_CATEGORY + ci]
        for ci in range(N_CATEGORIES)
    ]
    usage.quiet = {}
    usage.quiet_from_ms, usage.quiet_until_ms = -NEVER, NEVER
    windows = {cp.policy_id: cp.window_ms for cp in policies}
    legacy = usage.legacy_alerted
    if legacy:
        for pid, epoch in legacy.items():
            if pid in windows:
                usage.alerted[pid] = epoch * windows[pid]
        usage.legacy_alerted = {}
    usage.alerted = {
        pid: t for pid, t in usage.alerted.items() if pid in windows or pid.startswith(CAP_WARN)
    }


def seed_source(series: int, window_ms: int, held: Iterable[tuple[int, int, int]]) -> int | None:
    """The window (ms) of the held ring a new ring of ``(series, window_ms)`` is seeded from
    (see :meth:`Ring.seed_from`), or None: it starts counting now.

    ``held``: (series, window ms, head) of the rings a usage state holds (head -1: never
    counted anything). Only a ring of the same series can seed. Preferred: one spanning the
    whole new window, the finest first (a width dividing the new ring's copies exactly, a
    wider one may over-count one of its buckets at the window's oldest edge, so none wider
    than half the new window is used); else the one spanning the most (the older part of the
    window stays uncounted).
    """
    span_needed = window_ms + bucket_width_ms(window_ms)
    best: int | None = None
    best_key = (0, 0)
    for s, w, head in held:
        if s != series or head < 0:
            continue
        width = bucket_width_ms(w)
        if 2 * width > window_ms:
            continue  # buckets too coarse for this window
        span = w + width
        key = (1, -width) if span >= span_needed else (0, span)
        if best is None or key > best_key:
            best, best_key = w, key
    return best


def _arm(usage: UsageBase) -> None:
    """Set each watched entry's ``low``: the lowest threshold of its policies not quiet
    (NEVER when all are). In place: ``watch`` holds the same entries, built once by
    :func:`build_watch` (rebuilding the lists and entries on every change of the quiet
    policies cost more than the checks they saved, on drafts that block every hour)."""
    quiet = usage.quiet
    for e in usage.watched:
        if not quiet:
            e.low = e.low_all
            continue
        low = NEVER
        for cp in e.cps:
            if cp.threshold < low and cp.policy_id not in quiet:
                low = cp.threshold
        e.low = low


def mute(usage: UsageBase, cps: tuple[CompiledPolicy, ...], total: int, at: int, now: int) -> int:
    """After ``cps`` were checked at ``total`` for an event at ``at``: make quiet those that
    can do nothing more for a while, so the events that follow skip them; returns until when
    (the earliest) those stay quiet, ``NEVER`` if none became quiet.

    A policy can do nothing more while its own block runs (its entry in ``blocks`` is
    cleared only once the bot's pause has passed) and its last alert is less than a window
    old: ``fire`` is a no-op for an event at any time before then, whatever the total (and
    events are never later than ``now``).
    """
    until = NEVER
    quiet = usage.quiet
    for cp in cps:
        if total < cp.threshold or cp.policy_id in quiet:
            continue
        q = quiet_until(cp, usage, at)
        if now < q < NEVER:
            quiet[cp.policy_id] = q
            if q < until:
                until = q
    if until < NEVER:
        _arm(usage)
        if until < usage.quiet_until_ms:
            usage.quiet_until_ms = until
        if now > usage.quiet_from_ms:
            usage.quiet_from_ms = now
    return until


def unmute(usage: UsageBase) -> None:
    """Check every policy again on the next event."""
    if usage.quiet:
        usage.quiet = {}
        usage.quiet_from_ms, usage.quiet_until_ms = -NEVER, NEVER
        _arm(usage)


def quiet_until(cp: CompiledPolicy, usage: UsageBase, at: int) -> int:
    """Until when ``fire(cp, usage, ...)`` is a no-op for an event at any time before it
    (``at`` or before: not now). Per policy: one dict lookup for its block, one for its alert."""
    until = NEVER
    if cp.block_ms:
        blocked = usage.blocks.get(cp.policy_id)
        if blocked is None or blocked <= at:
            return at
        until = blocked
    if cp.alerts:
        last = usage.alerted.get(cp.policy_id)
        if last is None:
            return at
        if cp.period:  # once per calendar period: quiet until the next one starts
            start, nxt = usage.period_bounds(cp.period)
            if last < start:
                return at
        else:
            nxt = last + cp.window_ms
            if nxt <= at:
                return at
        if nxt < until:
            until = nxt
    return until


def fire(
    cp: CompiledPolicy,
    usage: UsageBase,
    bot_id: str,
    total: int,
    at: int,
    now: int,
    settings: TenantSettings | None,
    notes: list[Notification] | None,
) -> bool:
    """Apply the actions of a policy crossed at ``at`` (``<= now``) to ``usage``; True if a
    new block started. ``notes`` None: alerts are not sent (nor recorded as sent)."""
    blocked = False
    pid = cp.policy_id
    if cp.block_ms:
        blocks = usage.blocks
        running = blocks.get(pid)
        until = at + cp.block_ms
        if (running is None or running <= at) and until > now:
            blocks[pid] = until
            held = usage.blocked_until_ms
            if held is None or held <= now or until > held:
                usage.blocked_until_ms = until
                usage.block_policy_id = pid
            blocked = True
    if cp.alerts and notes is not None:
        last = usage.alerted.get(pid)
        start = usage.period_bounds(cp.period)[0] if cp.period else -1
        if last is None or (last < start if cp.period else at >= last + cp.window_ms):
            usage.alerted[pid] = at
            if cp.warn_percent:
                if total < cp.above:
                    notes.append(
                        policy_warning(
                            cp.policy, cp.warn_percent, cp.threshold, bot_id, total, at, now,
                            settings, start,
                        )
                    )  # fmt: skip
                return blocked
            paused = usage.blocked_until_ms if cp.block_ms else None
            if paused is not None and paused <= now:
                paused = None
            notes.append(policy_alert(cp.policy, bot_id, total, at, now, settings, paused, start))
    return blocked


def check_all(
    usage: UsageBase,
    bot_id: str,
    now: int,
    settings: TenantSettings | None,
    notes: list[Notification] | None,
) -> bool:
    """Check every watched policy against the totals at ``now`` (no event); True if a block
    started. ``notes`` None: blocks only (alerts wait for an event that crosses)."""
    blocked = False
    for e in usage.watched:
        if not e.cps:
            continue
        ring = e.ring
        if ring is None:
            total = usage.calendar_total(e.series, e.period, now)
        else:
            total = ring.total_at(now)
        for cp in e.cps:
            if total >= cp.threshold and fire(cp, usage, bot_id, total, now, now, settings, notes):
                blocked = True
    return blocked


def end_blocks(usage: UsageBase, now: int) -> bool:
    """End the pause of ``usage`` if it has passed (every policy's block with it); True if
    it ended."""
    held = usage.blocked_until_ms
    if held is not None and held <= now:
        usage.blocked_until_ms = usage.block_policy_id = None
        usage.blocks = {}
        return True
    return False
