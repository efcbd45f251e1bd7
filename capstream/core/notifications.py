"""Notifications with deterministic ids: policy alerts and warnings, caps reached and their
warnings, top-up requests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final

from capstream.core.errors import PlanError
from capstream.core.messages import panel_cta
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CapPeriod,
    Notification,
    Plan,
    Policy,
    TenantSettings,
)

_sha256: Final = hashlib.sha256


def notification_id(*parts: str | int) -> str:
    """A stable id from ``parts`` (the notifier sends each id once)."""
    text = "|".join([p if isinstance(p, str) else str(p) for p in parts])
    return _sha256(text.encode()).hexdigest()[:32]


def owner_recipients(settings: TenantSettings | None) -> tuple[str, ...]:
    """The account owner as a recipient list; empty when unknown (the notifier resolves it)."""
    return (settings.owner_email,) if settings is not None and settings.owner_email else ()


_DAY_MS: Final = 86_400_000
_ISO_DATES: Final[dict[int, str]] = {}
"""Per UTC day number, its ``YYYY-MM-DD`` (alerts of a replay fall on few days)."""


def _iso(ms: int) -> str:
    """``ms`` as ``2026-11-18 12:00 UTC``: what ``strftime("%Y-%m-%d %H:%M UTC")`` gives,
    the date from a cache per day and the time from the remainder (strftime was half the
    cost of building an alert, and a ``datetime`` per alert a twentieth of a replay)."""
    day, rest = divmod(ms, _DAY_MS)
    date = _ISO_DATES.get(day)
    if date is None:
        if len(_ISO_DATES) >= 64:
            _ISO_DATES.clear()
        d = datetime.fromtimestamp(day * 86_400, UTC)
        date = _ISO_DATES[day] = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    minutes = rest // 60_000
    return f"{date} {_TWO_DIGITS[minutes // 60]}:{_TWO_DIGITS[minutes % 60]} UTC"


_TWO_DIGITS: Final = [f"{i:02d}" for i in range(60)]
"""``00`` to ``59`` (compiled, a format spec is a call to ``format``; an index is not)."""


def _duration(seconds: int) -> str:
    said = _DURATIONS.get(seconds)
    if said is None:
        said = f"{seconds} seconds"
        for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
            if seconds % size == 0:
                n = seconds // size
                said = f"{n} {unit}" + ("s" if n != 1 else "")
                break
        if len(_DURATIONS) < 256:  # a tenant's few windows and block lengths
            _DURATIONS[seconds] = said
    return said


_DURATIONS: Final[dict[int, str]] = {}


def _span(policy: Policy) -> tuple[str, str]:
    """How a policy's counting span reads: ("in the last 1 hour", "1 hour") or, for a
    calendar policy, ("this week (local)", "week")."""
    if policy.period is not None:
        return f"this {policy.period} (tenant's local calendar)", f"calendar {policy.period}"
    span = _duration(policy.window_seconds)
    return f"in the last {span}", span


def policy_alert(
    policy: Policy,
    bot_id: str,
    total: int,
    at: int,
    now: int,
    settings: TenantSettings | None,
    blocked_until_ms: int | None,
    period_start_ms: int = -1,
    value: str | None = None,
) -> Notification:
    """The email for a policy crossed at ``at`` (the crossing event's time);
    ``period_start_ms``: a calendar policy's current period start (its window's start);
    ``value``: a per-attribute policy's value that crossed (in the id, the words and the
    ``attribute``/``attribute_value`` fields; its block holds for that value only).

    One id per (account, policy, bot, ``at``): a replay of the same events gives the same id
    whatever the clock. ``previous_ids`` holds the id the release before gave the alert of
    that fixed window (policy, bot, ``at // window``; no account), so a notifier whose
    sent-log holds it sends this one no more.
    """
    assert policy.alert is not None
    window_ms = policy.window_seconds * 1000
    who = "all bots of the account" if bot_id == ACCOUNT_WIDE_BOT else f"bot {bot_id}"
    attr = policy.per
    if attr is not None and value is not None:
        who = f"{attr} {value!r} ({who})"
    metric = policy.metric if policy.category is None else f"{policy.category} {policy.metric}"
    within, per = _span(policy)
    lines = [
        f"Usage policy '{policy.name or policy.policy_id}' was crossed by {who}.",
        f"Bot: {'* (every bot of the account)' if bot_id == ACCOUNT_WIDE_BOT else bot_id}",
    ]
    if attr is not None and value is not None:
        lines.append(f"{attr}: {value} (counted separately for each {attr})")
    lines.append(f"{metric}: {total} {within} up to {_iso(at)} (threshold {policy.threshold}).")
    if blocked_until_ms is not None and attr is not None:
        lines.append(
            f"{attr} {value} is blocked until {_iso(blocked_until_ms)}; the bot is not paused. "
            f"Gateways refuse its calls until then when given the call's {attr} "
            f"(gate(..., attributes={{'{attr}': ...}}))."
        )
    elif blocked_until_ms is not None:
        lines.append(f"The bot is paused until {_iso(blocked_until_ms)}; it resumes by itself.")
    else:
        lines.append("No block is configured: this is a heads-up only.")
    lines.append(f"You get at most one alert per {per} for it.")
    return Notification(
        notification_id=(
            notification_id("policy", policy.account_id, policy.policy_id, bot_id, at)
            if value is None
            else notification_id("policy", policy.account_id, policy.policy_id, bot_id, value, at)
        ),
        account_id=policy.account_id,
        kind="policy_alert",
        policy_id=policy.policy_id,
        recipients=tuple(policy.alert.recipients) or owner_recipients(settings),
        subject=f"Usage policy '{policy.name or policy.policy_id}' triggered ({who})",
        body="\n".join(lines),
        created_at_ms=now,
        window_start_ms=at - window_ms if window_ms else period_start_ms,
        bot_id=bot_id,
        previous_ids=(
            (notification_id("policy", policy.policy_id, bot_id, at // window_ms * window_ms),)
            if window_ms and value is None
            else ()
        ),
        attribute=None if value is None else attr,
        attribute_value=value,
    )


def policy_warning(
    policy: Policy,
    percent: int,
    level: int,
    bot_id: str,
    total: int,
    at: int,
    now: int,
    settings: TenantSettings | None,
    period_start_ms: int = -1,
) -> Notification:
    """The warning that a policy's window total reached ``percent``% (``level``) of its
    threshold at ``at`` (the crossing event's time).

    One id per (account, policy, level, bot, ``at``), like the alert's: a replay of the same
    events gives the same id whatever the clock. Sent to the alert's recipients, else the
    account owner.
    """
    who = "all bots of the account" if bot_id == ACCOUNT_WIDE_BOT else f"bot {bot_id}"
    name = policy.name or policy.policy_id
    metric = policy.metric if policy.category is None else f"{policy.category} {policy.metric}"
    actions = []
    if policy.block is not None:
        actions.append(f"pauses the bot for {_duration(policy.block.duration_seconds)}")
    if policy.alert is not None:
        actions.append("sends an alert")
    within, per = _span(policy)
    lines = [
        f"Usage policy '{name}' is at {percent}% of its threshold for {who}.",
        f"Bot: {'* (every bot of the account)' if bot_id == ACCOUNT_WIDE_BOT else bot_id}",
        f"{metric}: {total} {within} up to {_iso(at)} "
        f"(warning at {level}, threshold {policy.threshold}).",
        f"At the threshold the policy {' and '.join(actions)}.",
        f"You get at most one {percent}% warning per {per}.",
    ]
    recipients = policy.alert.recipients if policy.alert is not None else ()
    return Notification(
        notification_id=notification_id(
            "policy_warning", policy.account_id, policy.policy_id, percent, bot_id, at
        ),
        account_id=policy.account_id,
        kind="policy_warning",
        policy_id=policy.policy_id,
        recipients=tuple(recipients) or owner_recipients(settings),
        subject=f"Usage policy '{name}' at {percent}% ({who})",
        body="\n".join(lines),
        created_at_ms=now,
        window_start_ms=at - policy.window_seconds * 1000
        if policy.period is None
        else period_start_ms,
        bot_id=bot_id,
    )


def cap_warning(
    settings: TenantSettings, category: str, period: str, period_key: str, percent: int,
    total: int, cap: int, resets_at_ms: int, now: int,
) -> Notification:  # fmt: skip
    """Tell the owner a credit cap is ``percent``% used; one id per (account, category,
    period, period key, percent)."""
    span = "today" if period == CapPeriod.DAILY else "this month"
    body = (
        f"{category.title()} AI credits {span} ({period_key}) reached {percent}% of the "
        f"{period} cap: {total / 1e6:g} of {cap / 1e6:g} credits. At the cap, {category} AI "
        f"pauses until the period resets ({_iso(resets_at_ms)})."
    )
    return Notification(
        notification_id=notification_id(
            "cap_warning", settings.account_id, category, period, period_key, percent
        ),
        account_id=settings.account_id,
        kind="cap_warning",
        policy_id=None,
        recipients=owner_recipients(settings),
        subject=f"{period.title()} {category} AI credits at {percent}% of the cap",
        body=body,
        created_at_ms=now,
        window_start_ms=None,
    )


def downgrade_changed(
    settings: TenantSettings, started: bool, until_ms: int, at: int, now: int
) -> Notification:
    """The auto-downgrade of the local day ending at ``until_ms`` started or ended; one id
    per (account, kind, that day's end)."""
    kind = "downgrade_started" if started else "downgrade_ended"
    premium, cheap = settings.premium_model, settings.downgrade_model
    if started:
        subject = f"AI replies switched to {cheap} for the rest of the day"
        body = (
            f"Text AI credits reached 80% of today's cap at {_iso(at)}: {cheap} replaces "
            f"{premium} until {_iso(until_ms)} (local midnight), then {premium} is back."
        )
    else:
        subject = f"AI replies back on {premium}"
        body = f"The auto-downgrade to {cheap} ended at {_iso(at)}: {premium} answers again."
    return Notification(
        notification_id=notification_id(kind, settings.account_id, until_ms),
        account_id=settings.account_id,
        kind=kind,
        policy_id=None,
        recipients=owner_recipients(settings),
        subject=subject,
        body=body,
        created_at_ms=now,
        window_start_ms=None,
    )


def throttle_engaged(
    settings: TenantSettings, reason: str, bot_id: str, detail: str, until_ms: int, at: int,
    now: int,
) -> Notification:  # fmt: skip
    """The smart throttle engaged: ``reason`` ``budget_at_risk`` (``detail``: the category;
    ``bot_id`` ``*``) or ``loop_suspected`` (``detail``: the conversation). One id per
    (account, reason, bot, detail, ``at``: the event time that engaged it)."""
    if reason == "budget_at_risk":
        subject = f"Replies slowed down: the {detail} AI credit budget is at risk"
        what = (
            f"At the current burn rate the {detail} AI credits would reach a cap before the "
            f"period ends (checked at {_iso(at)})."
        )
    else:
        subject = f"Replies slowed down for bot {bot_id}: a conversation looks like a loop"
        what = (
            f"Conversation {detail} of bot {bot_id} sent more than 20 messages within a minute "
            f"(at {_iso(at)})."
        )
    body = (
        f"{what} The smart throttle batches replies every 60 s and gives each conversation at "
        f"most one AI reply a minute until {_iso(until_ms)} (longer while it lasts)."
    )
    return Notification(
        notification_id=notification_id(
            "throttle", settings.account_id, reason, bot_id, detail, at
        ),
        account_id=settings.account_id,
        kind="throttle_engaged",
        policy_id=None,
        recipients=owner_recipients(settings),
        subject=subject,
        body=body,
        created_at_ms=now,
        window_start_ms=None,
        bot_id=bot_id,
    )


def block_lifted(
    settings: TenantSettings | None, account_id: str, bot_id: str, resumed_at_ms: int,
    policy_ids: list[str], now: int,
) -> Notification:  # fmt: skip
    """A person resumed ``bot_id`` at ``resumed_at_ms`` and that lifted the blocks of
    ``policy_ids``; one id per (account, bot, resume instant)."""
    return Notification(
        notification_id=notification_id("block_lifted", account_id, bot_id, resumed_at_ms),
        account_id=account_id,
        kind="block_lifted",
        policy_id=policy_ids[0] if len(policy_ids) == 1 else None,
        recipients=owner_recipients(settings),
        subject=f"Bot {bot_id} resumed by hand",
        body=(
            f"Bot {bot_id} was resumed at {_iso(resumed_at_ms)}: the block of "
            f"{', '.join(repr(p) for p in policy_ids)} no longer pauses it (those policies "
            "stay quiet until their block would have ended)."
        ),
        created_at_ms=now,
        window_start_ms=None,
        bot_id=bot_id,
    )


def cap_reached(
    settings: TenantSettings, category: str, period: str, period_key: str, resumes_at_ms: int,
    now: int, cap_micro: int = 0,
) -> Notification:  # fmt: skip
    """Tell the owner a credit cap was reached; one id per (category, period, period key) and
    cap: a cap raised in its period (a grant, new settings) and reached again is news."""
    cta = panel_cta(settings.plan, period)
    when = "at local midnight" if period == CapPeriod.DAILY else "on the 1st of next month"
    body = (
        f"The {period} {category} AI credit cap of {period_key} is reached. {category.title()} "
        f"AI pauses until {_iso(resumes_at_ms)} ({when})."
    )
    if cta is not None:
        body += f" {cta}"
    return Notification(
        notification_id=notification_id(
            "cap", settings.account_id, category, period, period_key, cap_micro
        ),
        account_id=settings.account_id,
        kind="cap_reached",
        policy_id=None,
        recipients=owner_recipients(settings),
        subject=f"{period.title()} {category} AI credit cap reached",
        body=body,
        created_at_ms=now,
        window_start_ms=None,
    )


def topup_request(
    settings: TenantSettings, category: str, period: str, requested_by: str, now: int,
    note: str = "",
) -> Notification:  # fmt: skip
    """The 'Request top-up' email to the account admin (paid plans only).

    Raises :class:`PlanError` on the free plan, whose call to action is to upgrade instead.
    The id is stable per (account, category, period, requester, minute) so a double click
    sends one email.
    """
    if settings.plan == Plan.FREE:
        raise PlanError("top-ups are for paid plans: upgrade to Starter to raise the cap")
    body = f"{requested_by} asks for a top-up of the {period} {category} AI credit cap."
    if note:
        body += f"\n\nNote: {note}"
    return Notification(
        notification_id=notification_id(
            "topup", settings.account_id, category, period, requested_by, now // 60_000
        ),
        account_id=settings.account_id,
        kind="topup_request",
        policy_id=None,
        recipients=owner_recipients(settings),
        subject=f"Top-up requested: {period} {category} AI credits",
        body=body,
        created_at_ms=now,
        window_start_ms=None,
    )
