"""Entry points of the decision core: evaluate, reevaluate, expire and next_deadline.

Each mutates the :class:`~capstream.core.state.AccountState` in place, returns it, and
returns the :class:`~capstream.core.state.Effects`: the enforcement states that changed
(each with a higher version) and the notifications to send.
"""

from __future__ import annotations

from typing import Final

from capstream.core.caps import (
    LOOP_HOLD_MS,
    MONTHLY_PERIOD,
    RISK_CHECK_EVERY_MS,
    check_risk,
    check_warnings,
    loop_suspected,
    refresh_account,
    update_caps,
)
from capstream.core.enforcement import derive
from capstream.core.errors import CoreError, EventError
from capstream.core.forecast import check_forecast
from capstream.core.models.decisions import EnforcementState, Notification, ValueBlock
from capstream.core.models.event import UsageEvent
from capstream.core.models.tenant import TenantSettings
from capstream.core.models.vocabulary import ACCOUNT_WIDE_BOT, CATEGORIES, CATEGORY_INDEX, NEVER
from capstream.core.notifications import downgrade_changed, throttle_engaged
from capstream.core.policies import fire, mute, unmute
from capstream.core.recompute import apply_clock, changed, decide_all, new_bot
from capstream.core.scopes import count_scoped
from capstream.core.series import (
    DAILY,
    MONTHLY,
    SERIES_BY_CATEGORY,
    SERIES_CONVERSATIONS,
    SERIES_CREDITS,
    SERIES_MESSAGES,
    SERIES_TEXT_CREDITS,
    SERIES_TOKENS,
    TEXT,
)
from capstream.core.state import (
    NO_EFFECTS,
    AccountState,
    Effects,
    Policies,
    bot_deadline,
    collect_effects,
    deadline,
    derive_all,
)
from capstream.core.usage_base import UsageBase

_MAX_INDEX: Final = 1 << 16


