"""Domain vocabulary of the decision core: events, policies, settings, enforcement, verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from capstream.core.errors import PolicyError, SettingsError
from capstream.core.periods import zone


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


class CapPeriod(StrEnum):
    """Calendar cap period in the tenant's timezone."""

    DAILY = "daily"
    MONTHLY = "monthly"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
CATEGORY_INDEX: dict[str, int] = {c: i for i, c in enumerate(CATEGORIES)}
METRICS = frozenset(m.value for m in Metric)
PLANS = frozenset(p.value for p in Plan)
THROTTLES = frozenset(t.value for t in Throttle)
LANGUAGES = frozenset(lang.value for lang in Language)
SCOPES = frozenset(s.value for s in PolicyScope)
DOWNGRADE_PLANS = frozenset({Plan.PRO.value, Plan.ENTERPRISE.value})
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 31 * 86_400
FAST_BATCHING_S = 3
THROTTLED_BATCHING_S = 60
DEFAULT_PREMIUM_MODEL = "claude-sonnet-4-6"
DEFAULT_DOWNGRADE_MODEL = "claude-haiku"
ACCOUNT_WIDE_BOT = "*"
"""``bot_id`` of the account-level enforcement state: what applies to a bot with no state yet."""
NEVER = 1 << 62
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


MIN_FORECAST_LEAD_S = 60
MAX_FORECAST_LEAD_S = {"daily": 86_400, "monthly": 31 * 86_400}


def forecast_problem(caps: CategoryCaps) -> str | None:
    """What is wrong with a cap's forecast leads (``core/forecast.py``), or None."""
    for name, lead, cap in (
        ("daily", caps.daily_forecast_lead_s, caps.daily_micro),
        ("monthly", caps.monthly_forecast_lead_s, caps.monthly_micro),
    ):
        if lead is None:
            continue
        most = MAX_FORECAST_LEAD_S[name]
        if not MIN_FORECAST_LEAD_S <= lead <= most:
            return (
                f"the {name} forecast lead must be {MIN_FORECAST_LEAD_S}-{most} seconds, not {lead}"
            )
        if cap is None:
            return f"a {name} forecast lead needs a {name} cap"
    return None


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


