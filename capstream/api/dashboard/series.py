"""Usage over time for the dashboard chart: per-bot buckets from ClickHouse, zeros filled in.

``15m`` reads raw ``usage_events`` in 15-second buckets, ``hour`` in one-minute buckets; ``day``
reads the ``usage_hourly``
rollup; ``month`` the ``usage_daily`` rollup (UTC days). Both rollups are the sink's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from capstream.api.reads import Query

Metric = Literal["credits", "tokens", "messages"]
Range = Literal["15m", "hour", "day", "month"]

_VALUE = {
    "credits": "sum(credits_micro)",
    "tokens": "sum(tokens_in) + sum(tokens_out)",
    "messages": "sum(messages)",
}
_RANGES: dict[str, tuple[int, int]] = {  # (step ms, buckets)
    "15m": (15_000, 60),
    "hour": (60_000, 60),
    "day": (3_600_000, 24),
    "month": (86_400_000, 30),
}


class Series(BaseModel):
    bot_id: str
    values: list[int]
    total: int


class UsageSeries(BaseModel):
    """``values[i]`` of every series is the amount in ``[start_ms + i*step_ms, +step_ms)``."""

    metric: Metric
    range: Range
    start_ms: int
    step_ms: int
    buckets: int
    series: list[Series]


def _sql(metric: Metric, rng: Range) -> str:
    value = _VALUE[metric]
    if rng in ("15m", "hour"):
        bucket = (
            "toStartOfInterval(occurred_at, INTERVAL 15 SECOND)"
            if rng == "15m"
            else ("toStartOfMinute(occurred_at)")
        )
        return (
            f"SELECT toUnixTimestamp({bucket}) * 1000 AS t, bot_id, "
            f"{value} AS v FROM usage_events WHERE account_id = {{account_id:String}} "
            "AND occurred_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
            "GROUP BY t, bot_id"
        )
    if rng == "day":
        t, table, since = "toUnixTimestamp(hour)", "usage_hourly", "hour >= toStartOfHour"
    else:
        t, table, since = "toUnixTimestamp(toDateTime(day, 'UTC'))", "usage_daily", "day >= toDate"
    return (
        f"SELECT {t} * 1000 AS t, bot_id, {value} AS v FROM {table} "
        "WHERE account_id = {account_id:String} "
        f"AND {since}(fromUnixTimestamp64Milli({{start:Int64}}, 'UTC')) GROUP BY t, bot_id"
    )


def usage_series(
    query: Query, account_id: str, metric: Metric, rng: Range, now_ms: int
) -> UsageSeries:
    """The last 15 minutes (per 15 s), hour (per minute), day (per hour) or 30 days (per UTC
    day), per bot."""
    step, n = _RANGES[rng]
    start = (now_ms // step - (n - 1)) * step
    rows = query(_sql(metric, rng), {"account_id": account_id, "start": start})
    per_bot: dict[str, list[int]] = {}
    for r in rows:
        i = (int(r["t"]) - start) // step
        if 0 <= i < n:
            per_bot.setdefault(r["bot_id"], [0] * n)[i] += int(r["v"] or 0)
    series = [Series(bot_id=b, values=v, total=sum(v)) for b, v in sorted(per_bot.items())]
    return UsageSeries(
        metric=metric, range=rng, start_ms=start, step_ms=step, buckets=n, series=series
    )
