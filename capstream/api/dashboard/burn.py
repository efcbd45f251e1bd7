"""Burn-rate projections: where today's and this month's credits are heading at the current pace."""

from __future__ import annotations

from pydantic import BaseModel

HOUR_MS = 3_600_000
MIN_PACE_SPAN_MS = 60_000
"""Never extrapolate from less than a minute of observation (one call is not a pace)."""


class Projection(BaseModel):
    """One category's period (the local day or month): used so far, pace, projected end.

    ``rate_micro_per_hour`` is the pace the projection assumes: for the day, the last hour's
    (measured from the first usage in that hour when it began less than an hour ago); for
    the month, the month-to-date pace (from the first usage of the month).
    ``reaches_cap_at_ms``: when that pace reaches the cap before the period ends (None if it
    does not, if there is no cap, or if the cap is already reached).
    """

    category: str
    period: str
    used_micro: int
    rate_micro_per_hour: float
    projected_micro: int
    cap_micro: int | None
    period_end_ms: int
    reaches_cap_at_ms: int | None
    projected_over_cap: bool
    cap_reached: bool


def pace_per_ms(amount: int, first_seen_ms: int | None, since_ms: int, now_ms: int) -> float:
    """``amount`` spread over the span it was spent in: from ``since_ms`` or, when the first
    usage came later, from that first usage (at least a minute) up to ``now_ms``."""
    if amount <= 0:
        return 0.0
    start = since_ms if first_seen_ms is None else max(since_ms, first_seen_ms)
    return amount / max(MIN_PACE_SPAN_MS, now_ms - start)


def project(
    category: str,
    period: str,
    used_micro: int,
    rate_per_ms: float,
    now_ms: int,
    period_end_ms: int,
    cap_micro: int | None,
) -> Projection:
    """The period's projected total at ``rate_per_ms`` and when it crosses ``cap_micro``."""
    left_ms = max(0, period_end_ms - now_ms)
    projected = used_micro + round(rate_per_ms * left_ms)
    reached = cap_micro is not None and used_micro >= cap_micro
    eta: int | None = None
    if cap_micro is not None and not reached and rate_per_ms > 0:
        at = now_ms + int((cap_micro - used_micro) / rate_per_ms)
        eta = at if at < period_end_ms else None
    return Projection(
        category=category,
        period=period,
        used_micro=used_micro,
        rate_micro_per_hour=round(rate_per_ms * HOUR_MS, 3),
        projected_micro=projected,
        cap_micro=cap_micro,
        period_end_ms=period_end_ms,
        reaches_cap_at_ms=eta,
        projected_over_cap=cap_micro is not None and projected >= cap_micro,
        cap_reached=reached,
    )
