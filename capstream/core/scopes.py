"""Per-attribute policies (``Policy.per``): one rolling window per value of an event attribute
(end user, API key, team, model), within the policy's bot or account scope.

Per event and per-attribute policy that applies to the event's bot: the value is read (the
event's ``attributes[per]``, or its ``model``), an event without it (or with another value
than ``per_value``) is not counted, else one dict lookup finds the value's
:class:`~capstream.core.scoped_state.ScopedCount` (made on first sight, see
:func:`~capstream.core.scoped_state.make_room` for the bound), the amount is added to its
ring and the policy fires for that value alone: its alert (once per full window per value,
naming the value) and its block (its own end per value, recorded in the counter; the bot's
enforcement state is not touched). Soft warning levels are not sent per value.
"""

from __future__ import annotations

from capstream.core.models.decisions import Notification, ValueBlock
from capstream.core.models.event import UsageEvent
from capstream.core.models.tenant import TenantSettings
from capstream.core.models.vocabulary import ACCOUNT_WIDE_BOT, PolicyAttribute, PolicyScope
from capstream.core.notifications import policy_alert
from capstream.core.scoped_state import SEP, ScopedCount, make_room, scoped_key
from capstream.core.series import (
    SERIES_CREDITS,
    SERIES_MESSAGES,
    SERIES_TOKENS,
    CompiledPolicy,
)
from capstream.core.usage import AccountUsage
from capstream.core.windows import Ring


class ScopedPolicy:
    """A per-attribute policy compiled for the hot path."""

    __slots__ = ("attribute", "cp", "model", "only", "prefix", "total")

    def __init__(self, cp: CompiledPolicy) -> None:
        p = cp.policy
        assert p.per is not None
        self.cp = cp
        self.attribute: str = p.per.value
        self.model: bool = p.per == PolicyAttribute.MODEL
        """The value is the event's ``model`` (not one of its attributes)."""
        self.only: str | None = p.per_value
        self.total: bool = p.scope == PolicyScope.ACCOUNT_TOTAL
        """Counted over the account's bots together (key bot ``*``), else per bot."""
        self.prefix: str = scoped_key(cp.policy_id, self.attribute, "", "")[:-1]
        """Its counters' keys start with this (the policy and the attribute)."""


def count_scoped(
    acct: AccountUsage,
    sps: tuple[ScopedPolicy, ...],
    event: UsageEvent,
    amounts: tuple[int, int, int, int, int],
    t: int,
    now: int,
    settings: TenantSettings | None,
    notes: list[Notification],
) -> list[ValueBlock] | None:
    """Count ``event`` in the per-attribute policies ``sps`` of its bot and fire those its
    value crossed. ``amounts``: the event's tokens, messages, conversations, credits, and its
    category's series index (a credits policy of another category does not count it). A
    Returns the values' blocks that started (gateways refuse those values), None if none
    did (no list made per event)."""
    blocks: list[ValueBlock] | None = None
    tokens, msgs, conv, cr, cr_series = amounts
    scoped = acct.scoped
    for sp in sps:
        cp = sp.cp
        series = cp.series
        if series >= SERIES_CREDITS:  # all credits, or one category's (SERIES_BY_CATEGORY)
            if series > SERIES_CREDITS and series != cr_series:
                continue
            v = cr
        elif series == SERIES_TOKENS:
            v = tokens
        else:
            v = msgs if series == SERIES_MESSAGES else conv
        if not v:
            continue
        value = event.model if sp.model else event.attributes.get(sp.attribute, "")
        if not value or (sp.only is not None and value != sp.only):
            continue
        bot = ACCOUNT_WIDE_BOT if sp.total else event.bot_id
        key = f"{sp.prefix}{bot}{SEP}{value}"
        c = scoped.pop(key, None)  # popped and put back: the dict's end is the newest used
        if c is None:
            acct.scoped_evicted += make_room(scoped, acct.scoped_capacity, now)
            c = ScopedCount(Ring(cp.window_ms), t, -1, 0)
        scoped[key] = c
        if t > c.last_ms:
            c.last_ms = t
        total = c.ring.add(t, v)
        if total >= cp.threshold:
            vb = fire_value(cp, c, bot, value, total, t, now, settings, notes, event.account_id)
            if vb is not None:
                if blocks is None:
                    blocks = []
                blocks.append(vb)
    return blocks


def fire_value(
    cp: CompiledPolicy,
    c: ScopedCount,
    bot_id: str,
    value: str,
    total: int,
    at: int,
    now: int,
    settings: TenantSettings | None,
    notes: list[Notification],
    account_id: str,
) -> ValueBlock | None:
    """A value's window crossed at ``at``: its block starts unless one of its own runs (the
    :class:`ValueBlock` returned, else None), its alert goes out unless one went out less
    than a window ago."""
    blocked: int | None = None
    started: ValueBlock | None = None
    if cp.block_ms and c.blocked_until_ms <= at:
        until = at + cp.block_ms
        if until > now:
            c.blocked_until_ms = until
            blocked = until
            attribute = cp.policy.per.value if cp.policy.per is not None else ""
            started = ValueBlock(account_id, bot_id, attribute, value, until, cp.policy_id)
    if cp.alerts and (c.alerted_ms < 0 or at >= c.alerted_ms + cp.window_ms):
        c.alerted_ms = at
        if blocked is None and c.blocked_until_ms > now:
            blocked = c.blocked_until_ms
        notes.append(policy_alert(cp.policy, bot_id, total, at, now, settings, blocked, -1, value))
    return started


def keep_policies(acct: AccountUsage, sps: tuple[ScopedPolicy, ...]) -> None:
    """Drop the counters of per-attribute policies no longer in force, and those of a policy
    whose window or attribute changed (they count afresh)."""
    windows = {sp.prefix: sp.cp.window_ms for sp in sps}
    scoped = acct.scoped
    stale = [
        k for k, c in scoped.items()
        if windows.get(k[: k.index(SEP, k.index(SEP) + 1) + 1]) != c.ring.window_ms
    ]  # fmt: skip
    for k in stale:
        del scoped[k]
