"""Credit caps per category, auto-downgrade, and the adaptive throttle's two triggers.

Rules (amounts in micro-credits, periods in the tenant's timezone):

* A category is capped when its month total reaches the monthly cap (resumes at local 00:00
  on the 1st of next month) or its day total reaches the daily cap (resumes at the next local
  midnight). When both are reached the monthly cap is the one reported (it is the more real
  one, and the one that still holds after midnight). A cap of 0 switches the category off.
* Auto-downgrade (Pro/Enterprise, when on): once the day's text credits reach 80% of the
  daily text cap, the downgrade model replaces the premium model until local midnight.
* Smart throttle, budget at risk: for a category not yet capped, the day total plus the last
  hour's burn rate times the time left in the day reaches the daily cap, or the month total
  extrapolated at the month-to-date rate (over at least one day) to the month's end reaches
  the monthly cap. Checked at most once a second per category, on events that spend its
  credits. The throttle then holds for 15 minutes; an at-risk check in its second half
  extends it (no flapping while the risk lasts).
  (The hourly rate comes from a 1 h window that starts counting when the tenant sets a cap.)
* Smart throttle, loop suspected: one conversation sends more than 20 messages within 60
  seconds. The bot is throttled for 10 minutes; a burst in the second half extends it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Final

from capstream.core.messages import fallback_text
from capstream.core.models import (
    CATEGORIES,
    DOWNGRADE_PLANS,
    FAST_BATCHING_S,
    NEVER,
    THROTTLED_BATCHING_S,
    CapPeriod,
    CapStatus,
    Notification,
    TenantSettings,
    Throttle,
)
from capstream.core.notifications import cap_reached
from capstream.core.usage import AccountUsage, BotUsage

DOWNGRADE_PERCENT = 80
LOOP_MESSAGES_PER_MINUTE = 20
LOOP_WINDOW_MS = 60_000
LOOP_HOLD_MS = 10 * 60_000
LOOP_TRACKED_CONVERSATIONS = 256
_LOOP_KEEP = LOOP_MESSAGES_PER_MINUTE
_LOOP_NEXT = [0] + [i % _LOOP_KEEP + 1 for i in range(1, _LOOP_KEEP + 1)]  # ring slot after i
RISK_HOLD_MS = 15 * 60_000
RATE_SHORT_MS = 3_600_000
MIN_MONTH_ELAPSED_MS = 86_400_000
RISK_CHECK_EVERY_MS = 1_000
DAILY_PERIOD: Final = CapPeriod.DAILY.value  # an enum's .value is a Python property: read once
MONTHLY_PERIOD: Final = CapPeriod.MONTHLY.value


@dataclass(frozen=True, slots=True)
class SettingsView:
    """What the hot path needs from :class:`TenantSettings`, computed once per settings."""

    settings: TenantSettings
    daily: tuple[int | None, ...]
    monthly: tuple[int | None, ...]
    limits: tuple[tuple[int, int], ...]
    """Per category (daily, monthly) cap with ``NEVER`` for none: one comparison each."""
    downgrade_at: int
    """Today's text credits at which to downgrade (``NEVER``: no auto-downgrade)."""
    watch_risk: tuple[bool, ...]
    """Per category: smart throttle on and the category has a cap (budget risk applies)."""
    fallback_daily: str
    fallback_monthly: str
    smart: bool
    strict: bool
    batching_s: int
    budget_rings: tuple[tuple[int, int], ...]


