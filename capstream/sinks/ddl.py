"""The DDL of capstream's ClickHouse schema, as numbered migrations (never edit a shipped one).

Migration 1 (the tables as first shipped) is in ``ddl_v1.py``; the later steps are here.

Every data and rollup table sets ``non_replicated_deduplication_window``: deduplication of
retried inserts is off by default on a non-replicated MergeTree. Inserts go into Null-engine
``*_inbox`` tables shaped like the Avro records; materialized views fan them out, so one
insert (one dedup token) feeds a table and its rollups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from capstream.sinks.ddl_v1 import DEDUP, MS, USAGE_EVENT, V1_FEED, V1_STATEMENTS

Step = str | Callable[[Any], None]
"""A statement, or a function of the client for a step SQL alone cannot make idempotent."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: idempotent statements, recorded in ``capstream_migrations``."""

    version: int
    name: str
    statements: tuple[Step, ...]


# The same three checks as v1, each reading the events array once through one lambda: every
# ``events.<field>`` subcolumn a CHECK names costs about 1 ms of analysis per insert (v1's
# checks took 10 of the ~55 ms of CPU a small usage insert costs). The inbox is dropped and
# recreated under its own name: usage_events_mv stays attached and dedup tokens stay valid
# (a renamed inbox or view would not deduplicate a replay of a batch written before). While
# the inbox is missing, a concurrent sink's insert fails and is retried; none is swallowed.
_V2_USAGE_CHECKS = (
    "DROP TABLE IF EXISTS usage_batches_inbox",
    f"""CREATE TABLE IF NOT EXISTS usage_batches_inbox (
    batch_id String, producer String, sent_at_ms Int64, events Array({USAGE_EVENT}),
    CONSTRAINT events_have_ids CHECK NOT arrayExists(e -> tupleElement(e, 'event_id') = ''
        OR tupleElement(e, 'account_id') = '' OR tupleElement(e, 'bot_id') = ''
        OR tupleElement(e, 'conversation_id') = '', events),
    CONSTRAINT counts_not_negative CHECK arrayAll(e -> tupleElement(e, 'tokens_in') >= 0
        AND tupleElement(e, 'tokens_out') >= 0 AND tupleElement(e, 'messages') >= 0
        AND tupleElement(e, 'credits_micro') >= 0, events),
    CONSTRAINT occurred_in_2000_to_2200 CHECK arrayAll(
        e -> tupleElement(e, 'occurred_at_ms') >= 946684800000
        AND tupleElement(e, 'occurred_at_ms') < 7258118400000, events)
) ENGINE = Null""",
)

# v1 ordered feed_rows by (account, bot, conversation, day) without the category, so a
# conversation capped in text and in vision on one day had two rows under one key: FINAL read
# one, and a merge dropped the other for good. v3 adds the category to the key. ClickHouse
# cannot change a sorting key to a column that exists already, so the table is rebuilt: the
# inbox and view are dropped first (a concurrent sink's insert then fails and is retried
# rather than vanish into a view-less Null table), every row v1 still holds is copied (not
# FINAL: rows of other categories that no merge reached yet are kept), and the tables are
# exchanged atomically. ``rebuild_feed_rows`` (capstream.sinks.migrations) runs it, skipping
# what is done, so a rebuild interrupted at any point completes on the next start.
FEED_ROWS_KEY = "account_id, bot_id, conversation_id, local_day, category"
FEED_ROWS_V3 = f"""CREATE TABLE IF NOT EXISTS {{name}} (
    local_day Date, account_id String, bot_id String, conversation_id String,
    category LowCardinality(String), period LowCardinality(String), attempts UInt32,
    message String, cta Nullable(String), ingested_at {MS}, source String
) ENGINE = ReplacingMergeTree(attempts)
PARTITION BY toYYYYMM(local_day)
ORDER BY ({FEED_ROWS_KEY})
{DEDUP}"""
FEED_ROWS_INBOX_AND_VIEW = (V1_FEED[0], V1_FEED[2])


def _v3_feed(client: Any) -> None:
    from capstream.sinks.migrations import rebuild_feed_rows  # it reads this module

    rebuild_feed_rows(client)


