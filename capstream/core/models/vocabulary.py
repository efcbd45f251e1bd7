"""The core's vocabulary: categories, metrics, plans, scopes, periods, and its constants."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Category(StrEnum):
    """AI credit category; caps are set per category."""

    TEXT = "text"
    VISION = "vision"
    AUDIO = "audio"
    DOCUMENTS = "documents"


class Metric(StrEnum):
    """What a usage policy counts."""

    TOKENS = "tokens"
    MESSAGES = "messages"
    CONVERSATIONS = "conversations"
    CREDITS = "credits"


class Plan(StrEnum):
    """Billing plan of a tenant."""

    FREE = "free"
    STARTER = "starter"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class Throttle(StrEnum):
    """Adaptive throttle mode."""

    OFF = "off"
    SMART = "smart"
    STRICT = "strict"


class Language(StrEnum):
    """Tenant primary language (picks the built-in fallback text)."""

    EN = "en"
    UR = "ur"
    MS = "ms"
    AR = "ar"
    BN = "bn"
    ID = "id"
    ZH = "zh"


class PolicyScope(StrEnum):
    """What a policy watches: one bot, every bot separately, or the account's total."""

    BOT = "bot"
    ACCOUNT_EACH_BOT = "account_each_bot"
    ACCOUNT_TOTAL = "account_total"


class Action(StrEnum):
    """What a gateway does with one AI call (``Verdict.action``): allow it, send the fallback
    text instead, skip it silently, or pause (a policy block)."""

    ALLOW = "allow"
    FALLBACK = "fallback"
    SKIP = "skip"
    PAUSED = "paused"


class CapPeriod(StrEnum):
    """Calendar cap period in the tenant's timezone."""

    DAILY = "daily"
    MONTHLY = "monthly"


class PolicyPeriod(StrEnum):
    """The tenant's calendar period a calendar policy counts over (resets at its start)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


POLICY_PERIODS = frozenset(p.value for p in PolicyPeriod)


class PolicyAttribute(StrEnum):
    """The event attribute a per-attribute policy counts separately for each value of
    (``Policy.per``): the end user, the API key or the team (the event's ``attributes``
    under that key) or the event's ``model``."""

    END_USER = "end_user"
    API_KEY = "api_key"
    TEAM = "team"
    MODEL = "model"


POLICY_ATTRIBUTES = frozenset(a.value for a in PolicyAttribute)
DEFAULT_SCOPED_VALUES: Final = 10_000
"""Per account, how many (per-attribute policy, bot, value) counters the core keeps at most
(``AccountUsage.scoped_capacity``); the least recently used one is dropped for a new one."""
PERIOD_INDEX: Final[dict[str, int]] = {"day": 1, "week": 2, "month": 3}
"""Per calendar period, its index in ``CompiledPolicy.period`` (0: a rolling window)."""
CATEGORIES: Final[tuple[str, ...]] = tuple(c.value for c in Category)
CATEGORY_INDEX: Final[dict[str, int]] = {c: i for i, c in enumerate(CATEGORIES)}
METRICS = frozenset(m.value for m in Metric)
PLANS = frozenset(p.value for p in Plan)
THROTTLES = frozenset(t.value for t in Throttle)
LANGUAGES = frozenset(lang.value for lang in Language)
SCOPES = frozenset(s.value for s in PolicyScope)
DOWNGRADE_PLANS = frozenset({Plan.PRO.value, Plan.ENTERPRISE.value})
MIN_WINDOW_SECONDS: Final = 60
MAX_WINDOW_SECONDS: Final = 31 * 86_400
FAST_BATCHING_S: Final = 3
THROTTLED_BATCHING_S: Final = 60
DEFAULT_PREMIUM_MODEL: Final = "claude-sonnet-4-6"
DEFAULT_DOWNGRADE_MODEL: Final = "claude-haiku"
ACCOUNT_WIDE_BOT: Final = "*"
"""``bot_id`` of the account-level enforcement state: what applies to a bot with no state yet."""
NEVER: Final = 1 << 62
"""Larger than any instant, amount or threshold: "no deadline", "no cap"."""
DEFAULT_WARN_PERCENTS: tuple[int, ...] = (50, 80, 90)
"""Warning levels of a policy or a cap left at its default (``warn_percents`` None)."""
MAX_WARN_LEVELS = 10
NOTIFICATION_KINDS: tuple[str, ...] = (
    "policy_alert", "policy_warning", "cap_reached", "cap_warning", "topup_request",
    "downgrade_started", "downgrade_ended", "throttle_engaged", "block_lifted", "cap_forecast",
)  # fmt: skip
"""Every notification kind the core builds."""
OPTIONAL_KINDS: frozenset[str] = frozenset(
    {"policy_warning", "cap_warning", "downgrade_started", "downgrade_ended",
     "throttle_engaged", "block_lifted"}
)  # fmt: skip
"""The kinds a tenant may switch off (``TenantSettings.muted_notifications``)."""


def warn_problem(levels: tuple[int, ...] | None) -> str | None:
    """What is wrong with a list of warning levels (percent of a threshold or cap), or None.

    ``None`` means the default (50, 80, 90); an empty tuple switches warnings off."""
    if levels is None:
        return None
    if len(levels) > MAX_WARN_LEVELS:
        return f"at most {MAX_WARN_LEVELS} warning levels, not {len(levels)}"
    for pct in levels:
        if isinstance(pct, bool) or not isinstance(pct, int) or not 1 <= pct <= 99:
            return f"warning levels are whole percentages from 1 to 99, not {pct!r}"
    if len(set(levels)) != len(levels):
        return f"warning levels repeat a value: {list(levels)}"
    return None


def warn_levels(levels: tuple[int, ...] | None) -> tuple[int, ...]:
    """The effective warning levels, ascending (``None``: the default)."""
    return DEFAULT_WARN_PERCENTS if levels is None else tuple(sorted(levels))
