"""The core's vocabulary and records, one module per kind (all names importable from here):

* ``vocabulary``: enums (categories, metrics, plans, scopes, periods, ...) and constants;
* ``event``: ``UsageEvent``, what the core applies;
* ``policy``: ``Policy`` and its actions, as the tenant wrote it;
* ``tenant``: ``TenantSettings`` and ``CategoryCaps``;
* ``decisions``: what the core decides and reports (``EnforcementState``, ``Verdict``,
  ``CapStatus``, ``CapHit``, ``FeedRow``, ``Notification``).
"""

from capstream.core.models.decisions import (
    CapHit,
    CapStatus,
    EnforcementState,
    FeedRow,
    Notification,
    Verdict,
)
from capstream.core.models.event import (
    UsageEvent,
)
from capstream.core.models.policy import (
    AlertAction,
    BlockAction,
    Policy,
)
from capstream.core.models.tenant import (
    CategoryCaps,
    TenantSettings,
)
from capstream.core.models.vocabulary import (
    ACCOUNT_WIDE_BOT,
    CATEGORIES,
    CATEGORY_INDEX,
    DEFAULT_DOWNGRADE_MODEL,
    DEFAULT_PREMIUM_MODEL,
    DEFAULT_WARN_PERCENTS,
    DOWNGRADE_PLANS,
    FAST_BATCHING_S,
    LANGUAGES,
    MAX_WARN_LEVELS,
    MAX_WINDOW_SECONDS,
    METRICS,
    MIN_WINDOW_SECONDS,
    NEVER,
    NOTIFICATION_KINDS,
    OPTIONAL_KINDS,
    PLANS,
    SCOPES,
    THROTTLED_BATCHING_S,
    THROTTLES,
    Action,
    CapPeriod,
    Category,
    Language,
    Metric,
    Plan,
    PolicyPeriod,
    PolicyScope,
    Throttle,
    warn_levels,
    warn_problem,
)

__all__ = [
    "ACCOUNT_WIDE_BOT",
    "CATEGORIES",
    "CATEGORY_INDEX",
    "DEFAULT_DOWNGRADE_MODEL",
    "DEFAULT_PREMIUM_MODEL",
    "DEFAULT_WARN_PERCENTS",
    "DOWNGRADE_PLANS",
    "FAST_BATCHING_S",
    "LANGUAGES",
    "MAX_WARN_LEVELS",
    "MAX_WINDOW_SECONDS",
    "METRICS",
    "MIN_WINDOW_SECONDS",
    "NEVER",
    "NOTIFICATION_KINDS",
    "OPTIONAL_KINDS",
    "PLANS",
    "SCOPES",
    "THROTTLED_BATCHING_S",
    "THROTTLES",
    "Action",
    "AlertAction",
    "BlockAction",
    "CapHit",
    "CapPeriod",
    "CapStatus",
    "Category",
    "CategoryCaps",
    "EnforcementState",
    "FeedRow",
    "Language",
    "Metric",
    "Notification",
    "Plan",
    "Policy",
    "PolicyPeriod",
    "PolicyScope",
    "TenantSettings",
    "Throttle",
    "UsageEvent",
    "Verdict",
    "warn_levels",
    "warn_problem",
]