# ``SELECT * FROM usage_daily`` failed in clickhouse-connect ("AggregateFunction(uniq,
# String) deserialization not supported"): the uniq state of active_conversations cannot be
# read as a value. A MATERIALIZED column is left out of ``*`` and still written by the view
# (its default is never used: the view always names it), so v4 makes it one; a metadata-only
# change. ``uniqMerge(active_conversations)`` reads it as before.
_V4_USAGE_DAILY_STAR = (
    "ALTER TABLE usage_daily MODIFY COLUMN active_conversations AggregateFunction(uniq, String) "
    "MATERIALIZED initializeAggregation('uniqState', '')",
)

# A person resumed a paused bot (resumes topic): recorded in the decisions table, who and
# when, as a row of its own beside the bot's states. Its version is 2**63 + resumed_at_ms,
# so it never replaces a state (versions count from 1) and two resumes stay two rows; a
# state row has resumed_at NULL (the readers of "the latest state" filter on it).
RESUME_VERSION_BASE = 1 << 63
_V5_RESUMES = (
    f"ALTER TABLE decisions ADD COLUMN IF NOT EXISTS resumed_at Nullable({MS}), "
    "ADD COLUMN IF NOT EXISTS resumed_by Nullable(String)",
    """CREATE TABLE IF NOT EXISTS bot_resumes_inbox (
    account_id String, bot_id String, resumed_at_ms Int64, resumed_by String
) ENGINE = Null""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS bot_resumes_mv TO decisions AS
SELECT account_id, bot_id,
    bitOr(toUInt64({RESUME_VERSION_BASE}), toUInt64(resumed_at_ms)) AS version,
    fromUnixTimestamp64Milli(resumed_at_ms, 'UTC') AS updated_at,
    fromUnixTimestamp64Milli(resumed_at_ms, 'UTC') AS resumed_at, resumed_by,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM bot_resumes_inbox""",
)

# Each event_id once: an SDK resend is the identical event (same event_id, account, bot and
# occurred_at) in another record, perhaps on another partition or days later, so the offset
# tokens above do not catch it. The view drops, at insert time, every event already stored
# by another insert (looked up by the table's primary key: the block's own
# (account_id, bot_id, occurred_at, event_id) tuples) and repeats inside the block; the
# rollups read what the view wrote, so they count each event once too. Rows of the insert's
# own token are not "already stored": a retried or replayed batch computes the same rows,
# which the token then deduplicates in the table and in each rollup, as before (a batch
# whose events landed but not its rollups, a kill -9 between two parts, gets them).
#
# The view is dropped and created again under its own name, which keeps the dedup identity
# of its blocks (``ALTER ... MODIFY QUERY`` does not: a replay of a batch written before
# would land twice). So that no insert can pass while the view is missing, the inbox is
# first recreated with a check that fails every insert with a retryable error (not a
# constraint violation, which would dead-letter the rows), then recreated open once the new
# view is in place: a concurrent sink retries meanwhile. The view and the inbox keep their
# names, so replays of batches written before still deduplicate. Idempotent: an
# interrupted run is simply run again.
_USAGE_EVENTS_SELECT = """SELECT
    fromUnixTimestamp64Milli(e.occurred_at_ms, 'UTC') AS occurred_at,
    e.account_id AS account_id, e.bot_id AS bot_id, e.conversation_id AS conversation_id,
    e.event_id AS event_id, e.category AS category, e.model AS model,
    toUInt64(e.tokens_in) AS tokens_in, toUInt64(e.tokens_out) AS tokens_out,
    toUInt32(e.messages) AS messages, e.conversation_started AS conversation_started,
    toUInt64(e.credits_micro) AS credits_micro, e.attributes AS attributes,
    batch_id, producer, fromUnixTimestamp64Milli(sent_at_ms, 'UTC') AS sent_at,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM usage_batches_inbox ARRAY JOIN events AS e"""
