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
* Warnings (soft thresholds): each cap has warning levels in percent (default 50, 80, 90;
  ``CategoryCaps.daily_warn_percents`` / ``monthly_warn_percents``). A level sends one
  ``cap_warning`` per local day (daily cap) or month (monthly cap) when the period's total
  reaches it; when one event crosses several levels only the highest sends (the cap itself
  covers the levels when it is reached at once). Sent levels are kept in ``alerted`` under
  ``cap_warn_key`` with the period's start, so a restart or a replay sends none again.
  The hot path compares the total with ``AccountUsage.warn_next`` (one per category and
  period: the lowest level not sent yet).
* Smart throttle, loop suspected: one conversation sends more than 20 messages within 60
  seconds. The bot is throttled for 10 minutes; a burst in the second half extends it.
"""

from __future__ import annotations

from array import array
from itertools import islice
from typing import Final

from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORIES,
    NEVER,
    CapPeriod,
    CapStatus,
    Notification,
)
from capstream.core.notifications import (
    cap_reached,
    cap_warning,
    downgrade_changed,
    throttle_engaged,
)
from capstream.core.series import (
    DAILY,
    MONTHLY,
    N_CATEGORIES,
    SERIES_BY_CATEGORY,
    SERIES_TEXT_CREDITS,
    TEXT,
)
from capstream.core.settings_view import RATE_SHORT_MS, SettingsView
from capstream.core.usage import AccountUsage, BotUsage
from capstream.core.usage_base import CAP_WARN

LOOP_MESSAGES_PER_MINUTE: Final = 20
LOOP_WINDOW_MS: Final = 60_000
LOOP_HOLD_MS: Final = 10 * 60_000
LOOP_TRACKED_CONVERSATIONS: Final = 256
_LOOP_KEEP: Final = LOOP_MESSAGES_PER_MINUTE
_LOOP_CURSOR: Final = 0
"""Slot of a loop ring holding the next slot to write (the times follow it)."""
_LOOP_NEXT: Final[list[int]] = [0] + [i % _LOOP_KEEP + 1 for i in range(1, _LOOP_KEEP + 1)]
"""The ring slot after slot ``i``."""
RISK_HOLD_MS: Final = 15 * 60_000
MIN_MONTH_ELAPSED_MS: Final = 86_400_000
RISK_CHECK_EVERY_MS: Final = 1_000
DAILY_PERIOD: Final = CapPeriod.DAILY.value  # an enum's .value is a Python property: read once
MONTHLY_PERIOD: Final = CapPeriod.MONTHLY.value


def cap_status(view: SettingsView, ci: int, usage: AccountUsage) -> CapStatus | None:
    """The cap category ``ci`` is under now, if any (monthly wins when both are reached)."""
    series = SERIES_BY_CATEGORY + ci
    cap = view.monthly[ci]
    if cap is not None and usage.month_base[series] + usage.day[series] >= cap:
        return CapStatus(MONTHLY_PERIOD, usage.month_key, usage.month_end_ms)
    cap = view.daily[ci]
    if cap is not None and usage.day[series] >= cap:
        return CapStatus(DAILY_PERIOD, usage.day_key, usage.day_end_ms)
    return None


def downgraded_until(view: SettingsView, usage: AccountUsage) -> int | None:
    """Local midnight if today's text credits reached the downgrade point, else None."""
    if usage.day[SERIES_TEXT_CREDITS] >= view.downgrade_at:
        return usage.day_end_ms
    return None


def budget_at_risk(view: SettingsView, usage: AccountUsage, ci: int, now: int) -> bool:
    """Does the burn rate of category ``ci`` project reaching a cap before its period ends?"""
    series = SERIES_BY_CATEGORY + ci
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
            loops = bot.loops = _make_room(loops, t - LOOP_WINDOW_MS)
        if messages == 1:
            loops[conversation_id] = t
            return False
        ring = loops[conversation_id] = array("q", (1,))
    elif isinstance(ring, int):
        ring = loops[conversation_id] = array("q", (2, ring))  # as [1] after one message
    if messages == 1:  # the common case, without a loop
        i = ring[_LOOP_CURSOR]
        ring[_LOOP_CURSOR] = _LOOP_NEXT[i]
        if i == len(ring):  # still filling: fewer than 21 messages so far
            ring.append(t)
            return False
        oldest = ring[i]
        ring[i] = t
        return t - oldest < LOOP_WINDOW_MS
    oldest = -NEVER
    for _ in range(min(messages, _LOOP_KEEP)):
        i = ring[_LOOP_CURSOR]
        ring[_LOOP_CURSOR] = _LOOP_NEXT[i]
        if i == len(ring):
            ring.append(t)
            oldest = -NEVER
        else:
            oldest = ring[i]
            ring[i] = t
    # more than 20 in this one record: the message 20 back is one of them, sent at t
    return messages > _LOOP_KEEP or t - oldest < LOOP_WINDOW_MS


def _make_room(loops: dict[str, int | array[int]], before_ms: int) -> dict[str, int | array[int]]:
    """The conversations of a full ``loops`` still worth tracking: those with a message
    after ``before_ms`` (a minute before the event's time), in first-seen order; if that is
    more than three quarters of the bound, the latest first seen of them.

    A conversation silent for a minute cannot be looping, and forgetting it changes no
    answer: its ring's times are all over a minute old, so its next 20 messages are compared
    with nothing recent, as in a new ring, and the 21st with the first of them in both. One
    pass makes room for many new conversations (forgetting only the first seen, one per new
    conversation, found the dict's first key by scanning the slots deleted before it, and
    dropped a busy conversation while idle ones stayed).
    """
    keep = {c: r for c, r in loops.items() if _last_message(r) > before_ms}
    room = LOOP_TRACKED_CONVERSATIONS * 3 // 4
    if len(keep) > room:
        keep = dict(islice(keep.items(), len(keep) - room, None))
    return keep


