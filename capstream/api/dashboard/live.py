"""The dashboard's live view: usage per bot and category, each policy per bot, bot states,
cap burn-rate projections. Read from ClickHouse (the sink's tables) through the ``Query`` port.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from capstream.api.dashboard.burn import HOUR_MS, Projection, pace_per_ms, project
from capstream.api.reads import Query, Row, policy_since, policy_usage
from capstream.core.messages import panel_cta
from capstream.core.periods import day_period, month_period
from capstream.streams.records import CategoryCapsRecord, PolicyRecord, TenantSettingsRecord

CATEGORIES = ("text", "vision", "audio", "documents")
_METRIC_SQL = {
    "tokens": "sum(tokens_in + tokens_out)",
    "messages": "sum(messages)",
    "conversations": "countIf(conversation_started)",
    "credits": "sum(credits_micro)",
}
_AT = "fromUnixTimestamp64Milli({%s:Int64}, 'UTC')"


class CategoryUsage(BaseModel):
    """One bot's usage of one category in the tenant's current day and month."""

    day_credits_micro: int = 0
    month_credits_micro: int = 0
    day_tokens: int = 0
    day_messages: int = 0
    hour_credits_micro: int = 0


class CapState(BaseModel):
    """A capped category in a bot's enforcement state."""

    category: str
    period: str
    period_key: str
    resumes_at_ms: int


class BotState(BaseModel):
    """A bot's enforcement state as gateways hold it: its own latest one while its own block
    or throttle is in force, else its account's (``*``: a bot follows its account's state
    when it has nothing of its own; see ``capstream.core.enforcement``)."""

    version: int
    updated_at_ms: int
    blocked_until_ms: int | None
    block_policy_id: str | None
    model: str
    downgraded_until_ms: int | None
    batching_interval_s: int
    throttled_until_ms: int | None
    throttle_reason: str | None
    caps: list[CapState]


class BotLive(BaseModel):
    bot_id: str
    name: str
    state: BotState | None
    usage: dict[str, CategoryUsage]


class PolicyLive(BaseModel):
    """A policy's rolling window now: the amount per bot and the one that counts."""

    policy_id: str
    name: str
    metric: str
    scope: str
    bot_id: str | None
    category: str | None
    window_seconds: int
    period: str | None = None
    """A calendar policy's period: ``used`` counts from its current local start."""
    threshold: int
    enabled: bool
    per_bot: dict[str, int]
    used: int
    percent: float
    breached: bool
    per: str | None = None
    """A per-attribute policy's attribute: ``used`` is its busiest value's (``per_bot`` empty)."""
    busiest_value: str | None = None


class CapLive(BaseModel):
    """One cap with its projection and the dashboard panel's call to action."""

    projection: Projection
    cta: str | None


class LiveView(BaseModel):
    account_id: str
    plan: str
    timezone: str
    as_of_ms: int
    day_key: str
    month_key: str
    bots: list[BotLive]
    policies: list[PolicyLive]
    caps: list[CapLive]
    projections: list[Projection]


def _int(value: Any) -> int:
    return int(value or 0)


def bot_category_usage(
    query: Query, account_id: str, day_start: int, month_start: int, end: int, now: int
) -> tuple[list[Row], dict[str, dict[str, int | None]]]:
    """Per (bot, category) usage rows, and per category the first usage in the last hour
    and in the month (epoch ms, None if none)."""
    hour_start = now - HOUR_MS
    rows = query(
        "SELECT bot_id, category, "
        f"sumIf(credits_micro, occurred_at >= {_AT % 'day'}) AS day_credits, "
        f"sumIf(credits_micro, occurred_at >= {_AT % 'month'}) AS month_credits, "
        f"sumIf(tokens_in + tokens_out, occurred_at >= {_AT % 'day'}) AS day_tokens, "
        f"sumIf(messages, occurred_at >= {_AT % 'day'}) AS day_messages, "
        f"sumIf(credits_micro, occurred_at >= {_AT % 'hour'}) AS hour_credits, "
        f"toUnixTimestamp64Milli(minIf(occurred_at, occurred_at >= {_AT % 'hour'})) AS first_hour, "
        f"toUnixTimestamp64Milli(minIf(occurred_at, occurred_at >= {_AT % 'month'})) "
        "AS first_month "
        "FROM usage_events WHERE account_id = {account_id:String} "
        f"AND occurred_at >= {_AT % 'since'} AND occurred_at < {_AT % 'end'} "
        "GROUP BY bot_id, category ORDER BY bot_id, category",
        {
            "account_id": account_id,
            "day": day_start,
            "month": month_start,
            "hour": hour_start,
            "since": min(month_start, hour_start),
            "end": end,
        },
    )
    first: dict[str, dict[str, int | None]] = {}
    for r in rows:
        cat = first.setdefault(r["category"], {"hour": None, "month": None})
        for key, col in (("hour", "first_hour"), ("month", "first_month")):
            seen = _int(r[col])  # minIf over no rows is the epoch: no usage in that span
            if seen > 0:
                prev = cat[key]
                cat[key] = seen if prev is None else min(prev, seen)
    return rows, first