@dataclass(slots=True, init=False)  # __init__ by hand: compiled, unlike a generated one
class UsageEvent:
    """One unit of bot usage recorded after an AI call (credits in integer micro-credits)."""

    event_id: str
    account_id: str
    bot_id: str
    conversation_id: str
    category: str
    model: str
    tokens_in: int
    tokens_out: int
    messages: int
    conversation_started: bool
    credits_micro: int
    occurred_at_ms: int
    attributes: dict[str, str]

    def __init__(
        self,
        event_id: str,
        account_id: str,
        bot_id: str,
        conversation_id: str,
        category: str,
        model: str,
        tokens_in: int,
        tokens_out: int,
        messages: int,
        conversation_started: bool,
        credits_micro: int,
        occurred_at_ms: int,
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.event_id = event_id
        self.account_id = account_id
        self.bot_id = bot_id
        self.conversation_id = conversation_id
        self.category = category
        self.model = model
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.messages = messages
        self.conversation_started = conversation_started
        self.credits_micro = credits_micro
        self.occurred_at_ms = occurred_at_ms
        self.attributes = {} if attributes is None else attributes


@dataclass(frozen=True, slots=True)
class AlertAction:
    """Email alert; empty ``recipients`` means the account owner."""

    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockAction:
    """Pause the bot (or every bot, for ``account_total``) for ``duration_seconds``."""

    duration_seconds: int


@dataclass(frozen=True, slots=True)
class Policy:
    """A usage policy: one metric against a threshold over a rolling window, with actions.

    The threshold of a ``credits`` policy is in micro-credits. Construction validates and
    raises :class:`PolicyError` with a message the user can act on.
    """

    policy_id: str
    account_id: str
    name: str
    metric: str
    threshold: int
    window_seconds: int
    scope: str
    bot_id: str | None
    alert: AlertAction | None
    block: BlockAction | None
    enabled: bool = True
    category: str | None = None
    version: int = 0
    updated_at_ms: int = 0
    warn_percents: tuple[int, ...] | None = None
    """Soft thresholds, in percent of ``threshold``: one warning per level per window
    (``None``: 50, 80 and 90; empty: none)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`PolicyError` if the policy cannot be enforced as written."""
        who = f"policy {self.policy_id!r}"
        if not self.policy_id or not self.account_id:
            raise PolicyError("a policy needs a policy_id and an account_id")
        if self.metric not in METRICS:
            raise PolicyError(
                f"{who}: metric must be one of {sorted(METRICS)}, not {self.metric!r}"
            )
        if isinstance(self.threshold, bool) or self.threshold <= 0:
            raise PolicyError(f"{who}: threshold must be a positive whole number")
        if not MIN_WINDOW_SECONDS <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise PolicyError(
                f"{who}: window_seconds must be between {MIN_WINDOW_SECONDS} (one minute) and "
                f"{MAX_WINDOW_SECONDS} (31 days), not {self.window_seconds}"
            )
        if self.scope not in SCOPES:
            raise PolicyError(f"{who}: scope must be one of {sorted(SCOPES)}, not {self.scope!r}")
        if self.scope == PolicyScope.BOT and not self.bot_id:
            raise PolicyError(f"{who}: scope 'bot' needs the bot_id of the bot to watch")
        if self.scope != PolicyScope.BOT and self.bot_id is not None:
            raise PolicyError(
                f"{who}: bot_id is only allowed with scope 'bot'; remove it or set scope 'bot'"
            )
        if self.alert is None and self.block is None:
            raise PolicyError(f"{who}: add at least one action (an email alert, a block, or both)")
        if self.block is not None and self.block.duration_seconds <= 0:
            raise PolicyError(f"{who}: block duration_seconds must be positive")
        if self.alert is not None:
            for r in self.alert.recipients:
                if "@" not in r:
                    raise PolicyError(f"{who}: alert recipient {r!r} is not an email address")
        if self.category is not None:
            if self.metric != Metric.CREDITS:
                raise PolicyError(f"{who}: category is only allowed with the credits metric")
            if self.category not in CATEGORY_INDEX:
                raise PolicyError(f"{who}: category must be one of {list(CATEGORIES)}")
        problem = warn_problem(self.warn_percents)
        if problem is not None:
            raise PolicyError(f"{who}: warn_percents: {problem}")


@dataclass(frozen=True, slots=True)
class CategoryCaps:
    """Daily and monthly credit caps of one category (micro-credits; None = no cap), with
    their warning levels in percent of each cap (``None``: 50, 80 and 90; empty: none):
    one warning per level per local day (daily) or month (monthly)."""

    daily_micro: int | None = None
    monthly_micro: int | None = None
    daily_warn_percents: tuple[int, ...] | None = None
    monthly_warn_percents: tuple[int, ...] | None = None
    daily_forecast_lead_s: int | None = None
    """Send a ``cap_forecast`` when the pace reaches the daily cap within this many seconds
    (once per local day; None: no forecast). See ``core/forecast.py``."""
    monthly_forecast_lead_s: int | None = None


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """A tenant's cap behaviour; construction validates and raises :class:`SettingsError`."""

    account_id: str
    timezone: str = "UTC"
    language: str = "en"
    plan: str = "free"
    owner_email: str = ""
    caps: dict[str, CategoryCaps] = field(default_factory=dict)
    fallback_message: str = ""
    auto_downgrade: bool = False
    premium_model: str = DEFAULT_PREMIUM_MODEL
    downgrade_model: str = DEFAULT_DOWNGRADE_MODEL
    throttle: str = "smart"
    version: int = 0
    updated_at_ms: int = 0
    muted_notifications: tuple[str, ...] = ()
    """Notification kinds the tenant switched off (of ``OPTIONAL_KINDS``)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the setting to fix."""
        for kind in self.muted_notifications:
            if kind not in OPTIONAL_KINDS:
                raise SettingsError(
                    f"muted_notifications: {kind!r} cannot be switched off; "
                    f"use any of {sorted(OPTIONAL_KINDS)}"
                )
        if not self.account_id:
            raise SettingsError("tenant settings need an account_id")
        zone(self.timezone)
        if self.language not in LANGUAGES:
            raise SettingsError(
                f"language must be one of {sorted(LANGUAGES)}, not {self.language!r}"
            )
        if self.plan not in PLANS:
            raise SettingsError(f"plan must be one of {sorted(PLANS)}, not {self.plan!r}")
        if self.throttle not in THROTTLES:
            raise SettingsError(
                f"throttle must be one of {sorted(THROTTLES)}, not {self.throttle!r}"
            )
        if self.auto_downgrade and self.plan not in DOWNGRADE_PLANS:
            raise SettingsError(
                "auto-downgrade needs the Pro or Enterprise plan; turn it off or upgrade"
            )
        if self.auto_downgrade and not (self.premium_model and self.downgrade_model):
            raise SettingsError("auto-downgrade needs both a premium and a downgrade model")
        for cat, caps in self.caps.items():
            if cat not in CATEGORY_INDEX:
                raise SettingsError(f"caps: unknown category {cat!r}; use {list(CATEGORIES)}")
            for name, value in (("daily", caps.daily_micro), ("monthly", caps.monthly_micro)):
                if value is not None and value < 0:
                    raise SettingsError(f"caps: the {name} {cat} cap cannot be negative")
            for name, levels in (
                ("daily", caps.daily_warn_percents),
                ("monthly", caps.monthly_warn_percents),
            ):
                problem = warn_problem(levels)
                if problem is not None:
                    raise SettingsError(f"caps: the {name} {cat} cap's warn_percents: {problem}")
            problem = forecast_problem(caps)
            if problem is not None:
                raise SettingsError(f"caps: {cat}: {problem}")


@dataclass(slots=True, init=False, eq=False)
class CapStatus:
    """A capped category: which cap, for which local period, and when it resumes.

    Read-only by convention. ``__init__``, ``__eq__`` and ``__hash__`` are written by hand:
    compiled, unlike generated ones (the core builds and compares these per capped event).
    """

    period: str
    period_key: str
    resumes_at_ms: int

    def __init__(self, period: str, period_key: str, resumes_at_ms: int) -> None:
        self.period = period
        self.period_key = period_key
        self.resumes_at_ms = resumes_at_ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapStatus):
            return NotImplemented
        return (
            self.resumes_at_ms == other.resumes_at_ms
            and self.period == other.period
            and self.period_key == other.period_key
        )

    def __hash__(self) -> int:
        return hash((self.period, self.period_key, self.resumes_at_ms))