_USAGE_EVENTS_ONCE = """
WHERE (account_id, bot_id, occurred_at, event_id) NOT IN (
    SELECT account_id, bot_id, occurred_at, event_id FROM usage_events
    WHERE (account_id, bot_id, occurred_at, event_id) IN (
        SELECT e.account_id, e.bot_id, fromUnixTimestamp64Milli(e.occurred_at_ms, 'UTC'),
            e.event_id
        FROM usage_batches_inbox ARRAY JOIN events AS e)
    AND source != getSetting('insert_deduplication_token'))
LIMIT 1 BY account_id, bot_id, occurred_at, event_id"""
_CLOSED_INBOX = _V2_USAGE_CHECKS[1].replace(
    "\n) ENGINE = Null",
    ",\n    CONSTRAINT migrating CHECK throwIf(1, 'usage_events_mv is being replaced; retry')"
    "\n) ENGINE = Null",
)
_V6_EVENT_ONCE = (
    "DROP TABLE IF EXISTS usage_batches_inbox",
    _CLOSED_INBOX,
    "DROP TABLE IF EXISTS usage_events_mv",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS usage_events_mv TO usage_events AS\n"
    + _USAGE_EVENTS_SELECT
    + _USAGE_EVENTS_ONCE,
    # A Null table's constraints cannot be altered: the open inbox replaces the closed one
    # (inserts fail as "unknown table", and are retried, for the moment between the two).
    "DROP TABLE IF EXISTS usage_batches_inbox",
    _V2_USAGE_CHECKS[1],
)

# The bot a notification is about (policy alerts and warnings, block lifted, throttle for a
# loop), for the history's filter by bot (issue 24). A table of its own beside notifications
# rather than a column there: adding a column to notifications_mv means recreating it, and
# an insert between the drop and the create would be lost. The inbox takes the Avro field it
# skipped so far; a notification inserted before the view exists has no row here (its bot
# is unknown to the history, as for every notification written before this migration).
_V7_NOTIFICATION_BOTS = (
    f"""CREATE TABLE IF NOT EXISTS notification_bots (
    created_at {MS}, account_id String, notification_id String, bot_id String,
    kind LowCardinality(String), policy_id Nullable(String), ingested_at {MS}, source String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (account_id, notification_id)
{DEDUP}""",
    "ALTER TABLE notifications_inbox ADD COLUMN IF NOT EXISTS bot_id Nullable(String)",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS notification_bots_mv TO notification_bots AS
SELECT fromUnixTimestamp64Milli(created_at_ms, 'UTC') AS created_at, account_id,
    notification_id, ifNull(bot_id, '') AS bot_id, kind, policy_id,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM notifications_inbox WHERE bot_id != ''""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "usage events, rollups, decisions, cap hits, notifications, feed rows, sink intents",
        V1_STATEMENTS,
    ),
    Migration(2, "usage inbox checks read the events array once", _V2_USAGE_CHECKS),
    Migration(3, "feed_rows keyed by category too (a row per category)", (_v3_feed,)),
    Migration(4, "usage_daily readable with SELECT *", _V4_USAGE_DAILY_STAR),
    Migration(5, "resumes recorded in the decisions table (who, when)", _V5_RESUMES),
    Migration(6, "usage_events keeps each event once (resends dropped at insert)", _V6_EVENT_ONCE),
    Migration(7, "the bot each notification is about (notification_bots)", _V7_NOTIFICATION_BOTS),
)

MERGE_SETTINGS: dict[str, dict[str, int]] = {
    table: {"merge_selector_base": 10} for table in ("usage_events", "usage_hourly", "usage_daily")
}
"""MergeTree settings of the tables every usage insert writes a part to (applied at start,
where the server knows them). The default merge selector base (5) rewrites the small parts
of a steady trickle of inserts so often that merging cost as much CPU as inserting; 10
halves it for a few more parts per partition."""

TTL_COLUMNS: dict[str, str] = {
    "usage_events": "toDateTime(occurred_at)",
    "decisions": "toDateTime(updated_at)",
    "cap_hits": "toDateTime(occurred_at)",
    "notifications": "toDateTime(created_at)",
    "notification_bots": "toDateTime(created_at)",
    "feed_rows": "local_day",
    "usage_hourly": "hour",
    "usage_daily": "day",
}
"""The time each table's TTL (retention) counts from."""
