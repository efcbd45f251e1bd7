"""Read endpoints' queries over ClickHouse: usage vs policies and caps, feed rows, decisions.

ClickHouse is reached through one port, ``Query``: ``query(sql, params) -> rows`` (each row a
``{column: value}`` dict). Every statement is parameterised and filtered by the caller's
``account_id``. The tables are the sink's (``capstream/sinks/ddl.py``): ``usage_events``,
``feed_rows`` and ``decisions``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from capstream.core.messages import panel_cta
from capstream.core.periods import day_period, month_period
from capstream.streams.records import PolicyRecord, TenantSettingsRecord

Row = dict[str, Any]
Query = Callable[[str, dict[str, Any]], list[Row]]
Columns = Callable[[str, dict[str, Any]], tuple[list[str], list[Sequence[Any]]]]
"""A port's column form: column names and one sequence per column (``StoreQuery.columns``)."""

_METRIC_SQL = {
    "tokens": "sum(tokens_in + tokens_out)",
    "messages": "sum(messages)",
    "conversations": "countIf(conversation_started)",
    "credits": "sum(credits_micro)",
}


class PolicyUsage(BaseModel):
    """One policy's current window: how much is used against its threshold."""

    policy_id: str
    name: str
    metric: str
    scope: str
    bot_id: str | None
    window_seconds: int
    period: str | None = None
    """A calendar policy's period (``used`` is then the current local period's)."""
    period_start_ms: int | None = None
    threshold: int
    used: int
    percent: float
    breached: bool
    enabled: bool
    per: str | None = None
    """A per-attribute policy's attribute: ``used`` is then its busiest value's."""
    busiest_value: str | None = None
    """A per-attribute policy: the value closest to breaching (None: no event has one)."""


class CapUsage(BaseModel):
    """One category's daily or monthly cap in the tenant's timezone."""

    category: str
    period: str
    period_key: str
    cap_micro: int
    used_micro: int
    percent: float
    reached: bool
    resumes_at_ms: int
    cta: str | None


class UsageReport(BaseModel):
    account_id: str
    as_of_ms: int
    policies: list[PolicyUsage]
    caps: list[CapUsage]


def policy_since(policy: PolicyRecord, now_ms: int, tz: str) -> int:
    """Where ``policy``'s count starts at ``now_ms``: its rolling window's start, or a
    calendar policy's current local day, week or month start in ``tz``."""
    if policy.period is None:
        return now_ms - policy.window_seconds * 1000
    from capstream.core.periods import day_period, month_period, week_period

    of = {"day": day_period, "week": week_period, "month": month_period}[policy.period]
    return of(now_ms, tz).start_ms


def policy_usage(query: Query, policy: PolicyRecord, now_ms: int, tz: str = "UTC") -> PolicyUsage:
    """The usage counted against ``policy`` over its rolling window ending ``now_ms`` (a
    calendar policy: since the start of the current local day, week or month in ``tz``).

    For ``account_each_bot`` it is the busiest bot's usage (the one closest to breaching).
    """
    where = [
        "account_id = {account_id:String}",
        "occurred_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')",
    ]
    since = policy_since(policy, now_ms, tz)
    params: dict[str, Any] = {"account_id": policy.account_id, "since": since}
    if policy.scope == "bot" and policy.bot_id:
        where.append("bot_id = {bot_id:String}")
        params["bot_id"] = policy.bot_id
    if policy.category is not None:
        where.append("category = {category:String}")
        params["category"] = policy.category
    total = _METRIC_SQL[policy.metric]
    if policy.per is not None:  # the busiest value (of the busiest bot for account_each_bot)
        value = "model" if policy.per == "model" else "attributes[{per:String}]"
        params["per"] = policy.per
        where.append(f"{value} != ''")
        if policy.per_value is not None:
            where.append(f"{value} = {{per_value:String}}")
            params["per_value"] = policy.per_value
        group = "bot_id, value" if policy.scope == "account_each_bot" else "value"
        sql = (
            f"SELECT {value} AS value, {total} AS used FROM usage_events "
            f"WHERE {' AND '.join(where)} GROUP BY {group} ORDER BY used DESC LIMIT 1"
        )
        rows = query(sql, params)
        return _usage(policy, since, int(rows[0]["used"] or 0) if rows else 0,
                      str(rows[0]["value"]) if rows else None)  # fmt: skip
    cond = " AND ".join(where)
    if policy.scope == "account_each_bot":
        sql = (
            f"SELECT {total} AS used FROM usage_events WHERE {cond} "
            "GROUP BY bot_id ORDER BY used DESC LIMIT 1"
        )
    else:
        sql = f"SELECT {total} AS used FROM usage_events WHERE {cond}"
    rows = query(sql, params)
    return _usage(policy, since, int(rows[0]["used"] or 0) if rows else 0)


