"""A tenant's settings: caps per category, plan, language, throttle, downgrade, mutes."""

from __future__ import annotations

from dataclasses import dataclass

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
    Language,
    Plan,
    Throttle,
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
    daily_forecast_lead_s: int | None = None
    """Send a ``cap_forecast`` when the pace reaches the daily cap within this many seconds
    (once per local day; None: no forecast). See ``core/forecast.py``."""
    monthly_forecast_lead_s: int | None = None


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


@dataclass(frozen=True, slots=True, init=False)
class TenantSettings:
    """A tenant's cap behaviour; construction validates and raises :class:`SettingsError`.

    ``language``, ``plan`` and ``throttle`` are enums (:class:`Language`, :class:`Plan`,
    :class:`Throttle`); their values as strings are accepted too."""

    account_id: str
    timezone: str
    language: Language
    plan: Plan
    owner_email: str
    caps: dict[str, CategoryCaps]
    fallback_message: str
    auto_downgrade: bool
    premium_model: str
    downgrade_model: str
    throttle: Throttle
    version: int
    updated_at_ms: int
    muted_notifications: tuple[str, ...]
    """Notification kinds the tenant switched off (of ``OPTIONAL_KINDS``)."""

    def __init__(  # by hand: a str given for an enum field becomes the enum (or an error)
        self,
        account_id: str,
        timezone: str = "UTC",
        language: Language | str = Language.EN,
        plan: Plan | str = Plan.FREE,
        owner_email: str = "",
        caps: dict[str, CategoryCaps] | None = None,
        fallback_message: str = "",
        auto_downgrade: bool = False,
        premium_model: str = DEFAULT_PREMIUM_MODEL,
        downgrade_model: str = DEFAULT_DOWNGRADE_MODEL,
        throttle: Throttle | str = Throttle.SMART,
        version: int = 0,
        updated_at_ms: int = 0,
        muted_notifications: tuple[str, ...] = (),
    ) -> None:
        _check_first(account_id, timezone, language, plan, throttle, muted_notifications)
        values = (
            account_id, timezone, Language(language), Plan(plan), owner_email,
            {} if caps is None else caps, fallback_message, auto_downgrade, premium_model,
            downgrade_model, Throttle(throttle), version, updated_at_ms, muted_notifications,
        )  # fmt: skip
        for attr, value in zip(_FIELDS, values, strict=True):
            object.__setattr__(self, attr, value)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingsError` naming the setting to fix."""
        _check_first(
            self.account_id, self.timezone, self.language, self.plan, self.throttle,
            self.muted_notifications,
        )  # fmt: skip
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


_FIELDS = (
    "account_id", "timezone", "language", "plan", "owner_email", "caps", "fallback_message",
    "auto_downgrade", "premium_model", "downgrade_model", "throttle", "version",
    "updated_at_ms", "muted_notifications",
)  # fmt: skip


def _check_first(
    account_id: str,
    timezone: str,
    language: str,
    plan: str,
    throttle: str,
    muted_notifications: tuple[str, ...],
) -> None:
    """The checks before the enum fields are stored (in the order the errors are told)."""
    for kind in muted_notifications:
        if kind not in OPTIONAL_KINDS:
            raise SettingsError(
                f"muted_notifications: {kind!r} cannot be switched off; "
                f"use any of {sorted(OPTIONAL_KINDS)}"
            )
    if not account_id:
        raise SettingsError("tenant settings need an account_id")
    zone(timezone)
    if language not in LANGUAGES:
        raise SettingsError(f"language must be one of {sorted(LANGUAGES)}, not {language!r}")
    if plan not in PLANS:
        raise SettingsError(f"plan must be one of {sorted(PLANS)}, not {plan!r}")
    if throttle not in THROTTLES:
        raise SettingsError(f"throttle must be one of {sorted(THROTTLES)}, not {throttle!r}")
