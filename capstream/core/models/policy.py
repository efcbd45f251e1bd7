"""A usage policy and its actions, as the tenant wrote it (validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass

from capstream.core.errors import PolicyError
from capstream.core.models.vocabulary import (
    CATEGORIES,
    CATEGORY_INDEX,
    MAX_WINDOW_SECONDS,
    METRICS,
    MIN_WINDOW_SECONDS,
    POLICY_ATTRIBUTES,
    POLICY_PERIODS,
    SCOPES,
    Category,
    Metric,
    PolicyAttribute,
    PolicyPeriod,
    PolicyScope,
    warn_problem,
)


@dataclass(frozen=True, slots=True)
class AlertAction:
    """Email alert; empty ``recipients`` means the account owner."""

    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockAction:
    """Pause the bot (or every bot, for ``account_total``) for ``duration_seconds``."""

    duration_seconds: int


@dataclass(frozen=True, slots=True, init=False)
class Policy:
    """A usage policy: one metric against a threshold over a rolling window (or the tenant's
    calendar day, week or month: ``period``), with actions.

    The threshold of a ``credits`` policy is in micro-credits. Construction validates and
    raises :class:`PolicyError` with a message the user can act on. ``metric``, ``scope``
    and ``category`` are enums (:class:`Metric`, :class:`PolicyScope`, :class:`Category`);
    their values as strings are accepted too (the records and the API carry strings).
    """

    policy_id: str
    account_id: str
    name: str
    metric: Metric
    threshold: int
    window_seconds: int
    scope: PolicyScope
    bot_id: str | None
    alert: AlertAction | None
    block: BlockAction | None
    enabled: bool
    category: Category | None
    version: int
    updated_at_ms: int
    warn_percents: tuple[int, ...] | None
    """Soft thresholds, in percent of ``threshold``: one warning per level per window
    (``None``: 50, 80 and 90; empty: none)."""
    period: PolicyPeriod | None
    """A calendar policy: counts over the tenant's current local day, week (Monday 00:00)
    or month and resets at its start; ``window_seconds`` is then 0. ``None``: a rolling
    window of ``window_seconds``."""
    per: PolicyAttribute | None
    """A per-attribute policy: counts separately for each value of this event attribute
    (end user, API key, team, model) within its scope, and alerts and blocks that value
    only; events without the attribute are not counted. ``None``: the whole bot/account."""
    per_value: str | None
    """With ``per``: count only events whose attribute has this value (e.g. model
    ``gpt-4o``). ``None``: every value separately."""

    def __init__(  # by hand: a str given for an enum field becomes the enum (or an error)
        self,
        policy_id: str,
        account_id: str,
        name: str,
        metric: Metric | str,
        threshold: int,
        window_seconds: int,
        scope: PolicyScope | str,
        bot_id: str | None,
        alert: AlertAction | None,
        block: BlockAction | None,
        enabled: bool = True,
        category: Category | str | None = None,
        version: int = 0,
        updated_at_ms: int = 0,
        warn_percents: tuple[int, ...] | None = None,
        period: PolicyPeriod | str | None = None,
        per: PolicyAttribute | str | None = None,
        per_value: str | None = None,
    ) -> None:
        _validate(
            policy_id, account_id, metric, threshold, window_seconds, scope, bot_id, alert,
            block, category, warn_percents, period, per, per_value,
        )  # fmt: skip
        values = (
            policy_id, account_id, name, Metric(metric), threshold, window_seconds,
            PolicyScope(scope), bot_id, alert, block, enabled,
            None if category is None else Category(category), version, updated_at_ms,
            warn_percents, None if period is None else PolicyPeriod(period),
            None if per is None else PolicyAttribute(per), per_value,
        )  # fmt: skip
        for attr, value in zip(_FIELDS, values, strict=True):
            object.__setattr__(self, attr, value)

    def validate(self) -> None:
        """Raise :class:`PolicyError` if the policy cannot be enforced as written."""
        _validate(
            self.policy_id, self.account_id, self.metric, self.threshold, self.window_seconds,
            self.scope, self.bot_id, self.alert, self.block, self.category, self.warn_percents,
            self.period, self.per, self.per_value,
        )  # fmt: skip


_FIELDS = (
    "policy_id", "account_id", "name", "metric", "threshold", "window_seconds", "scope",
    "bot_id", "alert", "block", "enabled", "category", "version", "updated_at_ms",
    "warn_percents", "period", "per", "per_value",
)  # fmt: skip


def _validate(
    policy_id: str,
    account_id: str,
    metric: str,
    threshold: int,
    window_seconds: int,
    scope: str,
    bot_id: str | None,
    alert: AlertAction | None,
    block: BlockAction | None,
    category: str | None,
    warn_percents: tuple[int, ...] | None,
    period: str | None = None,
    per: str | None = None,
    per_value: str | None = None,
) -> None:
    who = f"policy {policy_id!r}"
    if not policy_id or not account_id:
        raise PolicyError("a policy needs a policy_id and an account_id")
    if metric not in METRICS:
        raise PolicyError(f"{who}: metric must be one of {sorted(METRICS)}, not {metric!r}")
    if isinstance(threshold, bool) or threshold <= 0:
        raise PolicyError(f"{who}: threshold must be a positive whole number")
    if period is not None:
        if period not in POLICY_PERIODS:
            raise PolicyError(
                f"{who}: period must be one of {sorted(POLICY_PERIODS)}, not {period!r}"
            )
        if window_seconds != 0:
            raise PolicyError(
                f"{who}: a calendar policy (period {period!r}) has no rolling window: "
                "set window_seconds to 0 or leave period out"
            )
    elif not MIN_WINDOW_SECONDS <= window_seconds <= MAX_WINDOW_SECONDS:
        raise PolicyError(
            f"{who}: window_seconds must be between {MIN_WINDOW_SECONDS} (one minute) and "
            f"{MAX_WINDOW_SECONDS} (31 days), not {window_seconds}"
        )
    if scope not in SCOPES:
        raise PolicyError(f"{who}: scope must be one of {sorted(SCOPES)}, not {scope!r}")
    if scope == PolicyScope.BOT and not bot_id:
        raise PolicyError(f"{who}: scope 'bot' needs the bot_id of the bot to watch")
    if scope != PolicyScope.BOT and bot_id is not None:
        raise PolicyError(
            f"{who}: bot_id is only allowed with scope 'bot'; remove it or set scope 'bot'"
        )
    if alert is None and block is None:
        raise PolicyError(f"{who}: add at least one action (an email alert, a block, or both)")
    if block is not None and block.duration_seconds <= 0:
        raise PolicyError(f"{who}: block duration_seconds must be positive")
    if alert is not None:
        for r in alert.recipients:
            if "@" not in r:
                raise PolicyError(f"{who}: alert recipient {r!r} is not an email address")
    if category is not None and metric != Metric.CREDITS:
        raise PolicyError(f"{who}: category is only allowed with the credits metric")
    if category is not None and category not in CATEGORY_INDEX:
        raise PolicyError(f"{who}: category must be one of {list(CATEGORIES)}")
    if per is not None:
        if per not in POLICY_ATTRIBUTES:
            raise PolicyError(f"{who}: per must be one of {sorted(POLICY_ATTRIBUTES)}, not {per!r}")
        if period is not None:
            raise PolicyError(
                f"{who}: a per-{per} policy counts over a rolling window: "
                "set window_seconds instead of period"
            )
        if alert is None:
            raise PolicyError(
                f"{who}: add an alert action: a per-{per} policy reports each value it "
                "blocks by its alert (gateways do not yet refuse one value)"
            )
        if per_value is not None and not per_value:
            raise PolicyError(f"{who}: per_value cannot be empty (leave it out for every value)")
    elif per_value is not None:
        raise PolicyError(f"{who}: per_value needs per (the attribute it is a value of)")
    problem = warn_problem(warn_percents)
    if problem is not None:
        raise PolicyError(f"{who}: warn_percents: {problem}")