def _usage(policy: PolicyRecord, since: int, used: int, value: str | None = None) -> PolicyUsage:
    return PolicyUsage(
        policy_id=policy.policy_id,
        name=policy.name,
        metric=policy.metric,
        scope=policy.scope,
        bot_id=policy.bot_id,
        window_seconds=policy.window_seconds,
        period=policy.period,
        period_start_ms=since if policy.period is not None else None,
        threshold=policy.threshold,
        used=used,
        percent=round(100.0 * used / policy.threshold, 2),
        breached=used >= policy.threshold,
        enabled=policy.enabled,
        per=policy.per,
        busiest_value=value,
    )


def cap_usage(query: Query, tenant: TenantSettingsRecord, now_ms: int) -> list[CapUsage]:
    """Every configured cap of the tenant against the credits used in its local period."""
    out: list[CapUsage] = []
    day = day_period(now_ms, tenant.timezone)
    month = month_period(now_ms, tenant.timezone)
    for category, caps in sorted(tenant.caps.items()):
        for period, cap, span in (
            ("daily", caps.daily_micro, day),
            ("monthly", caps.monthly_micro, month),
        ):
            if cap is None:
                continue
            rows = query(
                "SELECT sum(credits_micro) AS used FROM usage_events "
                "WHERE account_id = {account_id:String} AND category = {category:String} "
                "AND occurred_at >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') "
                "AND occurred_at < fromUnixTimestamp64Milli({end:Int64}, 'UTC')",
                {
                    "account_id": tenant.account_id,
                    "category": category,
                    "start": span.start_ms,
                    "end": span.end_ms,
                },
            )
            used = int(rows[0]["used"] or 0) if rows else 0
            reached = used >= cap
            out.append(
                CapUsage(
                    category=category,
                    period=period,
                    period_key=span.key,
                    cap_micro=cap,
                    used_micro=used,
                    percent=round(100.0 * used / cap, 2) if cap else 100.0,
                    reached=reached,
                    resumes_at_ms=span.end_ms,
                    cta=panel_cta(tenant.plan, period) if reached else None,
                )
            )
    return out


def feed_rows(query: Query, account_id: str, local_day: str, limit: int) -> list[Row]:
    """The amber rows of one local day (``FINAL``: the row with the latest attempt count)."""
    return query(
        "SELECT account_id, bot_id, conversation_id, local_day, category, period, attempts, "
        "message, cta FROM feed_rows FINAL "
        "WHERE account_id = {account_id:String} AND local_day = toDate({day:String}) "
        "ORDER BY bot_id, conversation_id, category LIMIT {limit:UInt32}",
        {"account_id": account_id, "day": local_day, "limit": limit},
    )


def recent_decisions(query: Query, account_id: str, limit: int) -> list[Row]:
    """The account's most recent enforcement decisions, newest first; a resume (a person
    lifted a block) is a row with ``resumed_at`` and ``resumed_by`` set."""
    return query(
        "SELECT account_id, bot_id, version, updated_at, blocked_until, block_policy_id, "
        "model, downgraded_until, batching_interval_s, throttled_until, throttle_reason, "
        "caps, plan, resumed_at, resumed_by FROM decisions "
        "WHERE account_id = {account_id:String} "
        "ORDER BY updated_at DESC, version DESC LIMIT {limit:UInt32}",
        {"account_id": account_id, "limit": limit},
    )
