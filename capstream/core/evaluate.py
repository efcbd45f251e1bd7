"""Entry points of the decision core: evaluate, reevaluate, expire and next_deadline.

``AccountState`` aggregates one account's usage (``AccountUsage``) and its bots'
(``BotUsage``); each part serialises on its own. Every function mutates the state in place,
returns it, and returns the :class:`Effects`: the enforcement states that changed (each with
a higher version) and the notifications to send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from capstream.core.caps import (
    LOOP_HOLD_MS,
    RISK_CHECK_EVERY_MS,
    RISK_HOLD_MS,
    SettingsView,
    budget_at_risk,
    cap_status,
    downgraded_until,
    loop_suspected,
    view_of,
)
from capstream.core.enforcement import derive
from capstream.core.errors import CoreError, EventError, PolicyError
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORIES,
    CATEGORY_INDEX,
    NEVER,
    CapStatus,
    EnforcementState,
    Notification,
    Policy,
    TenantSettings,
    UsageEvent,
)
from capstream.core.notifications import cap_reached
from capstream.core.policies import PolicySet, build_watch, check_all, fire
from capstream.core.usage import (
    DEFAULT_RECENT_IDS,
    AccountUsage,
    BotUsage,
    UsageBase,
)

_MAX_INDEX = 1 << 16


@dataclass(frozen=True, slots=True)
class Effects:
    """What an evaluation changed: enforcement states to publish and notifications to send."""

    enforcement: tuple[EnforcementState, ...] = ()
    notifications: tuple[Notification, ...] = ()
    duplicate: bool = False
    """True when the event was a replay or a resend and changed nothing."""

    def __bool__(self) -> bool:
        return bool(self.enforcement or self.notifications)


NO_EFFECTS = Effects()
DUPLICATE = Effects(duplicate=True)


class AccountState:
    """One account's usage state with its bots' states, plus the policies and settings in use.

    ``dirty_bots`` and ``account_dirty`` tell the caller what to write back (see
    :meth:`take_dirty`).
    """

    __slots__ = (
        "account",
        "account_dirty",
        "bots",
        "deadline_ms",
        "dirty_bots",
        "policies",
        "policies_given",
        "settings",
        "view",
    )

    def __init__(
        self,
        account_id: str,
        *,
        recent_capacity: int = DEFAULT_RECENT_IDS,
        account: AccountUsage | None = None,
        bots: Iterable[BotUsage] = (),
    ) -> None:
        self.account = account or AccountUsage(account_id, recent_capacity=recent_capacity)
        if self.account.account_id != account_id:
            raise CoreError("account usage belongs to another account")
        self.bots: dict[str, BotUsage] = {}
        for bot in bots:
            if bot.account_id != account_id:
                raise CoreError(f"bot {bot.bot_id!r} belongs to another account")
            self.bots[bot.bot_id] = bot
        self.policies: PolicySet | None = None
        self.policies_given: object = None  # the object last passed (identity fast path)
        self.settings: TenantSettings | None = None
        self.view: SettingsView | None = None
        self.deadline_ms = 0  # run the clock part on first use
        self.dirty_bots: set[str] = set()
        self.account_dirty = False

    @classmethod
    def load(cls, account_bytes: bytes, bot_bytes: Iterable[bytes] = ()) -> AccountState:
        """Rebuild from the two tables' values (``AccountUsage`` and ``BotUsage`` bytes)."""
        account = AccountUsage.from_bytes(account_bytes)
        bots = [BotUsage.from_bytes(b) for b in bot_bytes]
        return cls(account.account_id, account=account, bots=bots)

    @property
    def account_id(self) -> str:
        return self.account.account_id

    def enforcement(self, bot_id: str) -> EnforcementState | None:
        """The last enforcement state of ``bot_id`` (``*``: the account-wide one)."""
        usage = self.account if bot_id == ACCOUNT_WIDE_BOT else self.bots.get(bot_id)
        return usage.enforcement if usage is not None else None

    def take_dirty(self) -> tuple[bool, set[str]]:
        """(account changed?, ids of bots changed) since the last call; resets both."""
        dirty = self.account_dirty, self.dirty_bots
        self.account_dirty, self.dirty_bots = False, set()
        return dirty


