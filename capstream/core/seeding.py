"""What a new or changed policy's window counts when it takes effect (issue 18.8), for the API
to tell the admin: the worker seeds a new ring from a ring of the same series the usage state
already holds (``policies.build_watch``); this says, from the policies alone, which one.

Rings a usage state holds: the account's, one per (series, window) of its enabled
``account_total`` policies plus the smart throttle's one-hour credit windows of capped
categories; a bot's, one per (series, window) of its own ``bot`` policies and of the account's
``account_each_bot`` policies. A ring counts from when it was created (itself seeded or not),
and a bot with no events yet holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from capstream.core.models import Policy, PolicyScope, TenantSettings
from capstream.core.policies import seed_source
from capstream.core.series import series_of
from capstream.core.settings_view import view_of
from capstream.core.windows import bucket_width_ms

SHARED = "shared"
"""Another policy watches the same series over the same window: it counts everything."""
EXACT = "exact"
"""Seeded from a ring spanning the whole window with buckets dividing the new ones."""
WIDER_BUCKETS = "wider_buckets"
"""Seeded from a ring spanning the whole window with wider buckets: up to one of them of
usage just before the window may count until it slides out (it fires early, never late)."""
PARTIAL = "partial"
"""Seeded from a shorter ring: the older part of the window is not counted."""
NONE = "none"
"""No ring of the same series: the window counts from when the policy takes effect."""
CALENDAR = "calendar"
"""A calendar policy: the day's, week's and month's totals are always kept, so it counts
its whole current period at once."""


class Seeding:
    """How a policy's window is filled when it takes effect, and the sentence to show."""

    __slots__ = ("kind", "message", "source_window_seconds")

    def __init__(self, kind: str, source_window_seconds: int | None, message: str) -> None:
        self.kind = kind
        self.source_window_seconds = source_window_seconds
        self.message = message

    def __repr__(self) -> str:
        return f"Seeding({self.kind!r}, {self.source_window_seconds!r}, {self.message!r})"


def _held(policy: Policy, current: Iterable[Policy], settings: TenantSettings | None) -> set[
    tuple[int, int]
]:  # fmt: skip
    """(series, window ms) of the rings the usage ``policy`` counts in already holds."""
    held: set[tuple[int, int]] = set()
    for p in current:
        if not p.enabled:
            continue
        if policy.scope == PolicyScope.ACCOUNT_TOTAL:
            same = p.scope == PolicyScope.ACCOUNT_TOTAL
        elif policy.scope == PolicyScope.BOT:
            same = p.scope == PolicyScope.ACCOUNT_EACH_BOT or (
                p.scope == PolicyScope.BOT and p.bot_id == policy.bot_id
            )
        else:  # account_each_bot: what every bot holds
            same = p.scope == PolicyScope.ACCOUNT_EACH_BOT
        if same and p.period is None:  # a calendar policy holds no ring
            held.add((series_of(p.metric, p.category), p.window_seconds * 1000))
    if policy.scope == PolicyScope.ACCOUNT_TOTAL and settings is not None:
        held.update(view_of(settings).budget_rings)
    return held


def _span(window_ms: int) -> str:
    seconds = window_ms // 1000
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


def window_seeding(
    policy: Policy, current: Iterable[Policy], settings: TenantSettings | None = None
) -> Seeding:
    """How ``policy``'s window is filled when it takes effect, given the policies in force
    before the change (``current``: include a changed policy's previous version, whose ring
    is still held at that moment) and the tenant's settings."""
    if policy.period is not None:
        return Seeding(
            CALENDAR,
            None,
            f"counts the usage of the current {policy.period} (tenant's local calendar) at "
            f"once, and starts again from zero when the next {policy.period} begins.",
        )
    if policy.per is not None:  # no window of the bot or account can seed one value's
        return Seeding(
            NONE,
            None,
            f"counts each {policy.per} from its first usage after it takes effect: usage "
            f"already in the last {_span(policy.window_seconds * 1000)} is not counted.",
        )
    series = series_of(policy.metric, policy.category)
    window_ms = policy.window_seconds * 1000
    held = _held(policy, current, settings)
    span = _span(window_ms)
    if (series, window_ms) in held:
        return Seeding(SHARED, policy.window_seconds, f"counts the usage of the last {span}.")
    src = seed_source(series, window_ms, [(s, w, 0) for s, w in held])
    if src is None:
        return Seeding(
            NONE,
            None,
            f"counts usage from the moment it takes effect: no window of the same metric is "
            f"kept for it yet, so usage already in the last {span} is not counted.",
        )
    width = bucket_width_ms(src)
    if src + width < window_ms + bucket_width_ms(window_ms):
        return Seeding(
            PARTIAL,
            src // 1000,
            f"counts at once only the usage of the last {_span(src)} (from the {_span(src)} "
            f"window of the same metric); older usage in its {span} window is not counted.",
        )
    if bucket_width_ms(window_ms) % width == 0:
        return Seeding(
            EXACT,
            src // 1000,
            f"counts the usage of the last {span} at once (from the {_span(src)} window of "
            "the same metric).",
        )
    return Seeding(
        WIDER_BUCKETS,
        src // 1000,
        f"counts the usage of the last {span} at once (from the {_span(src)} window of the "
        f"same metric, in {_span(width)} steps: up to {_span(width)} of usage just before "
        "the window may count until it slides out).",
    )
