"""What every vector file shares: the fixed clock and the JSON form of longs."""

from __future__ import annotations

from typing import Any

SAFE = (1 << 53) - 1
PARTITION_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 100, 1000)
T0 = 1_795_000_000_000  # 2026-11-18T09:46:40Z: fixed, so the files never change by themselves
HOUR = 3_600_000
MINUTE = 60_000


def json_long(n: int) -> int | str:
    """A long as JSON: a number when JavaScript reads it exactly, else a decimal string."""
    return n if -SAFE <= n <= SAFE else str(n)


def jsonable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return json_long(value)
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")