def _last_message(ring: int | array[int]) -> int:
    """The time of a conversation's latest message (its ring's slot before the cursor)."""
    if isinstance(ring, int):
        return ring
    i = ring[_LOOP_CURSOR]
    return ring[i - 1] if i > 1 else ring[_LOOP_KEEP]


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
                notes.append(cap_note(view, ci, status, now))
    if caps != acct.caps:
        acct.caps = caps
        changed = True
    downgraded = downgraded_until(view, acct)
    old = acct.downgraded_until_ms
    if downgraded != old:
        if old is not None:
            ended_at = old if old <= now else now
            notes.append(downgrade_changed(view.settings, False, old, ended_at, now))
        if downgraded is not None:
            notes.append(downgrade_changed(view.settings, True, downgraded, now, now))
        acct.downgraded_until_ms = downgraded
        changed = True
    arm_warnings(acct, view)
    for ci in range(N_CATEGORIES):
        check_warnings(acct, view, ci, now, notes)
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
            notes.append(cap_note(view, ci, status, now))
            changed = True
    if ci == TEXT and acct.downgraded_until_ms is None:
        downgraded = downgraded_until(view, acct)
        if downgraded is not None:
            acct.downgraded_until_ms = downgraded
            notes.append(downgrade_changed(view.settings, True, downgraded, now, now))
            changed = True
    return changed


def cap_warn_key(category: str, period: str, percent: int) -> str:
    """The key of a cap warning level in ``AccountUsage.alerted``."""
    return f"{CAP_WARN}{category}\x1f{period}\x1f{percent}"


def arm_warnings(acct: AccountUsage, view: SettingsView) -> None:
    """Set ``acct.warn_next`` (the lowest level of each cap not sent this period) and forget
    the levels sent in earlier periods."""
    alerted = acct.alerted
    day, month = acct.day_start_ms, acct.month_start_ms
    stale = [
        k for k, start in alerted.items()
        if k.startswith(CAP_WARN) and start != (day if f"\x1f{DAILY_PERIOD}\x1f" in k else month)
    ]  # fmt: skip
    for k in stale:
        del alerted[k]
    nxt = [NEVER] * (2 * N_CATEGORIES)
    for slot, levels in enumerate(view.warnings):
        if not levels:
            continue
        monthly = slot % 2 == MONTHLY
        period = MONTHLY_PERIOD if monthly else DAILY_PERIOD
        cat = CATEGORIES[slot // 2]
        start = acct.month_start_ms if monthly else acct.day_start_ms
        for pct, amount in levels:
            if alerted.get(cap_warn_key(cat, period, pct)) != start:
                nxt[slot] = amount
                break
    acct.warn_next = nxt


def check_warnings(
    acct: AccountUsage, view: SettingsView, ci: int, now: int, notes: list[Notification]
) -> None:
    """Send the warning levels of category ``ci``'s caps its totals reached this period
    (each once; of several reached at once only the highest); re-arm ``warn_next``."""
    series = SERIES_BY_CATEGORY + ci
    cat = CATEGORIES[ci]
    alerted = acct.alerted
    sent = False
    for slot in (2 * ci + DAILY, 2 * ci + MONTHLY):
        levels = view.warnings[slot]
        if not levels:
            continue
        if slot % 2 == MONTHLY:
            period, key, start, end = (
                MONTHLY_PERIOD, acct.month_key, acct.month_start_ms, acct.month_end_ms
            )  # fmt: skip
            total = acct.month_base[series] + acct.day[series]
            cap = view.monthly[ci]
        else:
            period, key, start, end = DAILY_PERIOD, acct.day_key, acct.day_start_ms, acct.day_end_ms
            total = acct.day[series]
            cap = view.daily[ci]
        assert cap is not None
        if total < acct.warn_next[slot]:
            continue
        for i, (pct, amount) in enumerate(levels):
            if total < amount:
                break
            k = cap_warn_key(cat, period, pct)
            if alerted.get(k) == start:
                continue
            alerted[k] = start
            sent = True
            above = levels[i + 1][1] if i + 1 < len(levels) else cap
            if total < above:
                note = cap_warning(view.settings, cat, period, key, pct, total, cap, end, now)
                notes.append(note)
    if sent:
        arm_warnings(acct, view)


def check_risk(
    acct: AccountUsage, view: SettingsView, ci: int, t: int, now: int, notes: list[Notification]
) -> bool:
    """Smart throttle: arm the budget-risk hold if category ``ci`` burns too fast (a
    ``throttle_engaged`` notification when it was not held)."""
    acct.risk_checked_ms[ci] = t
    risk = acct.risk_until_ms
    if (
        (risk is None or risk - now < RISK_HOLD_MS // 2)  # arm, or extend before it lapses
        and CATEGORIES[ci] not in acct.caps
        and budget_at_risk(view, acct, ci, now)
    ):
        acct.risk_until_ms = until = now + RISK_HOLD_MS
        if risk is None or risk <= now:
            note = throttle_engaged(
                view.settings, "budget_at_risk", ACCOUNT_WIDE_BOT, CATEGORIES[ci], until, t, now
            )
            notes.append(note)
        return True
    return False


def cap_note(view: SettingsView, ci: int, status: CapStatus, now: int) -> Notification:
    """The owner's email for a newly reached cap (the cap in force is part of its id)."""
    cap = view.monthly[ci] if status.period == MONTHLY_PERIOD else view.daily[ci]
    return cap_reached(
        view.settings, CATEGORIES[ci], status.period, status.period_key, status.resumes_at_ms,
        now, cap if cap is not None else 0,
    )  # fmt: skip
