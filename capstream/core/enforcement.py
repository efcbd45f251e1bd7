"""Derive a bot's enforcement state from usage state and settings; version it on change.

The state is a pure function of: the bot's own block and loop throttle, the account's
block (``account_total`` policies), caps, downgrade and budget throttle, and the tenant's
settings. A new state (version + 1) is produced only when that content changes.

A bot has a state of its own only while it differs from its account's ``*`` state (its own
block or loop throttle in force); otherwise it **follows** the account: gateways answer it
from the ``*`` state (``ControlView.get``), so an account-wide decision (a cap, a block, the
downgrade, a budget-risk hold) is one record, not one per bot. When a bot starts following
(its own state ended, or its first derivation in this process), :func:`derive` returns a
state with the account's content and ``follows_account`` set: published as that state (its
block's or throttle's end, for readers that keep history) and then a tombstone of the bot's
key. Versions keep counting across it: the state stays on the bot, flagged.
"""

from __future__ import annotations

from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    THROTTLED_BATCHING_S,
    CapStatus,
    EnforcementState,
)
from capstream.core.settings_view import SettingsView
from capstream.core.usage import AccountUsage, BotUsage
from capstream.core.usage_base import UsageBase

Content = tuple[
    int | None, str | None, str, int | None, int, int | None, str | None,
    dict[str, CapStatus], str, str, str, str,
]  # fmt: skip


def _content(e: EnforcementState) -> Content:
    return (
        e.blocked_until_ms, e.block_policy_id, e.model, e.downgraded_until_ms,
        e.batching_interval_s, e.throttled_until_ms, e.throttle_reason, e.caps, e.plan,
        e.fallback_text_daily, e.fallback_text_monthly, e.premium_model,
    )  # fmt: skip


def derive(
    account: AccountUsage,
    bot: BotUsage | None,
    view: SettingsView,
    caps: dict[str, CapStatus],
    now: int,
) -> EnforcementState | None:
    """Recompute the enforcement state of ``bot`` (None: the account-wide ``*`` state).

    Stores it on the usage state and returns it if its content changed, else returns None.
    ``caps`` is the account's current caps (shared, read-only). A bot with nothing of its
    own in force follows the account (see the module's docstring).
    """
    usage: UsageBase = account
    prev = account.enforcement
    follows = False
    if bot is None:
        content = _compute(account, None, view, caps, now)
    else:
        usage = bot
        prev = bot.enforcement
        follows = not own_shows(account, bot, view, now)
        if follows:  # the account's content (computed only when it is published)
            if prev is not None and prev.follows_account:
                return None
            content = _compute(account, None, view, caps, now)
        else:
            content = _compute(account, bot, view, caps, now)
    # A bot starting or ending following is published whatever the content was.
    if prev is not None and not follows and not prev.follows_account and _content(prev) == content:
        return None
    version = prev.version + 1 if prev is not None else 1
    if version < account.version_floor:
        version = account.version_floor
    state = _state(account, bot, version, now, content)
    state.follows_account = follows
    usage.enforcement = state
    return state


def own_shows(account: AccountUsage, bot: BotUsage, view: SettingsView, now: int) -> bool:
    """Whether ``bot``'s own block or loop throttle shows in its state at ``now``, i.e. its
    content differs from its account's (as :func:`_compute` decides: a bot's block shows
    unless the account's lasts longer, a loop throttle unless the budget-risk hold lasts at
    least as long; strict throttling ignores loops). Tested against ``_compute`` itself."""
    b = bot.blocked_until_ms
    if b is not None and b > now:
        until = pause(bot, now)[0]
        if until is not None:
            a = account.blocked_until_ms
            if a is None or a <= now:
                return True
            a_until = pause(account, now)[0]
            if a_until is None or a_until <= until:
                return True
    loop = bot.loop_until_ms
    if loop is not None and loop > now and view.smart and not view.strict:
        risk = account.risk_until_ms
        if risk is None or risk <= now or loop > risk:
            return True
    return False


