"""Byte formats of usage state: the parts bot and account values share (v4 written, with
the local week's totals; v3, v2 and v1 read), cap states and the cached enforcement state.

v2/v3 layout: texts in one piece (``Writer.texts``), fixed fields in one struct or int64
list, rings as laid out in memory, the enforcement state's bytes cached while unchanged.
v1 (the release before v2; never written now) stores every field on its own, rings oldest
bucket first and recent event ids one by one. The values' own headers and tails are in
:mod:`capstream.core.usage` (``BotUsage`` / ``AccountUsage`` ``to_bytes``/``from_bytes``).
"""

from __future__ import annotations

import struct
import sys
from array import array

from capstream.core.errors import StateFormatError
from capstream.core.models.decisions import CapStatus, EnforcementState
from capstream.core.series import N_SERIES
from capstream.core.state_codec import Reader, Writer, opt, unopt
from capstream.core.usage_base import UsageBase
from capstream.core.windows import Ring

BOT_HEADER = b"CSUB\x05"
BOT_HEADER_V4 = b"CSUB\x04"
BOT_HEADER_V3 = b"CSUB\x03"
ACCOUNT_HEADER = b"CSUA\x05"
ACCOUNT_HEADER_V4 = b"CSUA\x04"
ACCOUNT_HEADER_V3 = b"CSUA\x03"
BOT_HEADER_V2 = b"CSUB\x02"
ACCOUNT_HEADER_V2 = b"CSUA\x02"
BOT_HEADER_V1 = b"CSUB\x01"
ACCOUNT_HEADER_V1 = b"CSUA\x01"
_COMMON_INTS_V2 = 6 + 2 * N_SERIES + 3
"""int64s first in a v2 value: day start/end, month start/end, blocked until, has a block
policy, day and month-base totals, how many watermarks, alerts and rings follow."""
_COMMON_INTS = _COMMON_INTS_V2 + 1
"""v3: the same, then how many per-policy blocks follow. v3 also stores alert times (ms)
where v2 stored fixed-window numbers (``now // window``), and each running policy block
(policy ids among the texts, their ends after the alert times)."""
_COMMON_INTS_V4 = _COMMON_INTS + 2 + N_SERIES
"""v4 (``CSUA`` v4, ``CSUB`` v5): the same with the local week's start and end and its
totals before today after the month's (and the week's key after the block policy among the
texts)."""
ACCOUNT_TAIL = struct.Struct("<I3q")
"""recent-id capacity, downgraded until, risk until, how many caps."""
_ENFORCEMENT = struct.Struct("<3qB3qBI")
"""version, updated at, blocked until, has a block policy, downgraded until, batching,
throttled until, has a throttle reason, how many caps."""
_PRESENT = struct.Struct("<B")
_V1_SERIES = 8
"""Calendar series in a v1 value."""
Q = struct.Struct("<q")
LOOP_RING_MAX = 21
"""The longest loop-detection ring (``caps.loop_suspected``: the next slot, 20 times)."""


