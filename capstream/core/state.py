"""One account's aggregate state and the effects an evaluation returns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from capstream.core.enforcement import derive, in_force
from capstream.core.errors import CoreError
from capstream.core.models import (
    NEVER,
    EnforcementState,
    Notification,
    Policy,
    TenantSettings,
    ValueBlock,
)
from capstream.core.policies import PolicySet, unmute
from capstream.core.settings_view import SettingsView
from capstream.core.usage import DEFAULT_RECENT_IDS, AccountUsage, BotUsage

Policies = PolicySet | Sequence[Policy]


@dataclass(slots=True, init=False)
class Effects:
    """What an evaluation changed: enforcement states to publish, notifications to send and
    attribute values blocked (``value_blocks``: a per-attribute policy's block started).

    Read-only by convention (``__init__`` by hand: compiled, unlike a generated one)."""

    enforcement: tuple[EnforcementState, ...]
    notifications: tuple[Notification, ...]
    duplicate: bool
    """True when the event was a replay or a resend and changed nothing."""
    value_blocks: tuple[ValueBlock, ...]

    def __init__(
        self,
        enforcement: tuple[EnforcementState, ...] = (),
        notifications: tuple[Notification, ...] = (),
        duplicate: bool = False,
        value_blocks: tuple[ValueBlock, ...] = (),
    ) -> None:
        self.enforcement = enforcement
        self.notifications = notifications
        self.duplicate = duplicate
        self.value_blocks = value_blocks

    def __bool__(self) -> bool:
        return bool(self.enforcement or self.notifications or self.value_blocks)


NO_EFFECTS: Final = Effects()


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
        """What gateways hold for ``bot_id``: its last enforcement state, or the account's
        (``*``) when it has none of its own (it follows the account, or is unknown)."""
        bot = self.bots.get(bot_id)
        e = bot.enforcement if bot is not None else None
        return e if e is not None and not e.follows_account else self.account.enforcement

    def in_force(self, bot_id: str, at: int) -> EnforcementState | None:
        """What holds for ``bot_id`` (``*`` or a bot with no state: the account-wide state)
        at instant ``at`` if no other event arrives, read-only: blocks, caps, the downgrade
        and throttles whose end is after ``at`` (see :func:`enforcement.in_force`). None
        before the first evaluation (no settings yet)."""
        if self.view is None:
            return None
        return in_force(self.account, self.bots.get(bot_id), self.view, at)

    def take_dirty(self) -> tuple[bool, set[str]]:
        """(account changed?, ids of bots changed) since the last call; resets both."""
        dirty = self.account_dirty, self.dirty_bots
        self.account_dirty, self.dirty_bots = False, set()
        return dirty


def collect_effects(
    states: list[EnforcementState],
    notes: list[Notification],
    *,
    duplicate: bool = False,
    view: SettingsView | None = None,
    value_blocks: list[ValueBlock] | None = None,
) -> Effects:
    """Freeze what a call collected; a bot derived twice in one call keeps its last state.
    Notifications of the kinds the tenant switched off (``view.muted``) are left out."""
    if notes and view is not None and view.muted:
        notes = [n for n in notes if n.kind not in view.muted]
    if len(states) > 1:  # one call may derive a bot twice (settings, then the event)
        states = list({e.bot_id: e for e in states}.values())
    blocks = tuple(value_blocks) if value_blocks else ()
    return Effects(tuple(states), tuple(notes), duplicate, blocks)


def derive_all(
    state: AccountState, view: SettingsView, now: int, out: list[EnforcementState]
) -> None:
    """Derive every bot's state and the account-wide one; append those that changed."""
    acct = state.account
    caps = acct.caps
    e = derive(acct, None, view, caps, now)
    if e is not None:
        out.append(e)
    for bot in state.bots.values():
        e = derive(acct, bot, view, caps, now)
        if e is not None:
            out.append(e)


def unmute_all(state: AccountState) -> None:
    """Check every policy of the account and its bots again on the next event (each usage
    state's quiet policies otherwise stay quiet until its own ``quiet_until_ms``: evaluate
    unmutes a usage state when it reads it outside that window)."""
    unmute(state.account)
    for bot in state.bots.values():
        unmute(bot)


def bot_deadline(bot: BotUsage) -> int:
    """When the bot's own block or loop throttle ends (``NEVER``: nothing pending)."""
    deadline = NEVER
    for t in (bot.blocked_until_ms, bot.loop_until_ms):
        if t is not None and t < deadline:
            deadline = t
    return deadline


def deadline(state: AccountState) -> int:
    """The earliest instant the clock alone changes something (``NEVER``: nothing)."""
    acct = state.account
    deadline = NEVER
    for t in (acct.blocked_until_ms, acct.risk_until_ms, acct.downgraded_until_ms):
        if t is not None and t < deadline:
            deadline = t
    for cap in acct.caps.values():
        deadline = min(deadline, cap.resumes_at_ms)
    for bot in state.bots.values():
        deadline = min(deadline, bot_deadline(bot))
    return deadline
