"""Migration 1 of capstream's ClickHouse schema: the tables as first shipped (never edit it).

Every data and rollup table sets ``non_replicated_deduplication_window``: deduplication of
retried inserts is off by default on a non-replicated MergeTree. Inserts go into Null-engine
``*_inbox`` tables shaped like the Avro records; materialized views fan them out, so one
insert (one dedup token) feeds a table and its rollups. Later steps are in ``ddl.py``.
"""

from __future__ import annotations

DEDUP_WINDOW = 10_000
"""Recent insert blocks whose tokens each table remembers (retries inside it are dropped)."""

DEDUP = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
MS = "DateTime64(3, 'UTC')"


USAGE_EVENT = (
    "Tuple(event_id String, account_id String, bot_id String, conversation_id String, "
    "category String, model String, tokens_in Int64, tokens_out Int64, messages Int32, "
    "conversation_started Bool, credits_micro Int64, occurred_at_ms Int64, "
    "attributes Map(String, String))"
)

_V1_USAGE = (
    f"""CREATE TABLE IF NOT EXISTS usage_batches_inbox (
    batch_id String, producer String, sent_at_ms Int64, events Array({USAGE_EVENT}),
    CONSTRAINT events_have_ids CHECK NOT (has(events.event_id, '') OR has(events.account_id, '')
        OR has(events.bot_id, '') OR has(events.conversation_id, '')),
    CONSTRAINT counts_not_negative CHECK arrayAll(x -> x >= 0, events.tokens_in)
        AND arrayAll(x -> x >= 0, events.tokens_out) AND arrayAll(x -> x >= 0, events.messages)
        AND arrayAll(x -> x >= 0, events.credits_micro),
    CONSTRAINT occurred_in_2000_to_2200 CHECK
        arrayAll(t -> t >= 946684800000 AND t < 7258118400000, events.occurred_at_ms)
) ENGINE = Null""",
    f"""CREATE TABLE IF NOT EXISTS usage_events (
    occurred_at {MS} CODEC(Delta, LZ4),
    account_id String,
    bot_id String,
    conversation_id String,
    event_id String,
    category LowCardinality(String),
    model LowCardinality(String),
    tokens_in UInt64,
    tokens_out UInt64,
    messages UInt32,
    conversation_started Bool,
    credits_micro UInt64,
    attributes Map(LowCardinality(String), String),
    batch_id String,
    producer LowCardinality(String),
    sent_at {MS},
    ingested_at {MS},
    source String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (account_id, bot_id, occurred_at)
{DEDUP}""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS usage_events_mv TO usage_events AS
SELECT
    fromUnixTimestamp64Milli(e.occurred_at_ms, 'UTC') AS occurred_at,
    e.account_id AS account_id, e.bot_id AS bot_id, e.conversation_id AS conversation_id,
    e.event_id AS event_id, e.category AS category, e.model AS model,
    toUInt64(e.tokens_in) AS tokens_in, toUInt64(e.tokens_out) AS tokens_out,
    toUInt32(e.messages) AS messages, e.conversation_started AS conversation_started,
    toUInt64(e.credits_micro) AS credits_micro, e.attributes AS attributes,
    batch_id, producer, fromUnixTimestamp64Milli(sent_at_ms, 'UTC') AS sent_at,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM usage_batches_inbox ARRAY JOIN events AS e""",
)

_SUMS = (
    "count() AS events, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, "
    "sum(messages) AS messages, countIf(conversation_started) AS conversations, "
    "sum(credits_micro) AS credits_micro"
)
_V1_ROLLUPS = (
    f"""CREATE TABLE IF NOT EXISTS usage_hourly (
    hour DateTime('UTC'),
    account_id String, bot_id String,
    category LowCardinality(String), model LowCardinality(String),
    events UInt64, tokens_in UInt64, tokens_out UInt64, messages UInt64,
    conversations UInt64, credits_micro UInt64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (account_id, bot_id, hour, category, model)
{DEDUP}""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT toStartOfHour(toDateTime(occurred_at, 'UTC')) AS hour,
    account_id, bot_id, category, model, {_SUMS}
FROM usage_events GROUP BY hour, account_id, bot_id, category, model""",
    f"""CREATE TABLE IF NOT EXISTS usage_daily (
    day Date,
    account_id String, bot_id String,
    category LowCardinality(String), model LowCardinality(String),
    events SimpleAggregateFunction(sum, UInt64),
    tokens_in SimpleAggregateFunction(sum, UInt64),
    tokens_out SimpleAggregateFunction(sum, UInt64),
    messages SimpleAggregateFunction(sum, UInt64),
    conversations SimpleAggregateFunction(sum, UInt64),
    credits_micro SimpleAggregateFunction(sum, UInt64),
    active_conversations AggregateFunction(uniq, String)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, bot_id, day, category, model)
{DEDUP}""",
    f"""CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT toDate(occurred_at, 'UTC') AS day, account_id, bot_id, category, model, {_SUMS},
    uniqState(conversation_id) AS active_conversations
FROM usage_events GROUP BY day, account_id, bot_id, category, model""",
)