def evaluate(
    state: AccountState,
    event: UsageEvent,
    policies: Policies,
    settings: TenantSettings,
    now: int,
    *,
    partition: int = -1,
    offset: int = -1,
    index: int = 0,
) -> tuple[AccountState, Effects]:
    """Apply one usage event and decide; ``(state, effects)``.

    ``partition``/``offset`` give the event's source position and ``index`` its place in a
    batched record: an event at or below a state's watermark, or whose ``event_id`` is in the
    recent-id set, changes nothing (``effects.duplicate``). Policies or settings different
    from the last call's trigger :func:`reevaluate` first (a :class:`PolicySet` is compared
    by identity, so build a new one on change; a plain sequence is compared by content).
    Raises :class:`EventError` for an event that cannot be applied (send it to the DLQ).
    """
    acct = state.account
    if event.account_id != acct.account_id:
        raise EventError(
            f"event {event.event_id!r} is for account {event.account_id!r}, not {acct.account_id!r}"
        )
    ci = CATEGORY_INDEX.get(event.category)
    if ci is None:
        raise EventError(f"event {event.event_id!r}: unknown category {event.category!r}")
    tokens_in, tokens_out = event.tokens_in, event.tokens_out
    msgs, cr = event.messages, event.credits_micro
    if (tokens_in | tokens_out | msgs | cr) < 0:
        raise EventError(f"event {event.event_id!r}: amounts cannot be negative")
    if not 0 <= index < _MAX_INDEX:
        raise EventError(f"event index {index} in its record must be in [0, {_MAX_INDEX})")

    states: list[EnforcementState] = []
    notes: list[Notification] = []
    if (settings is not state.settings or policies is not state.policies_given) and changed(
        state, policies, settings
    ):
        decide_all(state, policies, settings, now, states, notes)
    elif now >= state.deadline_ms:
        apply_clock(state, now, states, notes)

    # Idempotence: each table's value has its own watermark (one may be restored from an
    # older changelog point than the other); the recent-id set drops client resends.
    pos = -1
    acct_fresh = True
    if offset >= 0:
        pos = offset * _MAX_INDEX + index
        wm = acct.watermarks.get(partition)
        if wm is not None and pos <= wm:
            acct_fresh = False
        else:
            acct.watermarks[partition] = pos
    recent = acct.recent_set
    if acct_fresh:
        eid = event.event_id
        if eid in recent:
            return state, collect_effects(states, notes, duplicate=True, view=state.view)
        order = acct.recent_ids
        if len(order) >= acct.recent_capacity:
            del recent[order.popleft()]
        order.append(eid)
        recent[eid] = pos
        state.account_dirty = True
    else:
        # The account's value is from a later point than this replayed event (the bot's may
        # be older): if its id was first applied at another position, it was a client resend
        # that was dropped then, so it must not count in the bot now either.
        first = recent.get(event.event_id, -1)
        if first >= 0 and first != pos:
            return state, collect_effects(states, notes, duplicate=True)

    bot_id = event.bot_id
    bot = state.bots.get(bot_id)
    bot_changed = bot is None
    if bot is None:
        bot = state.bots[bot_id] = new_bot(state, bot_id, now)
    wm = bot.watermarks.get(partition) if pos >= 0 else None
    bot_fresh = wm is None or pos > wm
    if bot_fresh:
        if pos >= 0:
            bot.watermarks[partition] = pos
        state.dirty_bots.add(bot_id)
    elif not acct_fresh:
        return state, collect_effects(states, notes, duplicate=True, view=state.view)

    view = state.view
    assert view is not None
    t = event.occurred_at_ms
    if t > now:
        t = now
    tokens = tokens_in + tokens_out
    conv = 1 if event.conversation_started else 0

    # Calendar totals and rolling windows of the account, then of the bot: most of the
    # per-event cost (compiled, Ring.add is a direct call).
    acct_changed = False
    cr_series = SERIES_BY_CATEGORY + ci
    usage: UsageBase
    parts = ((acct, bot) if bot_fresh else (acct,)) if acct_fresh else (bot,)
    for usage in parts:
        is_acct = usage is acct
        if usage.quiet and not usage.quiet_from_ms <= now < usage.quiet_until_ms:
            unmute(usage)  # a quiet policy's alert window or block may have ended
        if now >= usage.day_end_ms and usage.roll_to(now):  # a month ends with a day
            acct_changed = acct_changed or is_acct
        d: list[int] | None
        if t >= usage.day_start_ms:
            d = usage.day
        else:  # a late event from an earlier day: its week and month, if still current
            if t >= usage.week_start_ms:
                w = usage.week_base
                w[SERIES_TOKENS] += tokens
                w[SERIES_MESSAGES] += msgs
                w[SERIES_CONVERSATIONS] += conv
                w[SERIES_CREDITS] += cr
                w[cr_series] += cr
            d = usage.month_base if t >= usage.month_start_ms else None
        if d is not None:
            d[SERIES_TOKENS] += tokens
            d[SERIES_MESSAGES] += msgs
            if conv:
                d[SERIES_CONVERSATIONS] += conv
            d[SERIES_CREDITS] += cr
            d[cr_series] += cr
        for entry in usage.watch[ci]:
            # The amount of the entry's series: tokens, messages, conversations, then
            # credits (all of them, or of the event's category: watch[ci] holds no other).
            series = entry.series
            if series >= SERIES_CREDITS:
                v = cr
            elif series == SERIES_TOKENS:
                v = tokens
            else:
                v = msgs if series == SERIES_MESSAGES else conv
            if not v:
                continue
            ring = entry.ring
            if ring is None:  # a calendar policy: its period's total (added above)
                total = usage.calendar_total(series, entry.period, t)
            else:
                total = ring.add(t, v)  # the window ending at t (a late event's own)
            if total < 0:
                continue  # older than the window: nothing added, nothing to decide
            if total >= entry.low:
                cps = entry.cps
                scope = ACCOUNT_WIDE_BOT if is_acct else bot_id
                for cp in cps:
                    if total >= cp.threshold and fire(
                        cp, usage, scope, total, t, now, settings, notes
                    ):
                        if is_acct:
                            acct_changed = True
                        else:
                            bot_changed = True
                mute(usage, cps, total, t, now)

    ps = state.policies
    vblocks: list[ValueBlock] | None = None  # a value's block started (rare)
    if acct_fresh and ps is not None and ps.scoped:  # per-attribute policies (scopes.py)
        sps = ps.scoped_by_bot.get(bot_id, ps.scoped_common)
        if sps:
            amounts = (tokens, msgs, conv, cr, cr_series)
            vblocks = count_scoped(acct, sps, event, amounts, t, now, settings, notes)

    if bot_fresh and msgs and view.smart and loop_suspected(bot, event.conversation_id, t, msgs):
        loop = bot.loop_until_ms
        if loop is None or loop - now < LOOP_HOLD_MS // 2:  # arm, or extend before it lapses
            bot.loop_until_ms = now + LOOP_HOLD_MS
            bot_changed = True
            if loop is None or loop <= now:  # engaged (not extended)
                notes.append(
                    throttle_engaged(
                        settings, "loop_suspected", bot_id, event.conversation_id,
                        bot.loop_until_ms, t, now,
                    )
                )  # fmt: skip

    if acct_changed:
        refresh_account(acct, view, now, notes)
    if cr and acct_fresh:
        daily, monthly = view.limits[ci]
        today = acct.day[cr_series]
        month_total = acct.month_base[cr_series] + today
        warn_next = acct.warn_next
        if today >= warn_next[2 * ci + DAILY] or month_total >= warn_next[2 * ci + MONTHLY]:
            check_warnings(acct, view, ci, now, notes)  # a soft threshold: no state change
        if view.forecast_on[ci]:  # opted in: is a cap in reach within the lead time?
            check_forecast(
                acct,
                view.forecast,
                view.settings,
                view.daily[ci],
                view.monthly[ci],
                ci,
                t,
                now,
                notes,
            )
        if today >= daily or month_total >= monthly:
            # Already capped for this period: only the monthly cap can still take over from
            # the daily one (a period change rolls the day first and refreshes every cap).
            held = acct.caps.get(CATEGORIES[ci])
            if (
                held is None
                or (month_total >= monthly and held.period != MONTHLY_PERIOD)
                or (ci == TEXT and acct.downgraded_until_ms is None)
            ) and update_caps(acct, view, ci, now, notes):
                acct_changed = True
        elif (
            ci == TEXT
            and acct.day[SERIES_TEXT_CREDITS] >= view.downgrade_at
            and acct.downgraded_until_ms is None
        ):
            acct.downgraded_until_ms = acct.day_end_ms
            notes.append(downgrade_changed(settings, True, acct.day_end_ms, t, now))
            acct_changed = True
        if (
            view.watch_risk[ci]
            and t - acct.risk_checked_ms[ci] >= RISK_CHECK_EVERY_MS
            and check_risk(acct, view, ci, t, now, notes)
        ):
            acct_changed = True

    if acct_changed:
        derive_all(state, view, now, states)
        state.deadline_ms = deadline(state)
    elif bot_changed:
        e = derive(acct, bot, view, acct.caps, now)
        if e is not None:
            states.append(e)
        state.deadline_ms = min(state.deadline_ms, bot_deadline(bot))
    if states or notes or vblocks:
        return state, collect_effects(states, notes, view=state.view, value_blocks=vblocks)
    return state, NO_EFFECTS


