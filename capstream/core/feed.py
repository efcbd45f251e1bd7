"""Amber feed rows: one per conversation, local day and category; cap-hit attempts roll up.

A cap hit on a new local day (tenant timezone) starts a fresh row. Within a day the row's
period turns monthly once a monthly hit is seen and stays so. A hit whose ``hit_id`` is
among the row's last 32 is not counted again (gateway retries are harmless).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from capstream.core.messages import feed_cta, feed_message, panel_cta
from capstream.core.models import CapHit, CapPeriod, FeedRow, TenantSettings
from capstream.core.periods import day_period

FeedKey = tuple[str, str, str, str, str]
"""(account_id, bot_id, conversation_id, local_day, category)."""
RECENT_HIT_IDS = 32


def feed_key(hit: CapHit, timezone: str) -> FeedKey:
    """The row a cap hit belongs to."""
    day = day_period(hit.occurred_at_ms, timezone).key
    return (hit.account_id, hit.bot_id, hit.conversation_id, day, hit.category)


def apply_cap_hit(
    rows: MutableMapping[FeedKey, FeedRow], hit: CapHit, settings: TenantSettings
) -> FeedRow:
    """Count ``hit`` in its row (creating it), store the row in ``rows`` and return it."""
    key = feed_key(hit, settings.timezone)
    row = rows.get(key)
    if row is None:
        attempts, period, last = 1, hit.period, hit.occurred_at_ms
        recent: tuple[str, ...] = (hit.hit_id,)
    else:
        if hit.hit_id in row.recent_hit_ids:
            return row
        attempts = row.attempts + 1
        monthly = CapPeriod.MONTHLY in (row.period, hit.period)
        period = CapPeriod.MONTHLY.value if monthly else hit.period
        recent = (*row.recent_hit_ids[-(RECENT_HIT_IDS - 1) :], hit.hit_id)
        last = max(row.last_hit_ms, hit.occurred_at_ms)
    plan = settings.plan
    new = FeedRow(
        account_id=hit.account_id,
        bot_id=hit.bot_id,
        conversation_id=hit.conversation_id,
        local_day=key[3],
        category=hit.category,
        period=period,
        attempts=attempts,
        message=feed_message(hit.category, period, attempts),
        cta=feed_cta(plan),
        panel_cta=panel_cta(plan, period),
        last_hit_ms=last,
        recent_hit_ids=recent,
    )
    rows[key] = new
    return new