Policies = PolicySet | Sequence[Policy]


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
    if (settings is not state.settings or policies is not state.policies_given) and _changed(
        state, policies, settings
    ):
        _full(state, policies, settings, now, states, notes)
    elif now >= state.deadline_ms:
        _expire(state, now, states, notes)

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
    if acct_fresh:
        eid = event.event_id
        recent = acct.recent_set
        if eid in recent:
            return state, _effects(states, notes, duplicate=True)
        order = acct.recent_ids
        if len(order) >= acct.recent_capacity:
            recent.discard(order.popleft())
        order.append(eid)
        recent.add(eid)
        state.account_dirty = True

    bot_id = event.bot_id
    bot = state.bots.get(bot_id)
    bot_changed = bot is None
    if bot is None:
        bot = state.bots[bot_id] = _new_bot(state, bot_id, now)
    wm = bot.watermarks.get(partition) if pos >= 0 else None
    bot_fresh = wm is None or pos > wm
    if bot_fresh:
        if pos >= 0:
            bot.watermarks[partition] = pos
        state.dirty_bots.add(bot_id)
    elif not acct_fresh:
        return state, _effects(states, notes, duplicate=True)

    view = state.view
    assert view is not None
    t = event.occurred_at_ms
    if t > now:
        t = now
    tokens = tokens_in + tokens_out
    vec = [tokens, msgs, 1 if event.conversation_started else 0, cr, 0, 0, 0, 0]
    vec[4 + ci] = cr

    # Calendar totals and rolling windows of the account, then of the bot. Ring.add is
    # inlined here: this loop is most of the per-event cost.
    acct_changed = False
    conv, cr_ix = vec[2], 4 + ci
    usage: UsageBase
    parts = ((acct, bot) if bot_fresh else (acct,)) if acct_fresh else (bot,)
    for usage in parts:
        is_acct = usage is acct
        if now >= usage.day_end_ms and usage.roll_to(now):  # a month ends with a day
            acct_changed = acct_changed or is_acct
        if t >= usage.day_start_ms:
            d = usage.day
            d[0] += tokens
            d[1] += msgs
            d[2] += conv
            d[3] += cr
            d[cr_ix] += cr
        if t >= usage.month_start_ms:
            d = usage.month
            d[0] += tokens
            d[1] += msgs
            d[2] += conv
            d[3] += cr
            d[cr_ix] += cr
        for series, ring, low, cps in usage.watch[ci]:
            v = vec[series]
            if not v:
                continue
            b = t // ring.width
            if b == ring.head:
                ring.buckets[ring.slot] += v
            elif b > ring.head:
                ring._advance(b)
                ring.buckets[ring.slot] += v
            elif b > ring.head - ring.size:
                ring.buckets[b % ring.size] += v
            else:
                continue  # older than the window
            total = ring.total + v
            ring.total = total
            if total >= low:
                scope = ACCOUNT_WIDE_BOT if is_acct else bot_id
                for cp in cps:
                    if total >= cp.threshold and fire(
                        cp, usage, scope, total, now, settings, notes
                    ):
                        if is_acct:
                            acct_changed = True
                        else:
                            bot_changed = True

    if bot_fresh and msgs and view.smart and loop_suspected(bot, event.conversation_id, t, msgs):
        loop = bot.loop_until_ms
        if loop is None or loop - now < LOOP_HOLD_MS // 2:  # arm, or extend before it lapses
            bot.loop_until_ms = now + LOOP_HOLD_MS
            bot_changed = True

    if acct_changed:
        _refresh_account(state, view, now, notes)
    if cr and acct_fresh:
        series = 4 + ci
        daily, monthly = view.limits[ci]
        if acct.day[series] >= daily or acct.month[series] >= monthly:
            if _update_caps(state, view, ci, now, notes):
                acct_changed = True
        elif ci == 0 and acct.day[4] >= view.downgrade_at and acct.downgraded_until_ms is None:
            acct.downgraded_until_ms = acct.day_end_ms
            acct_changed = True
        if (
            view.watch_risk[ci]
            and t - acct.risk_checked_ms[ci] >= RISK_CHECK_EVERY_MS
            and _check_risk(acct, view, ci, t, now)
        ):
            acct_changed = True

    if acct_changed:
        _derive_all(state, view, now, states)
        state.deadline_ms = _deadline(state)
    elif bot_changed:
        e = derive(acct, bot, view, acct.caps, now)
        if e is not None:
            states.append(e)
        state.deadline_ms = min(state.deadline_ms, _bot_deadline(bot))
    if states or notes:
        return state, _effects(states, notes)
    return state, NO_EFFECTS


def reevaluate(
    state: AccountState, policies: Policies, settings: TenantSettings, now: int
) -> tuple[AccountState, Effects]:
    """Decide again without an event (policies or settings changed, or after a restore).

    Lowering a threshold below current usage fires the policy at once; raising a cap lifts
    it at once.
    """
    states: list[EnforcementState] = []
    notes: list[Notification] = []
    _full(state, policies, settings, now, states, notes)
    return state, _effects(states, notes)


def expire(state: AccountState, now: int) -> tuple[AccountState, Effects]:
    """Apply what changes by the clock alone: blocks ending, local midnight, the 1st of the
    month, the throttle ending. Needs the policies and settings of an earlier call."""
    if state.view is None:
        raise CoreError("expire() needs settings: call reevaluate() once after loading state")
    states: list[EnforcementState] = []
    notes: list[Notification] = []
    _expire(state, now, states, notes)
    return state, _effects(states, notes)


def next_deadline(state: AccountState) -> int | None:
    """The earliest instant (ms) at which :func:`expire` would change something, or None."""
    deadline = _deadline(state)
    return None if deadline >= NEVER else deadline