def latest_states(query: Query, account_id: str) -> dict[str, BotState]:
    """Each bot's newest enforcement state (``*`` is the account-wide one)."""
    rows = query(
        "SELECT bot_id, version, toUnixTimestamp64Milli(updated_at) AS updated_at_ms, "
        "toUnixTimestamp64Milli(blocked_until) AS blocked_until_ms, block_policy_id, model, "
        "toUnixTimestamp64Milli(downgraded_until) AS downgraded_until_ms, batching_interval_s, "
        "toUnixTimestamp64Milli(throttled_until) AS throttled_until_ms, throttle_reason, "
        "mapKeys(caps) AS cap_categories, arrayMap(v -> v.1, mapValues(caps)) AS cap_periods, "
        "arrayMap(v -> v.2, mapValues(caps)) AS cap_keys, "
        "arrayMap(v -> toUnixTimestamp64Milli(v.3), mapValues(caps)) AS cap_resumes "
        "FROM decisions WHERE account_id = {account_id:String} "
        "AND resumed_at IS NULL "  # resume rows (who, when) are not states
        "ORDER BY bot_id, version DESC LIMIT 1 BY bot_id",
        {"account_id": account_id},
    )
    out: dict[str, BotState] = {}
    for r in rows:
        caps = [
            CapState(category=c, period=p, period_key=k, resumes_at_ms=_int(t))
            for c, p, k, t in zip(
                r["cap_categories"], r["cap_periods"], r["cap_keys"], r["cap_resumes"], strict=True
            )
        ]
        out[r["bot_id"]] = BotState(
            version=_int(r["version"]),
            updated_at_ms=_int(r["updated_at_ms"]),
            blocked_until_ms=r["blocked_until_ms"],
            block_policy_id=r["block_policy_id"],
            model=r["model"],
            downgraded_until_ms=r["downgraded_until_ms"],
            batching_interval_s=_int(r["batching_interval_s"]),
            throttled_until_ms=r["throttled_until_ms"],
            throttle_reason=r["throttle_reason"],
            caps=caps,
        )
    return out


def in_force(states: dict[str, BotState], bot_id: str, now_ms: int) -> BotState | None:
    """What gateways hold for ``bot_id`` at ``now_ms``: its latest state while it shows a
    block or a throttle in force (a state of its own), else the account's ``*`` state. A bot
    whose own block or throttle ended follows ``*`` again: its last row in ``decisions`` is
    its state at that moment, and ``*``'s later rows are what holds for it."""
    own = states.get(bot_id)
    if bot_id == "*" or (
        own is not None
        and (
            (own.blocked_until_ms is not None and own.blocked_until_ms > now_ms)
            or (own.throttled_until_ms is not None and own.throttled_until_ms > now_ms)
        )
    ):
        return own
    return states.get("*", own)