_CAP = "Tuple(period String, period_key String, resumes_at_ms Int64)"
_V1_DECISIONS = (
    f"""CREATE TABLE IF NOT EXISTS decisions_inbox (
    account_id String, bot_id String, version Int64, updated_at_ms Int64,
    blocked_until_ms Nullable(Int64), block_policy_id Nullable(String), model String,
    downgraded_until_ms Nullable(Int64), batching_interval_s Int32,
    throttled_until_ms Nullable(Int64), throttle_reason Nullable(String),
    caps Map(String, {_CAP}), plan String, fallback_text_daily String,
    fallback_text_monthly String
) ENGINE = Null""",
    f"""CREATE TABLE IF NOT EXISTS decisions (
    account_id String, bot_id String, version UInt64, updated_at {MS},
    blocked_until Nullable({MS}), block_policy_id Nullable(String),
    model LowCardinality(String), downgraded_until Nullable({MS}),
    batching_interval_s UInt16, throttled_until Nullable({MS}),
    throttle_reason LowCardinality(Nullable(String)),
    caps Map(LowCardinality(String), Tuple(period LowCardinality(String), period_key String,
        resumes_at {MS})),
    plan LowCardinality(String), fallback_text_daily String, fallback_text_monthly String,
    ingested_at {MS}, source String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(updated_at)
ORDER BY (account_id, bot_id, version)
{DEDUP}""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS decisions_mv TO decisions AS
SELECT account_id, bot_id, toUInt64(version) AS version,
    fromUnixTimestamp64Milli(updated_at_ms, 'UTC') AS updated_at,
    fromUnixTimestamp64Milli(blocked_until_ms, 'UTC') AS blocked_until, block_policy_id, model,
    fromUnixTimestamp64Milli(downgraded_until_ms, 'UTC') AS downgraded_until,
    toUInt16(batching_interval_s) AS batching_interval_s,
    fromUnixTimestamp64Milli(throttled_until_ms, 'UTC') AS throttled_until, throttle_reason,
    mapApply((k, v) -> (k, (v.period, v.period_key,
        fromUnixTimestamp64Milli(v.resumes_at_ms, 'UTC'))), caps) AS caps,
    plan, fallback_text_daily, fallback_text_monthly,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM decisions_inbox""",
)

_V1_CAP_HITS = (
    """CREATE TABLE IF NOT EXISTS cap_hits_inbox (
    hit_id String, account_id String, bot_id String, conversation_id String,
    category String, period String, period_key String, occurred_at_ms Int64
) ENGINE = Null""",
    f"""CREATE TABLE IF NOT EXISTS cap_hits (
    occurred_at {MS}, account_id String, bot_id String, conversation_id String,
    hit_id String, category LowCardinality(String), period LowCardinality(String),
    period_key String, ingested_at {MS}, source String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (account_id, bot_id, occurred_at, hit_id)
{DEDUP}""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS cap_hits_mv TO cap_hits AS
SELECT fromUnixTimestamp64Milli(occurred_at_ms, 'UTC') AS occurred_at, account_id, bot_id,
    conversation_id, hit_id, category, period, period_key,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM cap_hits_inbox""",
)

_V1_NOTIFICATIONS = (
    """CREATE TABLE IF NOT EXISTS notifications_inbox (
    notification_id String, account_id String, kind String, policy_id Nullable(String),
    recipients Array(String), subject String, body String, created_at_ms Int64,
    window_start_ms Nullable(Int64)
) ENGINE = Null""",
    f"""CREATE TABLE IF NOT EXISTS notifications (
    created_at {MS}, account_id String, notification_id String,
    kind LowCardinality(String), policy_id Nullable(String), recipients Array(String),
    subject String, body String, window_start Nullable({MS}),
    ingested_at {MS}, source String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (account_id, notification_id)
{DEDUP}""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS notifications_mv TO notifications AS
SELECT fromUnixTimestamp64Milli(created_at_ms, 'UTC') AS created_at, account_id,
    notification_id, kind, policy_id, recipients, subject, body,
    fromUnixTimestamp64Milli(window_start_ms, 'UTC') AS window_start,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM notifications_inbox""",
)

V1_FEED = (
    """CREATE TABLE IF NOT EXISTS feed_rows_inbox (
    account_id String, bot_id String, conversation_id String, local_day String,
    category String, period String, attempts Int32, message String, cta Nullable(String),
    CONSTRAINT attempts_positive CHECK attempts >= 1
) ENGINE = Null""",
    f"""CREATE TABLE IF NOT EXISTS feed_rows (
    local_day Date, account_id String, bot_id String, conversation_id String,
    category LowCardinality(String), period LowCardinality(String), attempts UInt32,
    message String, cta Nullable(String), ingested_at {MS}, source String
) ENGINE = ReplacingMergeTree(attempts)
PARTITION BY toYYYYMM(local_day)
ORDER BY (account_id, bot_id, conversation_id, local_day)
{DEDUP}""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS feed_rows_mv TO feed_rows AS
SELECT toDate(local_day) AS local_day, account_id, bot_id, conversation_id, category,
    period, toUInt32(attempts) AS attempts, message, cta,
    now64(3, 'UTC') AS ingested_at, getSetting('insert_deduplication_token') AS source
FROM feed_rows_inbox""",
)

_V1_INTENTS = (
    """CREATE TABLE IF NOT EXISTS sink_intents (
    topic String, partition UInt32, first_offset UInt64, last_offset UInt64,
    token String, records UInt32, at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree(last_offset)
ORDER BY (topic, partition)""",
)

V1_STATEMENTS: tuple[str, ...] = (
    _V1_USAGE + _V1_ROLLUPS + _V1_DECISIONS + _V1_CAP_HITS + _V1_NOTIFICATIONS + V1_FEED
    + _V1_INTENTS
)  # fmt: skip
"""Migration 1: usage events, rollups, decisions, cap hits, notifications, feed rows, intents."""
