"""Usage state per bot and per account (the two tables' values), with their bytes.

What both share (calendar totals, rings, watermarks, policy state) is
:class:`~capstream.core.usage_base.UsageBase`; the shared byte format is in
:mod:`capstream.core.usage_bytes`.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field

from capstream.core.models.decisions import CapStatus
from capstream.core.models.vocabulary import DEFAULT_SCOPED_VALUES, NEVER
from capstream.core.scoped_state import ScopedCount, read_scoped, write_scoped
from capstream.core.series import N_CATEGORIES
from capstream.core.state_codec import Reader, Writer, opt, unopt
from capstream.core.usage_base import UsageBase
from capstream.core.usage_bytes import (
    ACCOUNT_HEADER,
    ACCOUNT_HEADER_V1,
    ACCOUNT_HEADER_V2,
    ACCOUNT_HEADER_V3,
    ACCOUNT_HEADER_V4,
    ACCOUNT_TAIL,
    BOT_HEADER,
    BOT_HEADER_V1,
    BOT_HEADER_V2,
    BOT_HEADER_V3,
    BOT_HEADER_V4,
    Q,
    read_cap_v1,
    read_caps,
    read_common,
    read_common_v1,
    read_loops,
    write_caps,
    write_common,
    write_loops,
)

DEFAULT_RECENT_IDS = 512


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
        """Versioned compact encoding (``CSUB`` v5: v4 with the week's totals; v4, v3, v2
        and v1 are still read)."""
        w = Writer(BOT_HEADER)
        write_common(w, self, self.bot_id)
        w.pack(Q, opt(self.loop_until_ms))
        write_loops(w, self.loops)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> BotUsage:
        """Decode :meth:`to_bytes` output (or v1); raises ``StateFormatError`` on bad data."""
        if data.startswith(BOT_HEADER_V1):
            r = Reader(data, BOT_HEADER_V1)
            bot_id = r.text()
            u = cls(account_id=r.text(), bot_id=bot_id)
            read_common_v1(u, r)
            u.loop_until_ms = r.opt_i64()
            r.done()
            return u
        u = cls(account_id="")
        v2 = data.startswith(BOT_HEADER_V2)
        v3 = data.startswith(BOT_HEADER_V3)
        v4 = data.startswith(BOT_HEADER_V4)
        header = (
            BOT_HEADER_V2 if v2 else BOT_HEADER_V3 if v3 else BOT_HEADER_V4 if v4 else BOT_HEADER
        )
        r = Reader(data, header)
        (u.bot_id,) = read_common(u, r, 1, 2 if v2 else 3 if v3 or v4 else 4)
        (loop,) = r.unpack(Q)
        u.loop_until_ms = unopt(loop)
        if not (v2 or v3):  # before v4 the loop detection was not kept: it starts afresh
            u.loops = read_loops(r)
        r.done()
        return u


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
    scoped: dict[str, ScopedCount] = field(default_factory=dict)
    """The per-attribute policies' counters, one per (policy, bot or ``*``, value), least
    recently used first (:mod:`capstream.core.scoped_state`); since ``CSUA`` v5."""
    scoped_capacity: int = DEFAULT_SCOPED_VALUES
    """How many counters :attr:`scoped` holds at most."""
    scoped_evicted: int = field(default=0, compare=False, repr=False)
    """Counters still in use dropped to make room since this state was loaded (transient;
    the worker adds it to its metrics and resets it)."""

    def to_bytes(self) -> bytes:
        """Versioned compact encoding (``CSUA`` v5: v4 with the per-attribute counters; v4,
        v3, v2 and v1 are still read)."""
        w = Writer(ACCOUNT_HEADER)
        write_common(w, self)
        caps = self.caps
        w.pack(
            ACCOUNT_TAIL, self.recent_capacity, opt(self.downgraded_until_ms),
            opt(self.risk_until_ms), len(caps),
        )  # fmt: skip
        write_caps(w, caps)
        recent = self.recent_ids
        w.texts(recent)
        at = self.recent_set
        w.i64_list([at.get(eid, -1) for eid in recent])
        write_scoped(w, self.scoped_capacity, self.scoped)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> AccountUsage:
        """Decode :meth:`to_bytes` output (or v1); raises ``StateFormatError`` on bad data."""
        if data.startswith(ACCOUNT_HEADER_V1):
            r = Reader(data, ACCOUNT_HEADER_V1)
            u = cls(account_id=r.text())
            read_common_v1(u, r)
            u.recent_capacity = r.u32()
            u.recent_ids = deque(r.text() for _ in range(r.u32()))
            u.recent_set = dict.fromkeys(u.recent_ids, -1)
            u.caps = dict(read_cap_v1(r) for _ in range(r.u32()))
            u.downgraded_until_ms = r.opt_i64()
            u.risk_until_ms = r.opt_i64()
            r.done()
            return u
        u = cls(account_id="")
        v2 = data.startswith(ACCOUNT_HEADER_V2)
        v3 = data.startswith(ACCOUNT_HEADER_V3)
        v4 = data.startswith(ACCOUNT_HEADER_V4)
        header = (
            ACCOUNT_HEADER_V2 if v2 else ACCOUNT_HEADER_V3 if v3
            else ACCOUNT_HEADER_V4 if v4 else ACCOUNT_HEADER
        )  # fmt: skip
        r = Reader(data, header)
        read_common(u, r, 0, 2 if v2 else 3 if v3 else 4)
        capacity, downgraded, risk, n_caps = r.unpack(ACCOUNT_TAIL)
        u.recent_capacity = capacity
        u.downgraded_until_ms, u.risk_until_ms = unopt(downgraded), unopt(risk)
        u.caps = read_caps(r, n_caps)
        ids = r.texts()
        u.recent_ids = deque(ids)
        if v2:
            u.recent_set = dict.fromkeys(ids, -1)
        else:
            u.recent_set = dict(zip(ids, r.i64_array(len(ids)), strict=True))
        if not (v2 or v3 or v4):  # before v5 no per-attribute counters: they start empty
            u.scoped_capacity, u.scoped = read_scoped(r)
        r.done()
        return u