@dataclass(slots=True)
class CapHit:
    """An AI attempt refused by a cap; the gateway reports it so the feed row counts it.

    Not frozen (gate() builds one per refused call and frozen construction costs ~3x);
    treat it as read-only.
    """

    account_id: str
    bot_id: str
    conversation_id: str
    category: str
    period: str
    period_key: str
    occurred_at_ms: int
    hit_id: str


@dataclass(slots=True, init=False)
class Verdict:
    """What the gateway does with one AI call.

    ``action``: ``allow`` (use ``model`` with ``batching_interval_s``), ``fallback`` (send
    ``text`` instead), ``skip`` (do nothing, silently) or ``paused`` (a policy block).
    ``reply_at_ms`` (added; throttled only): the conversation already got its reply this
    minute; hold the batch and reply at that instant, not before. ``resumes_at_ms`` (added;
    refusals only): when the refusal ends (the block's end for ``paused``, the cap period's
    end for ``fallback`` and ``skip``), so a gateway can say "back at 00:00"; None when
    unknown (a fail-closed gateway's ``control_unavailable``).

    Read-only by contract: gate() hands out shared, precomputed instances on its fast path
    (not frozen because frozen construction would triple the cost of the slow paths).
    """

    action: str
    model: str | None
    batching_interval_s: int
    text: str | None
    reason: str | None
    cap_hit: CapHit | None
    reply_at_ms: int | None
    resumes_at_ms: int | None

    def __init__(  # by hand: compiled, unlike a generated one
        self,
        action: str,
        model: str | None,
        batching_interval_s: int,
        text: str | None,
        reason: str | None,
        cap_hit: CapHit | None,
        reply_at_ms: int | None = None,
        resumes_at_ms: int | None = None,
    ) -> None:
        self.action = action
        self.model = model
        self.batching_interval_s = batching_interval_s
        self.text = text
        self.reason = reason
        self.cap_hit = cap_hit
        self.reply_at_ms = reply_at_ms
        self.resumes_at_ms = resumes_at_ms


