"""Usage state per (account, bot) and per account: calendar totals, rings, idempotence, bytes.

Series (what is counted), by index: 0 tokens (in + out), 1 messages, 2 conversations
(started), 3 credits of every category, 4-7 credits of text, vision, audio, documents.
Calendar totals are kept for the tenant's current local day and month by event time; an event
from an earlier day than the current one (a late arrival) is not added to the day total.
Rolling windows exist only for the (series, window) pairs current policies and the smart
throttle need; a window starts counting when first needed.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from capstream.core.codec import Reader, Writer
from capstream.core.errors import StateFormatError
from capstream.core.models import (
    CATEGORY_INDEX,
    CapStatus,
    EnforcementState,
    Metric,
)
from capstream.core.periods import day_period, month_period
from capstream.core.windows import Ring

if TYPE_CHECKING:
    from capstream.core.policies import CompiledPolicy

N_SERIES = 8
SERIES_CREDITS = 3
SERIES_BY_CATEGORY = 4
N_CATEGORIES = 4
_METRIC_SERIES = {Metric.TOKENS: 0, Metric.MESSAGES: 1, Metric.CONVERSATIONS: 2}
_BOT_HEADER = b"CSUB\x02"
_ACCOUNT_HEADER = b"CSUA\x02"
_BOT_HEADER_V1 = b"CSUB\x01"
_ACCOUNT_HEADER_V1 = b"CSUA\x01"
"""v1 (still read): rings stored oldest bucket first, recent event ids one by one."""
DEFAULT_RECENT_IDS = 512

WatchEntry = tuple[int, Ring, int, tuple["CompiledPolicy", ...]]
"""(series, ring, lowest threshold of its policies, policies) of one watched window."""


def series_of(metric: str, category: str | None) -> int:
    """Index of the series a policy on ``metric`` (and credits ``category``) watches."""
    if metric == Metric.CREDITS:
        return SERIES_CREDITS if category is None else 4 + CATEGORY_INDEX[category]
    return _METRIC_SERIES[Metric(metric)]


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
    day: list[int] = field(default_factory=lambda: [0] * N_SERIES)
    """Today's totals per series (tenant's local day)."""
    month_base: list[int] = field(default_factory=lambda: [0] * N_SERIES)
    """This local month's totals before today (plus late events from earlier days); the
    month's total is ``month_base + day`` (:attr:`month`), so an event adds to one list."""
    rings: dict[tuple[int, int], Ring] = field(default_factory=dict)
    watermarks: dict[int, int] = field(default_factory=dict)
    """Per source partition, the highest position applied (offset * 65536 + index)."""
    alerted: dict[str, int] = field(default_factory=dict)
    """Per policy, the last fixed window (now // window) an alert was sent for."""
    blocked_until_ms: int | None = None
    block_policy_id: str | None = None
    enforcement: EnforcementState | None = None
    """The last enforcement state emitted for this bot (or the account-wide one)."""
    watched: list[WatchEntry] = field(default_factory=list, compare=False, repr=False)
    """Every watched window (transient; rebuilt from the policies in use)."""
    watch: list[list[WatchEntry]] = field(default_factory=list, compare=False, repr=False)
    """Per category index, the watched windows an event of that category can add to."""
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
        self._set_day(now)
        self.day = [0] * N_SERIES
        return True

    def set_timezone(self, tz: str, now: int) -> None:
        """Switch zone: totals carry over when ``now``'s period keys are unchanged.

        A different local month starts both totals at zero; a different local day in the
        same month folds today's totals into the month's.
        """
        if tz == self.timezone:
            return
        self.timezone = tz
        old_day, old_month = self.day_key, self.month_key
        self._set_day(now)
        self._set_month(now)
        if self.month_key != old_month:
            self.month_base = [0] * N_SERIES
            self.day = [0] * N_SERIES
        elif self.day_key != old_day:
            self.month_base = self.month
            self.day = [0] * N_SERIES

    def _set_day(self, t: int) -> None:
        p = day_period(t, self.timezone)
        self.day_key, self.day_start_ms, self.day_end_ms = p.key, p.start_ms, p.end_ms

    def _set_month(self, t: int) -> None:
        p = month_period(t, self.timezone)
        self.month_key, self.month_start_ms, self.month_end_ms = p.key, p.start_ms, p.end_ms

    def _write_common(self, w: Writer) -> None:
        w.text(self.account_id)
        w.text(self.timezone)
        for key, start, end in (
            (self.day_key, self.day_start_ms, self.day_end_ms),
            (self.month_key, self.month_start_ms, self.month_end_ms),
        ):
            w.text(key)
            w.i64(start)
            w.i64(end)
        w.i64s(array("q", self.day))
        w.i64s(array("q", self.month_base))
        w.u32(len(self.watermarks))
        for p, pos in self.watermarks.items():
            w.i64(p)
            w.i64(pos)
        w.u32(len(self.alerted))
        for pid, epoch in self.alerted.items():
            w.text(pid)
            w.i64(epoch)
        w.opt_i64(self.blocked_until_ms)
        w.opt_text(self.block_policy_id)
        w.u32(len(self.rings))
        for (series, window_ms), ring in self.rings.items():
            w.u8(series)
            w.i64(window_ms)
            w.i64(ring.head)
            w.i64s(ring.to_array())
        e = self.enforcement
        cached = self.encoded_enforcement
        if cached is None or cached[0] is not e:
            piece = Writer(b"")
            _write_enforcement(piece, e)
            cached = self.encoded_enforcement = (e, piece.bytes()) if e is not None else None
        w.raw(cached[1] if cached is not None else b"\x00")

    def _read_common(self, r: Reader, *, v1: bool = False) -> None:
        self.timezone = r.text()
        self.day_key, self.day_start_ms, self.day_end_ms = r.text(), r.i64(), r.i64()
        self.month_key, self.month_start_ms, self.month_end_ms = r.text(), r.i64(), r.i64()
        self.day = r.i64s().tolist()
        self.month_base = r.i64s().tolist()
        if len(self.day) != N_SERIES or len(self.month_base) != N_SERIES:
            raise StateFormatError("calendar totals have the wrong length")
        self.watermarks = {r.i64(): r.i64() for _ in range(r.u32())}
        self.alerted = {r.text(): r.i64() for _ in range(r.u32())}
        self.blocked_until_ms = r.opt_i64()
        self.block_policy_id = r.opt_text()
        rings: dict[tuple[int, int], Ring] = {}
        for _ in range(r.u32()):
            series, window_ms, head = r.u8(), r.i64(), r.i64()
            try:
                restore = Ring.restore_oldest_first if v1 else Ring.restore
                rings[(series, window_ms)] = restore(window_ms, head, r.i64s())
            except ValueError as exc:
                raise StateFormatError(f"a rolling window is corrupt: {exc}") from exc
        self.rings = rings
        self.enforcement = _read_enforcement(r)


