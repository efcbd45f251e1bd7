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
    SCOPES,
    Metric,
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