@dataclass(slots=True, init=False)
class EnforcementState:
    """A bot's whole enforcement state (control topic value); ``version`` increments on change.

    ``premium_model`` (added field) is the model to return to when ``downgraded_until_ms``
    passes; empty means the built-in default premium model. Fields starting with ``_`` are
    derived caches for :func:`gate`, computed at construction and not part of the wire format.
    Read-only by convention (not frozen: a frozen dataclass's generated ``__init__`` runs
    interpreted even when compiled, ~3 us per state; this one is written by hand).
    """

    account_id: str
    bot_id: str
    version: int
    updated_at_ms: int
    blocked_until_ms: int | None
    block_policy_id: str | None
    model: str
    downgraded_until_ms: int | None
    batching_interval_s: int
    throttled_until_ms: int | None
    throttle_reason: str | None
    caps: dict[str, CapStatus]
    plan: str
    fallback_text_daily: str
    fallback_text_monthly: str
    premium_model: str = ""
    _fast_until_ms: int = field(init=False, repr=False, compare=False)
    _fast: dict[str, Verdict] = field(init=False, repr=False, compare=False)
    _paused: Verdict = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        account_id: str,
        bot_id: str,
        version: int,
        updated_at_ms: int,
        blocked_until_ms: int | None,
        block_policy_id: str | None,
        model: str,
        downgraded_until_ms: int | None,
        batching_interval_s: int,
        throttled_until_ms: int | None,
        throttle_reason: str | None,
        caps: dict[str, CapStatus],
        plan: str,
        fallback_text_daily: str,
        fallback_text_monthly: str,
        premium_model: str = "",
    ) -> None:
        self.account_id = account_id
        self.bot_id = bot_id
        self.version = version
        self.updated_at_ms = updated_at_ms
        self.blocked_until_ms = blocked_until_ms
        self.block_policy_id = block_policy_id
        self.model = model
        self.downgraded_until_ms = downgraded_until_ms
        self.batching_interval_s = batching_interval_s
        self.throttled_until_ms = throttled_until_ms
        self.throttle_reason = throttle_reason
        self.caps = caps
        self.plan = plan
        self.fallback_text_daily = fallback_text_daily
        self.fallback_text_monthly = fallback_text_monthly
        self.premium_model = premium_model
        # Precompute the verdicts that need neither the ledger nor the clock beyond one
        # deadline, so gate() is a comparison and a dict lookup on the common path.
        paused = Verdict(
            "paused", None, 0, None, f"policy_block:{self.block_policy_id}", None, None,
            self.blocked_until_ms,
        )  # fmt: skip
        fast: dict[str, Verdict] = {}
        until = NEVER
        if self.blocked_until_ms is not None:
            fast = dict.fromkeys(CATEGORIES, paused)
            until = self.blocked_until_ms
        elif self.batching_interval_s < THROTTLED_BATCHING_S:
            reason = None
            if self.downgraded_until_ms is not None:
                until = self.downgraded_until_ms
                reason = "downgraded"
            allow = Verdict("allow", self.model, self.batching_interval_s, None, reason, None)
            fast = {c: allow for c in CATEGORIES if c not in self.caps}
        self._fast_until_ms = until
        self._fast = fast
        self._paused = paused


@dataclass(frozen=True, slots=True)
class FeedRow:
    """The amber row of one conversation for one local day and category; attempts roll up.

    ``panel_cta`` (added): the call to action of the dashboard panel, None for a daily cap
    on a paid plan (it restores itself at midnight). ``recent_hit_ids`` (added) makes
    re-applying a recently applied hit a no-op.
    """

    account_id: str
    bot_id: str
    conversation_id: str
    local_day: str
    category: str
    period: str
    attempts: int
    message: str
    cta: str | None
    panel_cta: str | None = None
    last_hit_ms: int = 0
    recent_hit_ids: tuple[str, ...] = ()


@dataclass(slots=True, init=False)
class Notification:
    """Something to tell a person; ``notification_id`` is deterministic (send each id once).

    Read-only by convention (``__init__`` by hand: compiled, unlike a generated one)."""

    notification_id: str
    account_id: str
    kind: str
    policy_id: str | None
    recipients: tuple[str, ...]
    subject: str
    body: str
    created_at_ms: int
    window_start_ms: int | None
    bot_id: str | None
    """The bot a policy alert is about (``*``: every bot, an ``account_total`` policy)."""
    previous_ids: tuple[str, ...]
    """Ids the same notification had in earlier releases (the notifier treats one already in
    its sent-log, for the same account, as this notification)."""

    def __init__(
        self,
        notification_id: str,
        account_id: str,
        kind: str,
        policy_id: str | None,
        recipients: tuple[str, ...],
        subject: str,
        body: str,
        created_at_ms: int,
        window_start_ms: int | None,
        bot_id: str | None = None,
        previous_ids: tuple[str, ...] = (),
    ) -> None:
        self.notification_id = notification_id
        self.account_id = account_id
        self.kind = kind
        self.policy_id = policy_id
        self.recipients = recipients
        self.subject = subject
        self.body = body
        self.created_at_ms = created_at_ms
        self.window_start_ms = window_start_ms
        self.bot_id = bot_id
        self.previous_ids = previous_ids
