"""Reading usage states in format v1 (written by the release before v2; never written now).

v1 stores every field on its own, rings oldest bucket first and recent event ids one by one.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from capstream.core.codec import Reader
from capstream.core.errors import StateFormatError
from capstream.core.models import CapStatus, EnforcementState
from capstream.core.windows import Ring

if TYPE_CHECKING:
    from capstream.core.usage import AccountUsage, BotUsage, UsageBase

BOT_HEADER_V1 = b"CSUB\x01"
ACCOUNT_HEADER_V1 = b"CSUA\x01"
_N_SERIES = 8  # calendar series in a v1 value


def read_bot_v1(u: BotUsage, r: Reader) -> None:
    """The fields of a ``CSUB`` v1 value after its bot id and account id."""
    _read_common(u, r)
    u.loop_until_ms = r.opt_i64()
    r.done()


def read_account_v1(u: AccountUsage, r: Reader) -> None:
    """The fields of a ``CSUA`` v1 value after its account id."""
    _read_common(u, r)
    u.recent_capacity = r.u32()
    u.recent_ids = deque(r.text() for _ in range(r.u32()))
    u.recent_set = dict.fromkeys(u.recent_ids, -1)
    u.caps = dict(_read_cap(r) for _ in range(r.u32()))
    u.downgraded_until_ms = r.opt_i64()
    u.risk_until_ms = r.opt_i64()
    r.done()


def _read_common(u: UsageBase, r: Reader) -> None:
    u.timezone = r.text()
    u.day_key, u.day_start_ms, u.day_end_ms = r.text(), r.i64(), r.i64()
    u.month_key, u.month_start_ms, u.month_end_ms = r.text(), r.i64(), r.i64()
    u.day = r.i64s().tolist()
    u.month_base = r.i64s().tolist()
    if len(u.day) != _N_SERIES or len(u.month_base) != _N_SERIES:
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
    u.enforcement = _read_enforcement(r)


def _read_cap(r: Reader) -> tuple[str, CapStatus]:
    return r.text(), CapStatus(r.text(), r.text(), r.i64())


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
