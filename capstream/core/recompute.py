"""Deciding everything again: adopting changed policies or settings, and the clock.

:func:`decide_all` re-derives an account's whole state (policies or settings changed, or
after a restore); :func:`apply_clock` applies what changes by time alone (blocks ending,
local midnight, the 1st of the month, the throttle ending). The entry points in
:mod:`capstream.core.evaluate` call them; the per-event path stays there.
"""

from __future__ import annotations

from capstream.core.caps import refresh_account
from capstream.core.enforcement import derive
from capstream.core.errors import CoreError, PolicyError
from capstream.core.models.decisions import EnforcementState, Notification
from capstream.core.models.tenant import TenantSettings
from capstream.core.models.vocabulary import ACCOUNT_WIDE_BOT
from capstream.core.policies import PolicySet, build_watch, check_all, end_blocks, unmute
from capstream.core.resume import lift_blocks
from capstream.core.scopes import keep_policies
from capstream.core.settings_view import view_of
from capstream.core.state import AccountState, Policies, deadline, derive_all, unmute_all
from capstream.core.usage import BotUsage


def changed(state: AccountState, policies: Policies, settings: TenantSettings) -> bool:
    """Are these policies or settings different from the ones in use?"""
    if settings is not state.settings:
        if state.settings is None or settings != state.settings:
            return True
        state.settings = settings  # equal: adopt it so the next call is an identity check
    if policies is not state.policies_given:
        current = state.policies
        if current is None:
            return True
        if isinstance(policies, PolicySet):
            if policies != current:
                return True
            state.policies_given = policies
        elif tuple(policies) != current.policies:  # a list may change in place: no adopting
            return True
    return False


def new_bot(state: AccountState, bot_id: str, now: int) -> BotUsage:
    """A bot seen for the first time: its usage state, watching its policies."""
    assert state.policies is not None
    acct = state.account
    bot = BotUsage(acct.account_id, timezone=acct.timezone, bot_id=bot_id)
    if (
        acct.day_start_ms <= now < acct.day_end_ms
        and acct.week_start_ms <= now < acct.week_end_ms
        and acct.month_start_ms <= now < acct.month_end_ms
    ):
        bot.take_periods(acct)  # the periods holding now, in the same zone: the account's
    else:
        bot.roll_to(now)
    build_watch(bot, state.policies.for_bot(bot_id), now)
    return bot


def decide_all(
    state: AccountState,
    policies: Policies,
    settings: TenantSettings,
    now: int,
    states: list[EnforcementState],
    notes: list[Notification],
    alerts: bool = True,
    blocks: bool = True,
) -> None:
    """Adopt ``policies`` and ``settings`` and decide everything again (``blocks=False``:
    without firing any policy, see :func:`capstream.core.evaluate.reevaluate`)."""
    acct = state.account
    if settings.account_id != acct.account_id:
        raise CoreError(
            f"settings are for account {settings.account_id!r}, not {acct.account_id!r}"
        )
    if not isinstance(policies, PolicySet):
        policies = PolicySet(policies)
    elif policies is not state.policies_given and policies == state.policies:
        policies = state.policies  # same content: keep the compiled set in use
    if policies.account_id not in (None, acct.account_id):
        raise PolicyError(f"policies are for account {policies.account_id!r}")
    state.policies, state.settings = policies, settings
    state.policies_given = policies
    unmute_all(state)
    view = state.view = view_of(settings)
    acct.set_timezone(settings.timezone, now)
    acct.roll_to(now)
    build_watch(acct, policies.total, now, view.budget_rings)
    keep_policies(acct, policies.scoped)
    out = notes if alerts else None
    if blocks:
        check_all(acct, ACCOUNT_WIDE_BOT, now, settings, out)
    for bot_id, bot in state.bots.items():
        bot.set_timezone(settings.timezone, now)
        bot.roll_to(now)
        build_watch(bot, policies.for_bot(bot_id), now)
        if blocks:
            check_all(bot, bot_id, now, settings, out)
    lift_blocks(
        state, policies, notes, now
    )  # after check_all: a lifted block keeps its policy quiet
    refresh_account(acct, view, now, notes)
    derive_all(state, view, now, states)
    state.account_dirty = True
    state.dirty_bots.update(state.bots)
    state.deadline_ms = deadline(state)


def apply_clock(
    state: AccountState, now: int, states: list[EnforcementState], notes: list[Notification]
) -> None:
    """What changes by the clock alone (see :func:`~capstream.core.evaluate.expire`)."""
    view = state.view
    assert view is not None
    acct = state.account
    # Blocks end here: the bots whose pause ended check their policies again (the quiet
    # policies of the others stay quiet until their own time, see evaluate).
    changed_bots: list[BotUsage] = []
    for bot in state.bots.values():
        changed = False
        if end_blocks(bot, now):
            unmute(bot)
            changed = True
        if bot.loop_until_ms is not None and bot.loop_until_ms <= now:
            bot.loop_until_ms = None
            changed = True
        if now >= bot.day_end_ms or now >= bot.month_end_ms:
            bot.roll_to(now)
            changed = True
        if changed:
            changed_bots.append(bot)
            state.dirty_bots.add(bot.bot_id)
    rolled = now >= acct.day_end_ms or now >= acct.month_end_ms
    if rolled:
        acct.roll_to(now)
    acct_blocked = acct.blocked_until_ms
    refreshed = refresh_account(acct, view, now, notes)
    if acct_blocked is not None and acct.blocked_until_ms is None:
        unmute(acct)
    if refreshed or rolled:
        state.account_dirty = True
        derive_all(state, view, now, states)
    else:
        for bot in changed_bots:
            e = derive(acct, bot, view, acct.caps, now)
            if e is not None:
                states.append(e)
    state.deadline_ms = deadline(state)
