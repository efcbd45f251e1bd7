"""What the hot path reads from a tenant's settings, derived once per settings object.

:func:`view_of` turns :class:`TenantSettings` into per-category tuples (caps with ``NEVER``
for none, warning levels in credits, whether the budget risk applies), the downgrade point,
the fallback texts and the batching interval, so an event costs comparisons, not lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from capstream.core.forecast import forecast_leads
from capstream.core.messages import fallback_text
from capstream.core.models.tenant import TenantSettings
from capstream.core.models.vocabulary import (
    CATEGORIES,
    DOWNGRADE_PLANS,
    FAST_BATCHING_S,
    NEVER,
    THROTTLED_BATCHING_S,
    CapPeriod,
    Throttle,
    warn_levels,
)
from capstream.core.series import SERIES_BY_CATEGORY, TEXT

DOWNGRADE_PERCENT: Final = 80
"""Auto-downgrade at this percentage of the daily text cap."""
RATE_SHORT_MS: Final = 3_600_000
"""Smart throttle: the window of the burn rate a budget-risk check extrapolates."""


@dataclass(frozen=True, slots=True)
class SettingsView:
    """What the hot path needs from :class:`TenantSettings`, computed once per settings."""

    settings: TenantSettings
    daily: tuple[int | None, ...]
    monthly: tuple[int | None, ...]
    limits: tuple[tuple[int, int], ...]
    """Per category (daily, monthly) cap with ``NEVER`` for none: one comparison each."""
    downgrade_at: int
    """Today's text credits at which to downgrade (``NEVER``: no auto-downgrade)."""
    watch_risk: tuple[bool, ...]
    """Per category: smart throttle on and the category has a cap (budget risk applies)."""
    fallback_daily: str
    fallback_monthly: str
    smart: bool
    strict: bool
    batching_s: int
    budget_rings: tuple[tuple[int, int], ...]
    muted: frozenset[str]
    """Notification kinds the tenant switched off."""
    warnings: tuple[tuple[tuple[int, int], ...], ...]
    """Per category and period (index ``2 * category + (0 daily, 1 monthly)``), the cap's
    warning levels as (percent, credits at which it fires), ascending."""
    forecast: tuple[int, ...]
    """Per category and period (as ``warnings``) the forecast lead in ms, 0: none
    (``core/forecast.py``)."""
    forecast_on: tuple[bool, ...]
    """Per category: a forecast of one of its caps is asked for."""


def view_of(settings: TenantSettings) -> SettingsView:
    """Derive the :class:`SettingsView` of ``settings``."""
    caps = [settings.caps.get(c) for c in CATEGORIES]
    daily = tuple(c.daily_micro if c is not None else None for c in caps)
    monthly = tuple(c.monthly_micro if c is not None else None for c in caps)
    has_caps = tuple(d is not None or m is not None for d, m in zip(daily, monthly, strict=True))
    text_daily = daily[TEXT]
    downgrade_at = NEVER
    if settings.auto_downgrade and settings.plan in DOWNGRADE_PLANS and text_daily is not None:
        downgrade_at = -(-text_daily * DOWNGRADE_PERCENT // 100)
    smart = settings.throttle == Throttle.SMART
    strict = settings.throttle == Throttle.STRICT
    forecast = forecast_leads(settings)
    budget: list[tuple[int, int]] = []
    for ci, capped in enumerate(has_caps):
        if (smart and capped) or forecast[2 * ci]:  # the daily forecast's pace: the same ring
            budget.append((SERIES_BY_CATEGORY + ci, RATE_SHORT_MS))
    template, lang = settings.fallback_message, settings.language
    warnings: list[tuple[tuple[int, int], ...]] = []
    for ci, cat in enumerate(CATEGORIES):
        cc = settings.caps.get(cat)
        for cap, pcts in (
            (daily[ci], cc.daily_warn_percents if cc is not None else None),
            (monthly[ci], cc.monthly_warn_percents if cc is not None else None),
        ):
            levels: list[tuple[int, int]] = []
            if cap:
                for pct in warn_levels(pcts):
                    amount = max(1, -(-cap * pct // 100))
                    if amount < cap and (not levels or amount > levels[-1][1]):
                        levels.append((pct, amount))
            warnings.append(tuple(levels))
    return SettingsView(
        settings=settings,
        daily=daily,
        monthly=monthly,
        limits=tuple(
            (NEVER if d is None else d, NEVER if m is None else m)
            for d, m in zip(daily, monthly, strict=True)
        ),
        downgrade_at=downgrade_at,
        watch_risk=tuple(smart and capped for capped in has_caps),
        fallback_daily=fallback_text(template, lang, CapPeriod.DAILY),
        fallback_monthly=fallback_text(template, lang, CapPeriod.MONTHLY),
        smart=smart,
        strict=strict,
        batching_s=THROTTLED_BATCHING_S if strict else FAST_BATCHING_S,
        budget_rings=tuple(budget),
        muted=frozenset(settings.muted_notifications),
        warnings=tuple(warnings),
        forecast=forecast,
        forecast_on=tuple(
            bool(forecast[2 * ci] or forecast[2 * ci + 1]) for ci in range(len(CATEGORIES))
        ),
    )