def view_of(settings: TenantSettings) -> SettingsView:
    """Derive the :class:`SettingsView` of ``settings``."""
    caps = [settings.caps.get(c) for c in CATEGORIES]
    daily = tuple(c.daily_micro if c is not None else None for c in caps)
    monthly = tuple(c.monthly_micro if c is not None else None for c in caps)
    has_caps = tuple(d is not None or m is not None for d, m in zip(daily, monthly, strict=True))
    text_daily = daily[0]
    downgrade_at = NEVER
    if settings.auto_downgrade and settings.plan in DOWNGRADE_PLANS and text_daily is not None:
        downgrade_at = -(-text_daily * DOWNGRADE_PERCENT // 100)
    smart = settings.throttle == Throttle.SMART
    strict = settings.throttle == Throttle.STRICT
    budget: list[tuple[int, int]] = []
    if smart:
        for ci, capped in enumerate(has_caps):
            if capped:
                budget.append((4 + ci, RATE_SHORT_MS))
    template, lang = settings.fallback_message, settings.language
    return SettingsView(
        settings=settings,
        daily=daily,
        monthly=monthly,
        limits=tuple(
            (NEVER if d is None else d, NEVER if m is None else m)
            for d, m in zip(daily, monthly, strict=True)
        ),
        downgrade_at=downgrade_at,
        watch_risk=tuple(smart and capped for capped in has_caps),
        fallback_daily=fallback_text(template, lang, CapPeriod.DAILY),
        fallback_monthly=fallback_text(template, lang, CapPeriod.MONTHLY),
        smart=smart,
        strict=strict,
        batching_s=THROTTLED_BATCHING_S if strict else FAST_BATCHING_S,
        budget_rings=tuple(budget),
    )


def cap_status(view: SettingsView, ci: int, usage: AccountUsage) -> CapStatus | None:
    """The cap category ``ci`` is under now, if any (monthly wins when both are reached)."""
    cap = view.monthly[ci]
    if cap is not None and usage.month_base[4 + ci] + usage.day[4 + ci] >= cap:
        return CapStatus(MONTHLY_PERIOD, usage.month_key, usage.month_end_ms)
    cap = view.daily[ci]
    if cap is not None and usage.day[4 + ci] >= cap:
        return CapStatus(DAILY_PERIOD, usage.day_key, usage.day_end_ms)
    return None


def downgraded_until(view: SettingsView, usage: AccountUsage) -> int | None:
    """Local midnight if today's text credits reached the downgrade point, else None."""
    if usage.day[4] >= view.downgrade_at:
        return usage.day_end_ms
    return None


def budget_at_risk(view: SettingsView, usage: AccountUsage, ci: int, now: int) -> bool:
    """Does the burn rate of category ``ci`` project reaching a cap before its period ends?"""
    series = 4 + ci
    cap = view.daily[ci]
    total = usage.day[series]
    if cap is not None and total < cap:
        ring = usage.rings.get((series, RATE_SHORT_MS))
        burned = ring.total if ring is not None else 0
        if total * RATE_SHORT_MS + burned * (usage.day_end_ms - now) >= cap * RATE_SHORT_MS:
            return True
    cap = view.monthly[ci]
    total = usage.month_base[series] + usage.day[series]
    if cap is not None and total < cap:
        elapsed = max(now - usage.month_start_ms, MIN_MONTH_ELAPSED_MS)
        if total * (elapsed + usage.month_end_ms - now) >= cap * elapsed:
            return True
    return False


def loop_suspected(bot: BotUsage, conversation_id: str, t: int, messages: int) -> bool:
    """Record ``messages`` at ``t``; True if the conversation sent > 20 in the last 60 s.

    Per conversation, a ring of the last 20 message times; slot 0 holds the next slot, whose
    time is that of the message 20 back: if it is less than a minute old, 21 messages
    arrived within a minute. A ring grows by appending until it holds 20 times (most
    conversations never get there: no ring of 21 is made for them).

    A conversation's first message is kept as its time alone (an int, which the garbage
    collector does not track), and rings are arrays (nothing inside for it to traverse).
    With a list per conversation, a stream of new conversations left one long-lived list
    of ints per event for every young collection to scan (measured: 50,000 lists, 20-60 ms
    pauses).
    """
    loops = bot.loops
    ring = loops.get(conversation_id)
    if ring is None:
        if len(loops) >= LOOP_TRACKED_CONVERSATIONS:
            del loops[next(iter(loops))]
        if messages == 1:
            loops[conversation_id] = t
            return False
        ring = loops[conversation_id] = array("q", (1,))
    elif isinstance(ring, int):
        ring = loops[conversation_id] = array("q", (2, ring))  # as [1] after one message
    if messages == 1:  # the common case, without a loop
        i = ring[0]
        ring[0] = _LOOP_NEXT[i]
        if i == len(ring):  # still filling: fewer than 21 messages so far
            ring.append(t)
            return False
        oldest = ring[i]
        ring[i] = t
        return t - oldest < LOOP_WINDOW_MS
    oldest = -NEVER
    for _ in range(min(messages, _LOOP_KEEP)):
        i = ring[0]
        ring[0] = _LOOP_NEXT[i]
        if i == len(ring):
            ring.append(t)
            oldest = -NEVER
        else:
            oldest = ring[i]
            ring[i] = t
    # more than 20 in this one record: the message 20 back is one of them, sent at t
    return messages > _LOOP_KEEP or t - oldest < LOOP_WINDOW_MS


def refresh_account(
    acct: AccountUsage, view: SettingsView, now: int, notes: list[Notification]
) -> bool:
    """Recompute every account-level input of enforcement; True if any changed."""
    changed = False
    caps = {}
    for ci, cat in enumerate(CATEGORIES):
        status = cap_status(view, ci, acct)
        if status is not None:
            caps[cat] = status
            if acct.caps.get(cat) != status:
                notes.append(cap_note(view, cat, status, now))
    if caps != acct.caps:
        acct.caps = caps
        changed = True
    downgraded = downgraded_until(view, acct)
    if downgraded != acct.downgraded_until_ms:
        acct.downgraded_until_ms = downgraded
        changed = True
    risk = acct.risk_until_ms
    if risk is not None and (risk <= now or not view.smart):
        acct.risk_until_ms = None
        changed = True
    if acct.blocked_until_ms is not None and acct.blocked_until_ms <= now:
        acct.blocked_until_ms = acct.block_policy_id = None
        acct.blocks = {}
        changed = True
    return changed


def update_caps(
    acct: AccountUsage, view: SettingsView, ci: int, now: int, notes: list[Notification]
) -> bool:
    """Credits of category ``ci`` reached a cap: record it (and the downgrade, for text)."""
    changed = False
    status = cap_status(view, ci, acct)
    if status is not None:
        cat = CATEGORIES[ci]
        if acct.caps.get(cat) != status:
            acct.caps = {**acct.caps, cat: status}
            notes.append(cap_note(view, cat, status, now))
            changed = True
    if ci == 0 and acct.downgraded_until_ms is None:
        downgraded = downgraded_until(view, acct)
        if downgraded is not None:
            acct.downgraded_until_ms = downgraded
            changed = True
    return changed


def check_risk(acct: AccountUsage, view: SettingsView, ci: int, t: int, now: int) -> bool:
    """Smart throttle: arm the budget-risk hold if category ``ci`` burns too fast."""
    acct.risk_checked_ms[ci] = t
    risk = acct.risk_until_ms
    if (
        (risk is None or risk - now < RISK_HOLD_MS // 2)  # arm, or extend before it lapses
        and CATEGORIES[ci] not in acct.caps
        and budget_at_risk(view, acct, ci, now)
    ):
        acct.risk_until_ms = now + RISK_HOLD_MS
        return True
    return False


def cap_note(view: SettingsView, cat: str, status: CapStatus, now: int) -> Notification:
    """The owner's email for a newly reached cap."""
    return cap_reached(
        view.settings, cat, status.period, status.period_key, status.resumes_at_ms, now
    )
