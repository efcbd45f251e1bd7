"""Usage state per (account, bot) and per account: calendar totals, rings, idempotence, bytes.

Series (what is counted), by index: 0 tokens (in + out), 1 messages, 2 conversations
(started), 3 credits of every category, 4-7 credits of text, vision, audio, documents.
Calendar totals are kept for the tenant's current local day and month by event time; an event
from an earlier day than the current one (a late arrival) is not added to the day total.
Rolling windows exist only for the (series, window) pairs current policies and the smart
throttle need; a window starts counting when first needed.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from capstream.core.codec import Reader, Writer, opt, unopt
from capstream.core.errors import StateFormatError
from capstream.core.models import (
    CATEGORY_INDEX,
    NEVER,
    CapStatus,
    EnforcementState,
    Metric,
)
from capstream.core.periods import day_period, month_period
from capstream.core.usage_v1 import (
    ACCOUNT_HEADER_V1,
    BOT_HEADER_V1,
    read_account_v1,
    read_bot_v1,
)
from capstream.core.windows import Ring

if TYPE_CHECKING:
    from capstream.core.policies import CompiledPolicy

N_SERIES = 8
SERIES_CREDITS = 3
SERIES_BY_CATEGORY = 4
N_CATEGORIES = 4
_METRIC_SERIES = {Metric.TOKENS: 0, Metric.MESSAGES: 1, Metric.CONVERSATIONS: 2}
_BOT_HEADER = b"CSUB\x04"
_BOT_HEADER_V3 = b"CSUB\x03"
_ACCOUNT_HEADER = b"CSUA\x03"
_BOT_HEADER_V2 = b"CSUB\x02"
_ACCOUNT_HEADER_V2 = b"CSUA\x02"
# v2/v3 layout: texts in one piece (Writer.texts), fixed fields in one struct or int64 list,
# rings as laid out in memory, the enforcement state's bytes cached while unchanged.
_COMMON_INTS_V2 = 6 + 2 * N_SERIES + 3
"""int64s first in a v2 value: day start/end, month start/end, blocked until, has a block
policy, day and month-base totals, how many watermarks, alerts and rings follow."""
_COMMON_INTS = _COMMON_INTS_V2 + 1
"""v3: the same, then how many per-policy blocks follow. v3 also stores alert times (ms)
where v2 stored fixed-window numbers (``now // window``), and each running policy block
(policy ids among the texts, their ends after the alert times)."""
_ACCOUNT_TAIL = struct.Struct("<I3q")
"""recent-id capacity, downgraded until, risk until, how many caps."""
_ENFORCEMENT = struct.Struct("<3qB3qBI")
"""version, updated at, blocked until, has a block policy, downgraded until, batching,
throttled until, has a throttle reason, how many caps."""
_PRESENT = struct.Struct("<B")
_LOOP_RING_MAX = 21
"""The longest loop-detection ring (``caps.loop_suspected``: the next slot, 20 times)."""
_Q = struct.Struct("<q")
DEFAULT_RECENT_IDS = 512
CAP_WARN = "\x1fcap\x1f"
"""Prefix of a cap warning level's key in ``AccountUsage.alerted`` (see
``caps.cap_warn_key``); its value is the start of the period it was sent in."""


class WatchEntry:
    """One watched window: the series it counts, its ring, the lowest threshold of its
    policies (in ``watch``: of those not quiet) and the policies.

    A class rather than a tuple: compiled, the per-event loop reads its fields directly
    instead of unpacking and unboxing a tuple."""

    __slots__ = ("cps", "low", "ring", "series")

    def __init__(self, series: int, ring: Ring, low: int, cps: tuple[CompiledPolicy, ...]) -> None:
        self.series = series
        self.ring = ring
        self.low = low
        self.cps = cps


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
    """Per policy, the (event) time its last alert was sent at; per policy warning level
    (``policies.warn_key``) the same; per cap warning level (``caps.cap_warn_key``, account
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

    def _write_common(self, w: Writer, *lead: str) -> None:
        # Texts in one piece, every int in one struct (a struct packs a list of ints into
        # bytes 2x faster than an array is built from it).
        bpid = self.block_policy_id
        alerted, rings, marks = self.alerted, self.rings, self.watermarks
        blocks = self.blocks
        w.texts(
            [*lead, self.account_id, self.timezone, self.day_key, self.month_key, bpid or "",
             *alerted, *blocks]
        )  # fmt: skip
        ints = [
            self.day_start_ms, self.day_end_ms, self.month_start_ms, self.month_end_ms,
            opt(self.blocked_until_ms), bpid is not None, *self.day, *self.month_base,
            len(marks), len(alerted), len(rings), len(blocks),
        ]  # fmt: skip
        for mark in marks.items():
            ints += mark
        ints += alerted.values()
        ints += blocks.values()
        for (series, window_ms), ring in rings.items():
            ints += (series, window_ms, ring.head)
            ints += ring.settle()
        w.i64_list(ints)
        e = self.enforcement
        cached = self.encoded_enforcement
        if e is None:
            w.raw(b"\x00")
        else:
            if cached is None or cached[0] is not e:
                cached = self.encoded_enforcement = (e, _enforcement_bytes(e))
            w.raw(cached[1])

    def _read_common(self, r: Reader, lead: int, v2: bool = False) -> list[str]:
        """Read what :meth:`_write_common` wrote (or its v2 form); returns its ``lead``
        texts."""
        texts = r.texts()
        if v2:
            fields = r.i64_array(_COMMON_INTS_V2).tolist()
            n_marks, n_alerted, n_rings = fields[-3:]
            n_blocks = 0
        else:
            fields = r.i64_array(_COMMON_INTS).tolist()
            n_marks, n_alerted, n_rings, n_blocks = fields[-4:]
        if len(texts) != lead + 5 + n_alerted + n_blocks:
            raise StateFormatError("usage state holds the wrong number of texts")
        self.account_id, self.timezone, self.day_key, self.month_key, bpid = texts[lead : lead + 5]
        (self.day_start_ms, self.day_end_ms, self.month_start_ms, self.month_end_ms,
         blocked, has_bpid) = fields[:6]  # fmt: skip
        self.blocked_until_ms = unopt(blocked)
        self.block_policy_id = bpid if has_bpid else None
        self.day = fields[6 : 6 + N_SERIES]
        self.month_base = fields[6 + N_SERIES : 6 + 2 * N_SERIES]
        ints = r.i64_array(2 * n_marks + n_alerted + n_blocks).tolist()
        self.watermarks = dict(
            zip(ints[0 : 2 * n_marks : 2], ints[1 : 2 * n_marks : 2], strict=True)
        )
        alert_end = lead + 5 + n_alerted
        alerted = dict(
            zip(texts[lead + 5 : alert_end], ints[2 * n_marks : 2 * n_marks + n_alerted],
                strict=True)
        )  # fmt: skip
        if v2:
            self.legacy_alerted = alerted
            self.blocks = {}
            if self.blocked_until_ms is not None and self.block_policy_id is not None:
                self.blocks = {self.block_policy_id: self.blocked_until_ms}
        else:
            self.alerted = alerted
            self.blocks = dict(zip(texts[alert_end:], ints[2 * n_marks + n_alerted :], strict=True))
        rings: dict[tuple[int, int], Ring] = {}
        for _ in range(n_rings):
            series, window_ms, head = r.i64_array(3)
            try:
                size = Ring(window_ms).size
                rings[(series, window_ms)] = Ring.restore(window_ms, head, r.i64_array(size))
            except ValueError as exc:
                raise StateFormatError(f"a rolling window is corrupt: {exc}") from exc
        self.rings = rings
        self.enforcement = _read_enforcement(r)
        return texts[:lead]


@dataclass(slots=True)
class BotUsage(UsageBase):
    """Usage state of one bot (the per-bot table's value)."""

    bot_id: str = ""
    loop_until_ms: int | None = None
    """Smart throttle: a conversation of this bot looked like a loop; throttled until then."""
    loops: dict[str, int | array[int]] = field(default_factory=dict, compare=False, repr=False)
    """Per conversation: the time of its only message, or a ring of recent message times
    (see :func:`~capstream.core.caps.loop_suspected`), in the order they were first seen.
    Serialised since v4: restarting them after a restore (a worker's crash, a partition
    moving) engaged a loop's throttle later than the core walking the same events (the
    full chaos run's one alert under another id)."""

    def to_bytes(self) -> bytes:
        """Versioned compact encoding (``CSUB`` v4; v3, v2 and v1 are still read)."""
        w = Writer(_BOT_HEADER)
        self._write_common(w, self.bot_id)
        w.pack(_Q, opt(self.loop_until_ms))
        _write_loops(w, self.loops)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BotUsage:
        """Decode :meth:`to_bytes` output (or v1); raises ``StateFormatError`` on bad data."""
        if data.startswith(BOT_HEADER_V1):
            r = Reader(data, BOT_HEADER_V1)
            bot_id = r.text()
            u = cls(account_id=r.text(), bot_id=bot_id)
            read_bot_v1(u, r)
            return u
        u = cls(account_id="")
        v2 = data.startswith(_BOT_HEADER_V2)
        v3 = data.startswith(_BOT_HEADER_V3)
        r = Reader(data, _BOT_HEADER_V2 if v2 else _BOT_HEADER_V3 if v3 else _BOT_HEADER)
        (u.bot_id,) = u._read_common(r, 1, v2)
        (loop,) = r.unpack(_Q)
        u.loop_until_ms = unopt(loop)
        if not (v2 or v3):  # before v4 the loop detection was not kept: it starts afresh
            u.loops = _read_loops(r)
        r.done()
        return u


def _write_loops(w: Writer, loops: dict[str, int | array[int]]) -> None:
    """The conversation ids, then each one's ring length (0: one message, a time), then
    every time (ring slots as laid out in memory), in first-seen order."""
    w.texts(loops.keys())
    sizes = array("q")
    times = array("q")
    for v in loops.values():
        if isinstance(v, int):
            sizes.append(0)
            times.append(v)
        else:
            sizes.append(len(v))
            times.extend(v)  # array to array: no int objects
    if sys.byteorder != "little":  # pragma: no cover - as Writer.i64_list writes them
        sizes.byteswap()
        times.byteswap()
    w.raw(sizes.tobytes())
    w.raw(times.tobytes())


def _read_loops(r: Reader) -> dict[str, int | array[int]]:
    ids = r.texts()
    sizes = r.i64_array(len(ids))
    if any(not 0 <= n <= _LOOP_RING_MAX for n in sizes):
        raise StateFormatError("usage state holds a loop-detection ring of a wrong size")
    times = r.i64_array(sum(n or 1 for n in sizes))
    loops: dict[str, int | array[int]] = {}
    pos = 0
    for cid, n in zip(ids, sizes, strict=True):
        if n == 0:
            loops[cid] = times[pos]
            pos += 1
            continue
        ring = times[pos : pos + n]
        pos += n
        if not 1 <= ring[0] <= min(n, _LOOP_RING_MAX - 1):
            raise StateFormatError("usage state holds a corrupt loop-detection ring")
        loops[cid] = ring
    if len(loops) != len(ids):
        raise StateFormatError("usage state holds a conversation's loop detection twice")
    return loops


@dataclass(slots=True)
class AccountUsage(UsageBase):
    """Usage state of a whole account (the per-account table's value)."""

    recent_capacity: int = DEFAULT_RECENT_IDS
    recent_ids: deque[str] = field(default_factory=deque)
    """The last ``recent_capacity`` event ids applied, oldest first (drops client resends)."""
    recent_set: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """The same ids, each with the position (offset * 65536 + index) it was applied at (-1:
    unknown, read from a v2 state): a replayed event whose id was first applied at another
    position was a resend, dropped then, whatever table it is replayed into."""
    caps: dict[str, CapStatus] = field(default_factory=dict)
    """Categories capped now, as last derived."""
    downgraded_until_ms: int | None = None
    risk_until_ms: int | None = None
    """Smart throttle: the budget looked at risk; throttled until then."""
    risk_checked_ms: list[int] = field(
        default_factory=lambda: [0] * N_CATEGORIES, compare=False, repr=False
    )
    """Per category, when the budget risk was last checked (transient)."""
    version_floor: int = field(default=0, compare=False, repr=False)
    """The lowest version an enforcement state of this account may be published with
    (transient, set by the owner of its partition: versions never repeat across owners)."""
    warn_next: list[int] = field(
        default_factory=lambda: [NEVER] * (2 * N_CATEGORIES), compare=False, repr=False
    )
    """Per category, (daily, monthly): the lowest credit total at which a cap warning level
    not yet sent this period fires (``NEVER``: none); transient, see ``caps.arm_warnings``."""

    def to_bytes(self) -> bytes:
        """Versioned compact encoding (``CSUA`` v3; v2 and v1 are still read)."""
        w = Writer(_ACCOUNT_HEADER)
        self._write_common(w)
        caps = self.caps
        w.pack(
            _ACCOUNT_TAIL, self.recent_capacity, opt(self.downgraded_until_ms),
            opt(self.risk_until_ms), len(caps),
        )  # fmt: skip
        _write_caps(w, caps)
        recent = self.recent_ids
        w.texts(recent)
        at = self.recent_set
        w.i64_list([at.get(eid, -1) for eid in recent])
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> AccountUsage:
        """Decode :meth:`to_bytes` output (or v1); raises ``StateFormatError`` on bad data."""
        if data.startswith(ACCOUNT_HEADER_V1):
            r = Reader(data, ACCOUNT_HEADER_V1)
            u = cls(account_id=r.text())
            read_account_v1(u, r)
            return u
        u = cls(account_id="")
        v2 = data.startswith(_ACCOUNT_HEADER_V2)
        r = Reader(data, _ACCOUNT_HEADER_V2 if v2 else _ACCOUNT_HEADER)
        u._read_common(r, 0, v2)
        capacity, downgraded, risk, n_caps = r.unpack(_ACCOUNT_TAIL)
        u.recent_capacity = capacity
        u.downgraded_until_ms, u.risk_until_ms = unopt(downgraded), unopt(risk)
        u.caps = _read_caps(r, n_caps)
        ids = r.texts()
        u.recent_ids = deque(ids)
        if v2:
            u.recent_set = dict.fromkeys(ids, -1)
        else:
            u.recent_set = dict(zip(ids, r.i64_array(len(ids)), strict=True))
        r.done()
        return u


def _write_caps(w: Writer, caps: dict[str, CapStatus]) -> None:
    w.texts([text for cat, cap in caps.items() for text in (cat, cap.period, cap.period_key)])
    w.i64_list([cap.resumes_at_ms for cap in caps.values()])


def _read_caps(r: Reader, n: int) -> dict[str, CapStatus]:
    texts = r.texts()
    if len(texts) != 3 * n:
        raise StateFormatError("usage state holds the wrong number of cap texts")
    resumes = r.i64_array(n)
    return {
        texts[3 * i]: CapStatus(texts[3 * i + 1], texts[3 * i + 2], resumes[i]) for i in range(n)
    }


def _enforcement_bytes(e: EnforcementState) -> bytes:
    w = Writer(b"\x01")
    bpid, reason, caps = e.block_policy_id, e.throttle_reason, e.caps
    w.texts(
        [e.account_id, e.bot_id, bpid or "", e.model, reason or "", e.plan,
         e.fallback_text_daily, e.fallback_text_monthly, e.premium_model]
    )  # fmt: skip
    w.pack(
        _ENFORCEMENT, e.version, e.updated_at_ms, opt(e.blocked_until_ms), bpid is not None,
        opt(e.downgraded_until_ms), e.batching_interval_s, opt(e.throttled_until_ms),
        reason is not None, len(caps),
    )  # fmt: skip
    _write_caps(w, caps)
    return w.bytes()


def _read_enforcement(r: Reader) -> EnforcementState | None:
    (present,) = r.unpack(_PRESENT)
    if not present:
        return None
    texts = r.texts()
    if len(texts) != 9:
        raise StateFormatError("usage state holds an enforcement state with the wrong texts")
    account_id, bot_id, bpid, model, reason, plan, fb_daily, fb_monthly, premium = texts
    version, updated, blocked, has_bpid, downgraded, batching, throttled, has_reason, n_caps = (
        r.unpack(_ENFORCEMENT)
    )
    caps = _read_caps(r, n_caps)
    return EnforcementState(
        account_id, bot_id, version, updated, unopt(blocked), bpid if has_bpid else None,
        model, unopt(downgraded), batching, unopt(throttled), reason if has_reason else None,
        caps, plan, fb_daily, fb_monthly, premium,
    )  # fmt: skip