@dataclass(slots=True)
class BotUsage(UsageBase):
    """Usage state of one bot (the per-bot table's value)."""

    bot_id: str = ""
    loop_until_ms: int | None = None
    """Smart throttle: a conversation of this bot looked like a loop; throttled until then."""
    loops: dict[str, list[int]] = field(default_factory=dict, compare=False, repr=False)
    """Per conversation: recent message timestamps (transient; not serialised)."""

    def to_bytes(self) -> bytes:
        """Versioned compact encoding (``CSUB`` v2)."""
        w = Writer(_BOT_HEADER)
        w.text(self.bot_id)
        self._write_common(w)
        w.opt_i64(self.loop_until_ms)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BotUsage:
        """Decode :meth:`to_bytes` output; raises ``StateFormatError`` on bad data."""
        v1 = data.startswith(_BOT_HEADER_V1)
        r = Reader(data, _BOT_HEADER_V1 if v1 else _BOT_HEADER)
        bot_id = r.text()
        u = cls(account_id=r.text(), bot_id=bot_id)
        u._read_common(r, v1=v1)
        u.loop_until_ms = r.opt_i64()
        r.done()
        return u


@dataclass(slots=True)
class AccountUsage(UsageBase):
    """Usage state of a whole account (the per-account table's value)."""

    recent_capacity: int = DEFAULT_RECENT_IDS
    recent_ids: deque[str] = field(default_factory=deque)
    """The last ``recent_capacity`` event ids applied, oldest first (drops client resends)."""
    recent_set: set[str] = field(default_factory=set, compare=False, repr=False)
    """The same ids as a set, for membership tests."""
    caps: dict[str, CapStatus] = field(default_factory=dict)
    """Categories capped now, as last derived."""
    downgraded_until_ms: int | None = None
    risk_until_ms: int | None = None
    """Smart throttle: the budget looked at risk; throttled until then."""
    risk_checked_ms: list[int] = field(
        default_factory=lambda: [0] * N_CATEGORIES, compare=False, repr=False
    )
    """Per category, when the budget risk was last checked (transient)."""

    def to_bytes(self) -> bytes:
        """Versioned compact encoding (``CSUA`` v2)."""
        w = Writer(_ACCOUNT_HEADER)
        self._write_common(w)
        w.u32(self.recent_capacity)
        w.texts(list(self.recent_ids))
        w.u32(len(self.caps))
        for cat, cap in self.caps.items():
            _write_cap(w, cat, cap)
        w.opt_i64(self.downgraded_until_ms)
        w.opt_i64(self.risk_until_ms)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> AccountUsage:
        """Decode :meth:`to_bytes` output; raises ``StateFormatError`` on bad data."""
        v1 = data.startswith(_ACCOUNT_HEADER_V1)
        r = Reader(data, _ACCOUNT_HEADER_V1 if v1 else _ACCOUNT_HEADER)
        u = cls(account_id=r.text())
        u._read_common(r, v1=v1)
        u.recent_capacity = r.u32()
        u.recent_ids = deque(r.text() for _ in range(r.u32())) if v1 else deque(r.texts())
        u.recent_set = set(u.recent_ids)
        u.caps = dict(_read_cap(r) for _ in range(r.u32()))
        u.downgraded_until_ms = r.opt_i64()
        u.risk_until_ms = r.opt_i64()
        r.done()
        return u