def _changed(state: AccountState, policies: Policies, settings: TenantSettings) -> bool:
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


def _effects(
    states: list[EnforcementState], notes: list[Notification], *, duplicate: bool = False
) -> Effects:
    if len(states) > 1:  # one call may derive a bot twice (settings, then the event)
        states = list({e.bot_id: e for e in states}.values())
    return Effects(tuple(states), tuple(notes), duplicate)


def _new_bot(state: AccountState, bot_id: str, now: int) -> BotUsage:
    assert state.policies is not None
    bot = BotUsage(state.account.account_id, timezone=state.account.timezone, bot_id=bot_id)
    bot.roll_to(now)
    build_watch(bot, state.policies.for_bot(bot_id))
    return bot


def _full(
    state: AccountState,
    policies: Policies,
    settings: TenantSettings,
    now: int,
    states: list[EnforcementState],
    notes: list[Notification],
) -> None:
    """Adopt ``policies`` and ``settings`` and decide everything again."""
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
    view = state.view = view_of(settings)
    acct.set_timezone(settings.timezone, now)
    acct.roll_to(now)
    build_watch(acct, policies.total, view.budget_rings)
    check_all(acct, ACCOUNT_WIDE_BOT, now, settings, notes)
    for bot_id, bot in state.bots.items():
        bot.set_timezone(settings.timezone, now)
        bot.roll_to(now)
        build_watch(bot, policies.for_bot(bot_id))
        check_all(bot, bot_id, now, settings, notes)
    _refresh_account(state, view, now, notes)
    _derive_all(state, view, now, states)
    state.account_dirty = True
    state.dirty_bots.update(state.bots)
    state.deadline_ms = _deadline(state)


def _expire(
    state: AccountState, now: int, states: list[EnforcementState], notes: list[Notification]
) -> None:
    view = state.view
    assert view is not None
    acct = state.account
    changed_bots: list[BotUsage] = []
    for bot in state.bots.values():
        changed = False
        if bot.blocked_until_ms is not None and bot.blocked_until_ms <= now:
            bot.blocked_until_ms = bot.block_policy_id = None
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
    if _refresh_account(state, view, now, notes) or rolled:
        _derive_all(state, view, now, states)
    else:
        for bot in changed_bots:
            e = derive(acct, bot, view, acct.caps, now)
            if e is not None:
                states.append(e)
    state.deadline_ms = _deadline(state)


def _refresh_account(
    state: AccountState, view: SettingsView, now: int, notes: list[Notification]
) -> bool:
    """Recompute every account-level input of enforcement; True if any changed."""
    acct = state.account
    changed = False
    caps = {}
    for ci, cat in enumerate(CATEGORIES):
        status = cap_status(view, ci, acct)
        if status is not None:
            caps[cat] = status
            if acct.caps.get(cat) != status:
                notes.append(_cap_note(view, cat, status, now))
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
        changed = True
    if changed:
        state.account_dirty = True
    return changed


def _update_caps(
    state: AccountState, view: SettingsView, ci: int, now: int, notes: list[Notification]
) -> bool:
    """Credits of category ``ci`` reached a cap: record it (and the downgrade, for text)."""
    acct = state.account
    changed = False
    status = cap_status(view, ci, acct)
    if status is not None:
        cat = CATEGORIES[ci]
        if acct.caps.get(cat) != status:
            acct.caps = {**acct.caps, cat: status}
            notes.append(_cap_note(view, cat, status, now))
            changed = True
    if ci == 0 and acct.downgraded_until_ms is None:
        downgraded = downgraded_until(view, acct)
        if downgraded is not None:
            acct.downgraded_until_ms = downgraded
            changed = True
    return changed


def _check_risk(acct: AccountUsage, view: SettingsView, ci: int, t: int, now: int) -> bool:
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


def _cap_note(view: SettingsView, cat: str, status: CapStatus, now: int) -> Notification:
    return cap_reached(
        view.settings, cat, status.period, status.period_key, status.resumes_at_ms, now
    )


def _derive_all(
    state: AccountState, view: SettingsView, now: int, out: list[EnforcementState]
) -> None:
    acct = state.account
    caps = acct.caps
    e = derive(acct, None, view, caps, now)
    if e is not None:
        out.append(e)
    for bot in state.bots.values():
        e = derive(acct, bot, view, caps, now)
        if e is not None:
            out.append(e)


def _bot_deadline(bot: BotUsage) -> int:
    deadline = NEVER
    for t in (bot.blocked_until_ms, bot.loop_until_ms):
        if t is not None and t < deadline:
            deadline = t
    return deadline


def _deadline(state: AccountState) -> int:
    acct = state.account
    deadline = NEVER
    for t in (acct.blocked_until_ms, acct.risk_until_ms, acct.downgraded_until_ms):
        if t is not None and t < deadline:
            deadline = t
    for cap in acct.caps.values():
        deadline = min(deadline, cap.resumes_at_ms)
    for bot in state.bots.values():
        deadline = min(deadline, _bot_deadline(bot))
    return deadline