def raise_version(account: AccountUsage, usage: UsageBase) -> EnforcementState | None:
    """The enforcement state of ``usage`` again, at the account's version floor if its
    version is below it (the same decision, a version no earlier owner published), or None."""
    prev = usage.enforcement
    if prev is None or prev.version >= account.version_floor:
        return None
    bot = usage if isinstance(usage, BotUsage) else None
    state = _state(account, bot, account.version_floor, prev.updated_at_ms, _content(prev))
    state.follows_account = prev.follows_account
    usage.enforcement = state
    return state


def in_force(
    account: AccountUsage, bot: BotUsage | None, view: SettingsView, at: int
) -> EnforcementState:
    """What holds for ``bot`` (None: a bot with no state yet) at instant ``at`` if no other
    event arrives, without changing anything: blocks, caps, the downgrade and throttles
    whose end is after ``at``. Meant for ``at`` at or after the state's last evaluation
    (what ended before it is no longer in the state). Its version is the last one emitted."""
    caps = {c: s for c, s in account.caps.items() if s.resumes_at_ms > at}
    content = _compute(account, bot, view, caps, at)
    usage: UsageBase = bot if bot is not None else account
    prev = usage.enforcement
    return _state(account, bot, prev.version if prev is not None else 0, at, content)


def _state(
    account: AccountUsage, bot: BotUsage | None, version: int, now: int, content: Content
) -> EnforcementState:
    # Unpacked by name, not with *content: compiled, a call with a star is a generic one.
    (blocked, block_pid, model, downgraded, batching, throttled, reason, caps, plan,
     fallback_daily, fallback_monthly, premium) = content  # fmt: skip
    return EnforcementState(
        account.account_id, bot.bot_id if bot is not None else ACCOUNT_WIDE_BOT, version, now,
        blocked, block_pid, model, downgraded, batching, throttled, reason, caps, plan,
        fallback_daily, fallback_monthly, premium,
    )  # fmt: skip


def pause(usage: UsageBase, now: int) -> tuple[int | None, str | None]:
    """Until when ``usage`` pauses its bot(s) after ``now``, and the policy holding it
    longest: the latest block not lifted by a person (see ``core.resume``)."""
    lifted = usage.lifted
    if not lifted:  # the common case
        return usage.blocked_until_ms, usage.block_policy_id
    until: int | None = None
    pid: str | None = None
    for policy_id, end in usage.blocks.items():
        if end > now and lifted.get(policy_id) != end and (until is None or end > until):
            until, pid = end, policy_id
    return until, pid


def _compute(
    account: AccountUsage,
    bot: BotUsage | None,
    view: SettingsView,
    caps: dict[str, CapStatus],
    now: int,
) -> Content:
    settings = view.settings
    blocked, block_pid = None, None
    if bot is not None and bot.blocked_until_ms is not None and bot.blocked_until_ms > now:
        blocked, block_pid = pause(bot, now)
    if account.blocked_until_ms is not None and account.blocked_until_ms > now:
        until, pid = pause(account, now)
        if until is not None and (blocked is None or until > blocked):
            blocked, block_pid = until, pid

    downgraded = account.downgraded_until_ms
    if downgraded is not None and downgraded <= now:
        downgraded = None
    model = settings.downgrade_model if downgraded is not None else settings.premium_model

    batching = view.batching_s
    throttled, reason = None, None
    if view.strict:
        reason = "strict"
    elif view.smart:
        risk = account.risk_until_ms
        if risk is not None and risk > now:
            throttled, reason = risk, "budget_at_risk"
        loop = bot.loop_until_ms if bot is not None else None
        if loop is not None and loop > now and (throttled is None or loop > throttled):
            throttled, reason = loop, "loop_suspected"
        if throttled is not None:
            batching = THROTTLED_BATCHING_S

    return (
        blocked, block_pid, model, downgraded, batching, throttled, reason, caps,
        settings.plan, view.fallback_daily, view.fallback_monthly, settings.premium_model,
    )  # fmt: skip
