"""What bot and account usage states share: calendar totals, rings, watermarks, policy state.

Series (what is counted) are indexed as in :mod:`capstream.core.series`. Calendar totals are
kept for the tenant's current local day, week and month by event time; an event from an earlier
day than the current one (a late arrival) is not added to the day total. Rolling windows
exist only for the (series, window) pairs current policies and the smart throttle need; a
window starts counting when first needed. The byte format is in
:mod:`capstream.core.usage_bytes`; the two kinds (bot, account) in :mod:`capstream.core.usage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from capstream.core.models.decisions import EnforcementState
from capstream.core.models.vocabulary import NEVER
from capstream.core.periods import day_period, month_period, week_period
from capstream.core.series import N_SERIES, WatchEntry
from capstream.core.windows import Ring

CAP_WARN: Final = "\x1fcap\x1f"
"""Prefix of a cap warning level's key in ``AccountUsage.alerted`` (see
``caps.cap_warn_key``); its value is the start of the period it was sent in."""


@dataclass(slots=True)
class UsageBase:
    """What bot and account usage share: calendar totals, rings, watermarks, policy state."""

    account_id: str
    timezone: str = "UTC"
    day_key: str = ""
    day_start_ms: int = 0
    day_end_ms: int = 0
    month_key: str = ""
    month_start_ms: int = 0
    month_end_ms: int = 0
    week_key: str = ""
    week_start_ms: int = 0
    week_end_ms: int = 0
    day: list[int] = field(default_factory=lambda: [0] * N_SERIES)
    """Today's totals per series (tenant's local day)."""
    month_base: list[int] = field(default_factory=lambda: [0] * N_SERIES)
    """This local month's totals before today (plus late events from earlier days); the
    month's total is ``month_base + day`` (:attr:`month`), so an event adds to one list."""
    week_base: list[int] = field(default_factory=lambda: [0] * N_SERIES)
    """This local week's totals before today (plus late events from earlier days of the
    week); the week's total is ``week_base + day``. Kept since ``CSUA`` v4 / ``CSUB`` v5: a
    state read from an older format counts its week from the day it was written in."""
    rings: dict[tuple[int, int], Ring] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)
    """Per source partition, the highest position applied (offset * 65536 + index)."""
    alerted: dict[str, int] = field(default_factory=dict)
    """Per policy, the (event) time its last alert was sent at; per policy warning level
    (``series.warn_key``) the same; per cap warning level (``caps.cap_warn_key``, account
    only) the start of the local day or month it was sent in. Warning levels share the
    alerts' encoding, so states written before them read unchanged."""
    blocks: dict[str, int] = field(default_factory=dict)
    """Per policy whose block was started (and the pause not yet over), when it ends."""
    blocked_until_ms: int | None = None
    """When the pause ends: the latest of ``blocks`` (None: not paused)."""
    block_policy_id: str | None = None
    """The policy whose block ends at ``blocked_until_ms``."""
    legacy_alerted: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """Alerts read from a v1/v2 state: per policy, the fixed-window number it was sent in
    (transient: ``build_watch`` turns them into times once it knows the windows)."""
    lifted: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """Per policy, the end of its block that a person lifted (resumed the bot, or disabled
    or deleted the policy): that block no longer pauses, though its policy stays quiet until
    it ends (transient; recomputed by ``core.resume.lift_blocks``)."""
    enforcement: EnforcementState | None = None
    """The last enforcement state emitted for this bot (or the account-wide one)."""
    watched: list[WatchEntry] = field(default_factory=list, compare=False, repr=False)
    """Every watched window (transient; rebuilt from the policies in use)."""
    watch: list[list[WatchEntry]] = field(default_factory=list, compare=False, repr=False)
    """Per category index, the watched windows an event of that category can add to; their
    lowest threshold leaves out the policies in :attr:`quiet`."""
    quiet: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """Per policy that has acted and can do nothing more for a while (its alert sent for
    this fixed window, its block running): until when (transient; see policies.mute)."""
    quiet_from_ms: int = field(default=-NEVER, compare=False, repr=False)
    quiet_until_ms: int = field(default=NEVER, compare=False, repr=False)
    """While ``now`` is in [quiet_from_ms, quiet_until_ms) the policies in :attr:`quiet`
    stay quiet (the latest ``now`` one was made quiet at, the earliest end of one);
    outside, ``policies.unmute`` (transient)."""
    encoded_enforcement: tuple[EnforcementState, bytes] | None = field(
        default=None, compare=False, repr=False
    )
    """The last enforcement state serialised, with its bytes (transient; reused while the
    state is unchanged, which is most flushes)."""

    @property
    def month(self) -> list[int]:
        """This local month's totals per series (earlier days plus today)."""
        return [b + d for b, d in zip(self.month_base, self.day, strict=True)]

    def roll_to(self, now: int) -> bool:
        """Start a new local day (and month) if ``now`` is past the current one.

        Today's totals fold into the month's, or both start at zero in a new month.
        True if a period rolled.
        """
        if now < self.day_end_ms:
            return False
        if now < self.month_end_ms:
            self.month_base = [b + d for b, d in zip(self.month_base, self.day, strict=True)]
        else:
            self._set_month(now)
            self.month_base = [0] * N_SERIES
        if now < self.week_end_ms:
            self.week_base = [b + d for b, d in zip(self.week_base, self.day, strict=True)]
        else:
            self.set_week(now)
            self.week_base = [0] * N_SERIES
        self._set_day(now)
        self.day = [0] * N_SERIES
        return True

    def take_periods(self, other: UsageBase) -> None:
        """Start counting in ``other``'s current local day, week and month (same zone), with
        zero totals: what :meth:`roll_to` would set for an instant inside all three, without
        computing them from the calendar again (a new bot takes its account's)."""
        self.day_key, self.day_start_ms, self.day_end_ms = (
            other.day_key, other.day_start_ms, other.day_end_ms
        )  # fmt: skip
        self.week_key, self.week_start_ms, self.week_end_ms = (
            other.week_key, other.week_start_ms, other.week_end_ms
        )  # fmt: skip
        self.month_key, self.month_start_ms, self.month_end_ms = (
            other.month_key, other.month_start_ms, other.month_end_ms
        )  # fmt: skip

    def set_timezone(self, tz: str, now: int) -> None:
        """Switch zone: totals carry over when ``now``'s period keys are unchanged.

        A different local month starts both totals at zero; a different local day in the
        same month folds today's totals into the month's.
        """
        if tz == self.timezone:
            return
        self.timezone = tz
        old_day, old_week, old_month = self.day_key, self.week_key, self.month_key
        self._set_day(now)
        self.set_week(now)
        self._set_month(now)
        if self.week_key != old_week:
            self.week_base = [0] * N_SERIES
        elif self.day_key != old_day:
            self.week_base = [b + d for b, d in zip(self.week_base, self.day, strict=True)]
        if self.month_key != old_month:
            self.month_base = [0] * N_SERIES
            self.day = [0] * N_SERIES
        elif self.day_key != old_day:
            self.month_base = self.month
            self.day = [0] * N_SERIES

    def calendar_total(self, series: int, period: int, t: int) -> int:
        """The total of ``series`` in the current local day (``period`` 1), week (2) or
        month (3), or -1 if ``t`` is before that period (a late event decides nothing)."""
        day = self.day[series]
        if period == 1:
            return day if t >= self.day_start_ms else -1
        if period == 2:
            return self.week_base[series] + day if t >= self.week_start_ms else -1
        return self.month_base[series] + day if t >= self.month_start_ms else -1

    def period_bounds(self, period: int) -> tuple[int, int]:
        """Start and end of the current local day (``period`` 1), week (2) or month (3)."""
        if period == 1:
            return self.day_start_ms, self.day_end_ms
        if period == 2:
            return self.week_start_ms, self.week_end_ms
        return self.month_start_ms, self.month_end_ms

    def set_week(self, t: int) -> None:
        """Make the local week holding ``t`` the current one (its totals are not touched)."""
        p = week_period(t, self.timezone)
        self.week_key, self.week_start_ms, self.week_end_ms = p.key, p.start_ms, p.end_ms

    def _set_day(self, t: int) -> None:
        p = day_period(t, self.timezone)
        self.day_key, self.day_start_ms, self.day_end_ms = p.key, p.start_ms, p.end_ms

    def _set_month(self, t: int) -> None:
        p = month_period(t, self.timezone)
        self.month_key, self.month_start_ms, self.month_end_ms = p.key, p.start_ms, p.end_ms
