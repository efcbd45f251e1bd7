"""What is counted (the series, by index) and policies compiled against those series.

A usage state counts ``N_SERIES`` series per bot and per account, each a ``Final`` index
(mypyc folds them): tokens (in + out), messages, conversations started, credits of every
category, then credits per category (``SERIES_BY_CATEGORY + category index``: text, vision,
audio, documents). A policy watches one series over one rolling window
(:class:`CompiledPolicy`) or over the tenant's calendar day, week or month (``period``);
:class:`WatchEntry` is one (series, window) a usage state keeps a
ring for, with the policies that watch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from capstream.core.models.policy import Policy
from capstream.core.models.vocabulary import (
    CATEGORY_INDEX,
    NEVER,
    PERIOD_INDEX,
    Metric,
    warn_levels,
)
from capstream.core.windows import Ring

SERIES_TOKENS: Final = 0
SERIES_MESSAGES: Final = 1
SERIES_CONVERSATIONS: Final = 2
SERIES_CREDITS: Final = 3
"""Credits of every category."""
SERIES_BY_CATEGORY: Final = 4
"""Credits of category ``ci`` (its index in ``CATEGORIES``): series ``SERIES_BY_CATEGORY + ci``."""
N_CATEGORIES: Final = 4
N_SERIES: Final = 8
"""``SERIES_BY_CATEGORY + N_CATEGORIES``."""
TEXT: Final = 0
"""Category index of text (the category the auto-downgrade watches)."""
SERIES_TEXT_CREDITS: Final = 4
"""``SERIES_BY_CATEGORY + TEXT``."""
DAILY: Final = 0
MONTHLY: Final = 1
"""Per category, the daily and monthly slots of per-(category, period) lists: slot
``2 * ci + DAILY`` or ``2 * ci + MONTHLY``."""

_METRIC_SERIES = {
    Metric.TOKENS: SERIES_TOKENS,
    Metric.MESSAGES: SERIES_MESSAGES,
    Metric.CONVERSATIONS: SERIES_CONVERSATIONS,
}


def series_of(metric: str, category: str | None) -> int:
    """Index of the series a policy on ``metric`` (and credits ``category``) watches."""
    if metric == Metric.CREDITS:
        if category is None:
            return SERIES_CREDITS
        return SERIES_BY_CATEGORY + CATEGORY_INDEX[category]
    return _METRIC_SERIES[Metric(metric)]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy reduced to what the hot path needs."""

    policy: Policy
    policy_id: str
    series: int
    window_ms: int
    threshold: int
    block_ms: int
    alerts: bool
    warn_percent: int = 0
    """A warning level's percent (0: the policy itself); its ``policy_id`` is the
    ``warn_key`` and its ``threshold`` the level's."""
    above: int = NEVER
    """Warning levels: the next threshold up that notifies (the next level, or the
    policy's own if it alerts); a total at or above it records this level silently."""
    period: int = 0
    """0: a rolling window of ``window_ms``; 1, 2, 3: the tenant's calendar day, week or
    month (``window_ms`` 0), counted from the usage state's calendar totals."""


def warn_key(policy_id: str, percent: int) -> str:
    """The key of a policy's warning level in ``UsageBase.alerted`` (and ``quiet``)."""
    return f"{policy_id}\x1f{percent}"


def compile_policy(p: Policy) -> list[CompiledPolicy]:
    """The compiled policy followed by its warning levels (lowest first)."""
    series = series_of(p.metric, p.category)
    window_ms = p.window_seconds * 1000
    period = 0 if p.period is None else PERIOD_INDEX[p.period]
    cp = CompiledPolicy(
        policy=p,
        policy_id=p.policy_id,
        series=series,
        window_ms=window_ms,
        threshold=p.threshold,
        block_ms=p.block.duration_seconds * 1000 if p.block is not None else 0,
        alerts=p.alert is not None,
        period=period,
    )
    levels: list[tuple[int, int]] = []
    for pct in warn_levels(p.warn_percents):
        level = max(1, -(-p.threshold * pct // 100))
        if level < p.threshold and (not levels or level > levels[-1][1]):
            levels.append((pct, level))
    out = [cp]
    for i, (pct, level) in enumerate(levels):
        above = levels[i + 1][1] if i + 1 < len(levels) else (p.threshold if cp.alerts else NEVER)
        out.append(
            CompiledPolicy(
                policy=p,
                policy_id=warn_key(p.policy_id, pct),
                series=series,
                window_ms=window_ms,
                threshold=level,
                block_ms=0,
                alerts=True,
                warn_percent=pct,
                above=above,
                period=period,
            )
        )
    return out


class WatchEntry:
    """One watched window: the series it counts, its ring, the lowest threshold of its
    policies (``low_all``), the lowest of those not quiet (``low``, what the per-event loop
    compares with; ``policies.mute`` updates it in place) and the policies. A calendar entry
    (``period`` 1-3: day, week, month) has no ring: it reads the usage's calendar totals.

    A class rather than a tuple: compiled, the per-event loop reads its fields directly
    instead of unpacking and unboxing a tuple."""

    __slots__ = ("cps", "low", "low_all", "period", "ring", "series")

    def __init__(
        self,
        series: int,
        ring: Ring | None,
        low: int,
        cps: tuple[CompiledPolicy, ...],
        period: int = 0,
    ) -> None:
        self.series = series
        self.ring = ring
        self.low = low
        self.low_all = low
        self.cps = cps
        self.period = period
