"""Credit grants: a top-up that raises one category's daily or monthly cap for one period.

A grant is for the local day or month (in the tenant's timezone) it was made in, named by
its period key (``YYYY-MM-DD`` / ``YYYY-MM``), optionally ending earlier at ``expires_at_ms``.
While it applies, the cap it names is the settings' cap plus every applying grant's amount;
the core decides on those raised caps like on any settings change (a capped category whose
total is now under its raised cap resumes at once). A grant to a period without a cap raises
nothing. Grants are counted once each by ``grant_id``: the same grant given twice (a replay,
a retry) is one grant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from capstream.core.errors import SettingsError
from capstream.core.models import CATEGORIES, TenantSettings
from capstream.core.periods import day_period, month_period

GRANT_PERIODS = ("daily", "monthly")
MAX_GRANT_MICRO = (1 << 62) - 1
"""A grant's amount is below this (the raised cap stays a signed 64-bit integer)."""


class GrantError(SettingsError):
    """A credit grant that cannot be applied as written."""


@dataclass(frozen=True, slots=True)
class CapGrant:
    """Credit added to one category's cap for one local day or month."""

    grant_id: str
    account_id: str
    category: str
    period: str
    """``daily`` or ``monthly``: which cap it raises."""
    period_key: str
    """The local day (``YYYY-MM-DD``) or month (``YYYY-MM``) it is for."""
    amount_micro: int
    expires_at_ms: int | None = None
    """It stops applying at this instant, if before its period's end."""
    granted_at_ms: int = 0

    def __post_init__(self) -> None:
        if not self.grant_id or not self.account_id:
            raise GrantError("a grant needs a grant_id and an account_id")
        if self.category not in CATEGORIES:
            raise GrantError(f"category must be one of {list(CATEGORIES)}, not {self.category!r}")
        if self.period not in GRANT_PERIODS:
            raise GrantError(f"period must be 'daily' or 'monthly', not {self.period!r}")
        if isinstance(self.amount_micro, bool) or not 0 < self.amount_micro <= MAX_GRANT_MICRO:
            raise GrantError("amount_micro must be a positive whole number of micro-credits")
        if len(self.period_key) != (10 if self.period == "daily" else 7):
            raise GrantError(f"period_key {self.period_key!r} is not a {self.period} key")

    def applies(self, settings: TenantSettings, now: int) -> bool:
        """True if the grant raises its cap at ``now`` (its period is the current one in the
        tenant's timezone and it has not expired)."""
        if self.expires_at_ms is not None and now >= self.expires_at_ms:
            return False
        current = day_period if self.period == "daily" else month_period
        return current(now, settings.timezone).key == self.period_key


def period_key(settings: TenantSettings, period: str, now: int) -> str:
    """The key of the tenant's current local day or month at ``now``."""
    if period not in GRANT_PERIODS:
        raise GrantError(f"period must be 'daily' or 'monthly', not {period!r}")
    current = day_period if period == "daily" else month_period
    return current(now, settings.timezone).key


def granted_caps(settings: TenantSettings, grants: Iterable[CapGrant], now: int) -> TenantSettings:
    """``settings`` with each cap raised by the grants that apply at ``now``; ``settings``
    itself (the same object) when none raises anything."""
    extra: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    for g in grants:
        if g.grant_id in seen or g.account_id != settings.account_id:
            continue
        seen.add(g.grant_id)
        if g.applies(settings, now):
            extra[(g.category, g.period)] = extra.get((g.category, g.period), 0) + g.amount_micro
    if not extra:
        return settings
    caps = dict(settings.caps)
    raised = False
    for (cat, period), amount in extra.items():
        cc = caps.get(cat)
        if cc is None:
            continue
        if period == "daily" and cc.daily_micro is not None:
            caps[cat] = dataclasses.replace(cc, daily_micro=_plus(cc.daily_micro, amount))
            raised = True
        elif period == "monthly" and cc.monthly_micro is not None:
            caps[cat] = dataclasses.replace(cc, monthly_micro=_plus(cc.monthly_micro, amount))
            raised = True
    if not raised:
        return settings
    return dataclasses.replace(settings, caps=caps)


def grants_change_at(settings: TenantSettings, grants: Iterable[CapGrant], now: int) -> int | None:
    """The next instant after ``now`` at which :func:`granted_caps` gives another result
    (a grant applying now expires or its period ends), or None."""
    soonest: int | None = None
    for g in grants:
        if not g.applies(settings, now):
            continue
        current = day_period if g.period == "daily" else month_period
        end = current(now, settings.timezone).end_ms
        if g.expires_at_ms is not None and g.expires_at_ms < end:
            end = g.expires_at_ms
        if soonest is None or end < soonest:
            soonest = end
    return soonest


def _plus(cap: int, amount: int) -> int:
    return min(cap + amount, (1 << 63) - 1)


__all__ = [
    "GRANT_PERIODS",
    "CapGrant",
    "GrantError",
    "granted_caps",
    "grants_change_at",
    "period_key",
]