def _write_cap(w: Writer, cat: str, cap: CapStatus) -> None:
    w.text(cat)
    w.text(cap.period)
    w.text(cap.period_key)
    w.i64(cap.resumes_at_ms)


def _read_cap(r: Reader) -> tuple[str, CapStatus]:
    return r.text(), CapStatus(r.text(), r.text(), r.i64())


def _write_enforcement(w: Writer, e: EnforcementState | None) -> None:
    if e is None:
        w.u8(0)
        return
    w.u8(1)
    w.text(e.account_id)
    w.text(e.bot_id)
    w.i64(e.version)
    w.i64(e.updated_at_ms)
    w.opt_i64(e.blocked_until_ms)
    w.opt_text(e.block_policy_id)
    w.text(e.model)
    w.opt_i64(e.downgraded_until_ms)
    w.i64(e.batching_interval_s)
    w.opt_i64(e.throttled_until_ms)
    w.opt_text(e.throttle_reason)
    w.u32(len(e.caps))
    for cat, cap in e.caps.items():
        _write_cap(w, cat, cap)
    for s in (e.plan, e.fallback_text_daily, e.fallback_text_monthly, e.premium_model):
        w.text(s)


def _read_enforcement(r: Reader) -> EnforcementState | None:
    if not r.u8():
        return None
    account_id, bot_id, version, updated = r.text(), r.text(), r.i64(), r.i64()
    blocked, block_pid, model, downgraded = r.opt_i64(), r.opt_text(), r.text(), r.opt_i64()
    batching, throttled, reason = r.i64(), r.opt_i64(), r.opt_text()
    caps = dict(_read_cap(r) for _ in range(r.u32()))
    plan, fb_daily, fb_monthly, premium = r.text(), r.text(), r.text(), r.text()
    return EnforcementState(
        account_id, bot_id, version, updated, blocked, block_pid, model, downgraded,
        batching, throttled, reason, caps, plan, fb_daily, fb_monthly, premium,
    )  # fmt: skip