def policy_live(query: Query, policy: PolicyRecord, now_ms: int, tz: str = "UTC") -> PolicyLive:
    """``policy``'s rolling window ending ``now_ms`` (a calendar policy: its current local
    period in ``tz``), per bot; ``used`` is what the scope compares with the threshold (the
    bot's, the busiest bot's, or the account's total; a per-attribute policy: its busiest
    value's)."""
    if policy.per is not None:
        u = policy_usage(query, policy, now_ms, tz)
        return PolicyLive(
            policy_id=policy.policy_id, name=policy.name, metric=policy.metric,
            scope=policy.scope, bot_id=policy.bot_id, category=policy.category,
            window_seconds=policy.window_seconds, period=policy.period,
            threshold=policy.threshold, enabled=policy.enabled, per_bot={}, used=u.used,
            percent=u.percent, breached=u.breached, per=policy.per, busiest_value=u.busiest_value,
        )  # fmt: skip
    where = [
        "account_id = {account_id:String}",
        f"occurred_at >= {_AT % 'since'}",
    ]
    params: dict[str, Any] = {
        "account_id": policy.account_id,
        "since": policy_since(policy, now_ms, tz),
    }
    if policy.scope == "bot" and policy.bot_id:
        where.append("bot_id = {bot_id:String}")
        params["bot_id"] = policy.bot_id
    if policy.category is not None:
        where.append("category = {category:String}")
        params["category"] = policy.category
    rows = query(
        f"SELECT bot_id, {_METRIC_SQL[policy.metric]} AS used FROM usage_events "
        f"WHERE {' AND '.join(where)} GROUP BY bot_id ORDER BY bot_id",
        params,
    )
    per_bot = {r["bot_id"]: _int(r["used"]) for r in rows}
    if policy.scope == "bot":
        used = per_bot.get(policy.bot_id or "", 0)
    elif policy.scope == "account_each_bot":
        used = max(per_bot.values(), default=0)
    else:
        used = sum(per_bot.values())
    return PolicyLive(
        policy_id=policy.policy_id,
        name=policy.name,
        metric=policy.metric,
        scope=policy.scope,
        bot_id=policy.bot_id,
        category=policy.category,
        window_seconds=policy.window_seconds,
        period=policy.period,
        threshold=policy.threshold,
        enabled=policy.enabled,
        per_bot=per_bot,
        used=used,
        percent=round(100.0 * used / policy.threshold, 2),
        breached=used >= policy.threshold,
    )


def live_view(
    query: Query,
    tenant: TenantSettingsRecord,
    policies: list[PolicyRecord],
    bot_names: dict[str, str],
    now_ms: int,
) -> LiveView:
    """Everything the dashboard's live panel shows, as of ``now_ms``."""
    day = day_period(now_ms, tenant.timezone)
    month = month_period(now_ms, tenant.timezone)
    rows, first = bot_category_usage(
        query, tenant.account_id, day.start_ms, month.start_ms, month.end_ms, now_ms
    )
    states = latest_states(query, tenant.account_id)
    usage: dict[str, dict[str, CategoryUsage]] = {}
    totals = {c: CategoryUsage() for c in CATEGORIES}
    for r in rows:
        u = CategoryUsage(
            day_credits_micro=_int(r["day_credits"]),
            month_credits_micro=_int(r["month_credits"]),
            day_tokens=_int(r["day_tokens"]),
            day_messages=_int(r["day_messages"]),
            hour_credits_micro=_int(r["hour_credits"]),
        )
        usage.setdefault(r["bot_id"], {})[r["category"]] = u
        t = totals.setdefault(r["category"], CategoryUsage())
        for name in CategoryUsage.model_fields:
            setattr(t, name, getattr(t, name) + getattr(u, name))
    bot_ids = sorted(set(bot_names) | set(usage) | set(states))
    bots = [
        BotLive(
            bot_id=b,
            name=bot_names.get(b, "all bots (account-wide)" if b == "*" else ""),
            state=in_force(states, b, now_ms),
            usage=usage.get(b, {}),
        )
        for b in bot_ids
    ]
    projections: list[Projection] = []
    caps: list[CapLive] = []
    caps_by_category: dict[str, CategoryCapsRecord] = {str(k): v for k, v in tenant.caps.items()}
    for cat in sorted(totals):
        t = totals[cat]
        seen = first.get(cat, {"hour": None, "month": None})
        limits = caps_by_category.get(cat)
        for period, used, rate, end, cap in (
            (
                "daily",
                t.day_credits_micro,
                pace_per_ms(t.hour_credits_micro, seen["hour"], now_ms - HOUR_MS, now_ms),
                day.end_ms,
                limits.daily_micro if limits else None,
            ),
            (
                "monthly",
                t.month_credits_micro,
                pace_per_ms(t.month_credits_micro, seen["month"], month.start_ms, now_ms),
                month.end_ms,
                limits.monthly_micro if limits else None,
            ),
        ):
            if cap is None and used == 0:
                continue
            p = project(cat, period, used, rate, now_ms, end, cap)
            projections.append(p)
            if cap is not None:
                cta = panel_cta(tenant.plan, period) if p.cap_reached else None
                caps.append(CapLive(projection=p, cta=cta))
    return LiveView(
        account_id=tenant.account_id,
        plan=tenant.plan,
        timezone=tenant.timezone,
        as_of_ms=now_ms,
        day_key=day.key,
        month_key=month.key,
        bots=bots,
        policies=[policy_live(query, p, now_ms, tenant.timezone) for p in policies],
        caps=caps,
        projections=projections,
    )
