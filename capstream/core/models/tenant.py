"""A tenant's settings: caps per category, plan, language, throttle, downgrade, mutes."""

from __future__ import annotations

from dataclasses import dataclass, field

from capstream.core.errors import SettingsError
from capstream.core.models.vocabulary import (
    CATEGORIES,
    CATEGORY_INDEX,
    DEFAULT_DOWNGRADE_MODEL,
    DEFAULT_PREMIUM_MODEL,
    DOWNGRADE_PLANS,
    LANGUAGES,
    OPTIONAL_KINDS,
    PLANS,
    THROTTLES,
    warn_problem,
)
from capstream.core.periods import zone


@dataclass(frozen=True, slots=True)
class CategoryCaps:
    """Daily and monthly credit caps of one category (micro-credits; None = no cap), with
    their warning levels in percent of each cap (``None``: 50, 80 and 90; empty: none):
    one warning per level per local day (daily) or month (monthly)."""

    daily_micro: int | None = None
    monthly_micro: int | None = None
    daily_warn_percents: tuple[int, ...] | None = None
    monthly_warn_percents: tuple[int, ...] | None = None


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