def reevaluate(
    state: AccountState,
    policies: Policies,
    settings: TenantSettings,
    now: int,
    *,
    alerts: bool = True,
    blocks: bool = True,
) -> tuple[AccountState, Effects]:
    """Decide again without an event (policies or settings changed, or after a restore).

    Lowering a threshold below current usage fires the policy at once (its alert at
    ``now``); raising a cap lifts it at once. ``alerts=False`` starts blocks but leaves
    policy alerts to the next event that crosses: a replay after a crash then sends each
    alert under the id of the event that crossed it, whatever the clock. ``blocks=False``
    (a restore: the state is what the core had decided) starts no block and sends no alert:
    a policy over its threshold whose block ended waits, as it did before, for the next
    event that crosses (starting it at ``now`` blocked earlier than the core walking the
    same events, and a whole chain of blocks after it).
    """
    states: list[EnforcementState] = []
    notes: list[Notification] = []
    decide_all(state, policies, settings, now, states, notes, alerts, blocks)
    return state, collect_effects(states, notes, view=state.view)


def expire(state: AccountState, now: int) -> tuple[AccountState, Effects]:
    """Apply what changes by the clock alone: blocks ending, local midnight, the 1st of the
    month, the throttle ending. Needs the policies and settings of an earlier call."""
    if state.view is None:
        raise CoreError("expire() needs settings: call reevaluate() once after loading state")
    states: list[EnforcementState] = []
    notes: list[Notification] = []
    apply_clock(state, now, states, notes)
    return state, collect_effects(states, notes, view=state.view)


def next_deadline(state: AccountState) -> int | None:
    """The earliest instant (ms) at which :func:`expire` would change something, or None."""
    at = deadline(state)
    return None if at >= NEVER else at