def write_common(w: Writer, u: UsageBase, *lead: str) -> None:
    """The fields both kinds share, after ``lead`` texts (a bot's id)."""
    # Texts in one piece, every int in one struct (a struct packs a list of ints into
    # bytes 2x faster than an array is built from it).
    bpid = u.block_policy_id
    alerted, rings, marks = u.alerted, u.rings, u.watermarks
    blocks = u.blocks
    w.texts(
        [*lead, u.account_id, u.timezone, u.day_key, u.month_key, bpid or "", u.week_key,
         *alerted, *blocks]
    )  # fmt: skip
    ints = [
        u.day_start_ms, u.day_end_ms, u.month_start_ms, u.month_end_ms,
        opt(u.blocked_until_ms), bpid is not None, *u.day, *u.month_base,
        u.week_start_ms, u.week_end_ms, *u.week_base,
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
    e = u.enforcement
    cached = u.encoded_enforcement
    if e is None:
        w.raw(b"\x00")
    else:
        if cached is None or cached[0] is not e:
            cached = u.encoded_enforcement = (e, enforcement_bytes(e))
        w.raw(cached[1])


def read_common(u: UsageBase, r: Reader, lead: int, version: int = 4) -> list[str]:
    """Read what :func:`write_common` wrote (``version`` 4), or its v3 or v2 form; returns
    its ``lead`` texts. Before v4 the week's totals were not kept: they count from the day
    the state was written in."""
    v2 = version == 2
    texts = r.texts()
    if v2:
        fields = r.i64_array(_COMMON_INTS_V2).tolist()
        n_marks, n_alerted, n_rings = fields[-3:]
        n_blocks = 0
    else:
        fields = r.i64_array(_COMMON_INTS if version == 3 else _COMMON_INTS_V4).tolist()
        n_marks, n_alerted, n_rings, n_blocks = fields[-4:]
    n_fixed = 6 if version >= 4 else 5
    if len(texts) != lead + n_fixed + n_alerted + n_blocks:
        raise StateFormatError("usage state holds the wrong number of texts")
    u.account_id, u.timezone, u.day_key, u.month_key, bpid = texts[lead : lead + 5]
    (u.day_start_ms, u.day_end_ms, u.month_start_ms, u.month_end_ms,
     blocked, has_bpid) = fields[:6]  # fmt: skip
    u.blocked_until_ms = unopt(blocked)
    u.block_policy_id = bpid if has_bpid else None
    u.day = fields[6 : 6 + N_SERIES]
    u.month_base = fields[6 + N_SERIES : 6 + 2 * N_SERIES]
    if version >= 4:
        u.week_key = texts[lead + 5]
        u.week_start_ms, u.week_end_ms = fields[6 + 2 * N_SERIES : 8 + 2 * N_SERIES]
        u.week_base = fields[8 + 2 * N_SERIES : 8 + 3 * N_SERIES]
    else:
        start_week(u)
    ints = r.i64_array(2 * n_marks + n_alerted + n_blocks).tolist()
    u.watermarks = dict(zip(ints[0 : 2 * n_marks : 2], ints[1 : 2 * n_marks : 2], strict=True))
    alert_end = lead + n_fixed + n_alerted
    alerted = dict(
        zip(texts[lead + n_fixed : alert_end], ints[2 * n_marks : 2 * n_marks + n_alerted],
            strict=True)
    )  # fmt: skip
    if v2:
        u.legacy_alerted = alerted
        u.blocks = {}
        if u.blocked_until_ms is not None and u.block_policy_id is not None:
            u.blocks = {u.block_policy_id: u.blocked_until_ms}
    else:
        u.alerted = alerted
        u.blocks = dict(zip(texts[alert_end:], ints[2 * n_marks + n_alerted :], strict=True))
    rings: dict[tuple[int, int], Ring] = {}
    for _ in range(n_rings):
        series, window_ms, head = r.i64_array(3)
        try:
            size = Ring(window_ms).size
            rings[(series, window_ms)] = Ring.restore(window_ms, head, r.i64_array(size))
        except ValueError as exc:
            raise StateFormatError(f"a rolling window is corrupt: {exc}") from exc
    u.rings = rings
    u.enforcement = read_enforcement(r)
    return texts[:lead]


def write_caps(w: Writer, caps: dict[str, CapStatus]) -> None:
    w.texts([text for cat, cap in caps.items() for text in (cat, cap.period, cap.period_key)])
    w.i64_list([cap.resumes_at_ms for cap in caps.values()])


def read_caps(r: Reader, n: int) -> dict[str, CapStatus]:
    texts = r.texts()
    if len(texts) != 3 * n:
        raise StateFormatError("usage state holds the wrong number of cap texts")
    resumes = r.i64_array(n)
    return {
        texts[3 * i]: CapStatus(texts[3 * i + 1], texts[3 * i + 2], resumes[i]) for i in range(n)
    }


def enforcement_bytes(e: EnforcementState) -> bytes:
    w = Writer(b"\x02" if e.follows_account else b"\x01")  # 2: see read_enforcement
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
    write_caps(w, caps)
    return w.bytes()


def read_enforcement(r: Reader) -> EnforcementState | None:
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
    caps = read_caps(r, n_caps)
    state = EnforcementState(
        account_id, bot_id, version, updated, unopt(blocked), bpid if has_bpid else None,
        model, unopt(downgraded), batching, unopt(throttled), reason if has_reason else None,
        caps, plan, fb_daily, fb_monthly, premium,
    )  # fmt: skip
    state.follows_account = present == 2  # 1 (and before the flag): a state of its own
    return state


def start_week(u: UsageBase) -> None:
    """A state read from a format without week totals: its week counts from its day."""
    u.week_base = [0] * N_SERIES
    if u.day_end_ms:
        u.set_week(u.day_start_ms)


def read_common_v1(u: UsageBase, r: Reader) -> None:
    """The fields both kinds shared in v1 (after the ids)."""
    u.timezone = r.text()
    u.day_key, u.day_start_ms, u.day_end_ms = r.text(), r.i64(), r.i64()
    u.month_key, u.month_start_ms, u.month_end_ms = r.text(), r.i64(), r.i64()
    u.day = r.i64s().tolist()
    u.month_base = r.i64s().tolist()
    if len(u.day) != _V1_SERIES or len(u.month_base) != _V1_SERIES:
        raise StateFormatError("calendar totals have the wrong length")
    u.watermarks = {r.i64(): r.i64() for _ in range(r.u32())}
    u.legacy_alerted = {r.text(): r.i64() for _ in range(r.u32())}  # fixed-window numbers
    u.blocked_until_ms = r.opt_i64()
    u.block_policy_id = r.opt_text()
    if u.blocked_until_ms is not None and u.block_policy_id is not None:
        u.blocks = {u.block_policy_id: u.blocked_until_ms}
    rings: dict[tuple[int, int], Ring] = {}
    for _ in range(r.u32()):
        series, window_ms, head = r.u8(), r.i64(), r.i64()
        try:
            rings[(series, window_ms)] = Ring.restore_oldest_first(window_ms, head, r.i64s())
        except ValueError as exc:
            raise StateFormatError(f"a rolling window is corrupt: {exc}") from exc
    u.rings = rings
    start_week(u)
    u.enforcement = _read_enforcement_v1(r)


def read_cap_v1(r: Reader) -> tuple[str, CapStatus]:
    return r.text(), CapStatus(r.text(), r.text(), r.i64())


def _read_enforcement_v1(r: Reader) -> EnforcementState | None:
    if not r.u8():
        return None
    account_id, bot_id, version, updated = r.text(), r.text(), r.i64(), r.i64()
    blocked, block_pid, model, downgraded = r.opt_i64(), r.opt_text(), r.text(), r.opt_i64()
    batching, throttled, reason = r.i64(), r.opt_i64(), r.opt_text()
    caps = dict(read_cap_v1(r) for _ in range(r.u32()))
    plan, fb_daily, fb_monthly, premium = r.text(), r.text(), r.text(), r.text()
    return EnforcementState(
        account_id, bot_id, version, updated, blocked, block_pid, model, downgraded,
        batching, throttled, reason, caps, plan, fb_daily, fb_monthly, premium,
    )  # fmt: skip


def write_loops(w: Writer, loops: dict[str, int | array[int]]) -> None:
    """A bot's loop detection (since ``CSUB`` v4): the conversation ids, then each one's
    ring length (0: one message, a time), then every time (ring slots as laid out in
    memory), in first-seen order."""
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


def read_loops(r: Reader) -> dict[str, int | array[int]]:
    """Read :func:`write_loops`; raises ``StateFormatError`` on a corrupt ring."""
    ids = r.texts()
    sizes = r.i64_array(len(ids))
    if any(not 0 <= n <= LOOP_RING_MAX for n in sizes):
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
        if not 1 <= ring[0] <= min(n, LOOP_RING_MAX - 1):
            raise StateFormatError("usage state holds a corrupt loop-detection ring")
        loops[cid] = ring
    if len(loops) != len(ids):
        raise StateFormatError("usage state holds a conversation's loop detection twice")
    return loops
