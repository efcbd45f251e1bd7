"""Which topic lands in which ClickHouse table, through which Avro schema."""

from __future__ import annotations

from dataclasses import dataclass

from capstream.streams.topics import Topics


@dataclass(frozen=True, slots=True)
class SinkTable:
    """One consumed topic and where its records go.

    ``inbox`` is a Null-engine table shaped like the Avro schema; a materialized view turns
    each inbox row into rows of ``table`` (and, through further views, the rollups).
    """

    topic: str
    schema: str
    inbox: str
    table: str
    compacted: bool = False
    """Compacted topics carry tombstones (null values): skipped, not dead-lettered."""


def sink_tables(prefix: str) -> tuple[SinkTable, ...]:
    """Every topic the sink consumes for a deployment with topic ``prefix``."""
    t = Topics(prefix)
    return (
        SinkTable(t.usage, "UsageBatch", "usage_batches_inbox", "usage_events"),
        SinkTable(t.control, "EnforcementState", "decisions_inbox", "decisions", compacted=True),
        SinkTable(t.caphits, "CapHit", "cap_hits_inbox", "cap_hits"),
        SinkTable(t.notifications, "Notification", "notifications_inbox", "notifications"),
        SinkTable(t.feed, "FeedRow", "feed_rows_inbox", "feed_rows", compacted=True),
        # a person resumed a bot: a row of its own in decisions (migration 5)
        SinkTable(t.resumes, "BotResume", "bot_resumes_inbox", "decisions", compacted=True),
    )


RAW_TABLES: tuple[str, ...] = (
    "usage_events",
    "decisions",
    "cap_hits",
    "notifications",
    "notification_bots",
)
"""Tables whose rows expire after the raw retention (rollups have their own)."""

ROLLUP_TABLES: tuple[str, ...] = ("usage_hourly", "usage_daily")
