"""capstream.core: the pure decision core (usage windows, caps, policies, gate verdicts)."""

from capstream.core.clock import EventClock
from capstream.core.errors import (
    CoreError,
    EventError,
    PlanError,
    PolicyError,
    SettingsError,
    StateFormatError,
)
from capstream.core.evaluate import evaluate, expire, next_deadline, reevaluate
from capstream.core.feed import FeedKey, apply_cap_hit, feed_key
from capstream.core.gate import FallbackLedger, gate
from capstream.core.messages import (
    DEFAULT_FALLBACK,
    fallback_text,
    feed_cta,
    feed_message,
    panel_cta,
)
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    Action,
    AlertAction,
    BlockAction,
    CapHit,
    CapPeriod,
    CapStatus,
    Category,
    CategoryCaps,
    EnforcementState,
    FeedRow,
    Language,
    Metric,
    Notification,
    Plan,
    Policy,
    PolicyScope,
    TenantSettings,
    Throttle,
    UsageEvent,
    Verdict,
)
from capstream.core.notifications import topup_request
from capstream.core.periods import (
    Period,
    day_period,
    first_of_next_month,
    month_period,
    next_local_midnight,
)
from capstream.core.policies import PolicySet
from capstream.core.state import AccountState, Effects
from capstream.core.usage import AccountUsage, BotUsage
from capstream.core.windows import Ring

__all__ = [
    "ACCOUNT_WIDE_BOT",
    "DEFAULT_FALLBACK",
    "AccountState",
    "AccountUsage",
    "Action",
    "AlertAction",
    "BlockAction",
    "BotUsage",
    "CapHit",
    "CapPeriod",
    "CapStatus",
    "Category",
    "CategoryCaps",
    "CoreError",
    "Effects",
    "EnforcementState",
    "EventClock",
    "EventError",
    "FallbackLedger",
    "FeedKey",
    "FeedRow",
    "Language",
    "Metric",
    "Notification",
    "Period",
    "Plan",
    "PlanError",
    "Policy",
    "PolicyError",
    "PolicyScope",
    "PolicySet",
    "Ring",
    "SettingsError",
    "StateFormatError",
    "TenantSettings",
    "Throttle",
    "UsageEvent",
    "Verdict",
    "apply_cap_hit",
    "day_period",
    "evaluate",
    "expire",
    "fallback_text",
    "feed_cta",
    "feed_key",
    "feed_message",
    "first_of_next_month",
    "gate",
    "month_period",
    "next_deadline",
    "next_local_midnight",
    "panel_cta",
    "reevaluate",
    "topup_request",
]
