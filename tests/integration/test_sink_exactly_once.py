"""The sink on the real broker and chDB: exactly N rows, exact rollups, replays add nothing."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer
from sink_helpers import (
    DAILY_TOTALS_SQL,
    caught_up,
    count,
    hourly_sums,
    produce_usage,
    python_daily_totals,
    read_dead_letters,
    sink_running,
    table_hourly,
    usage_records,
    wait_for,
)

from capstream.sinks.sql import run_sql
from capstream.streams.codecs import codec
from capstream.streams.records import (
    CapHitRecord,
    CapStatusRecord,
    EnforcementStateRecord,
    FeedRowRecord,
    NotificationRecord,
)
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics


def test_n_events_become_n_rows_with_exact_rollups_and_a_replay_changes_nothing(
    topics: Settings, group_id: Callable[[], str]
) -> None:
    records = usage_records(4_000, per_record=40)
    produce_usage(topics, records)
    usage = Topics(topics.topic_prefix).usage
    first = group_id()
    with sink_running(topics, group_id=first, batch_bytes=64 * 1024):
        wait_for(lambda: count(topics) >= 4_000, 60, "4,000 rows")
        wait_for(lambda: caught_up(topics, first, usage), 30, "commits")
    before = run_sql(
        topics,
        "SELECT count(), uniqExact(event_id), groupArraySorted(1000)(source) FROM usage_events",
    ).rows
    assert before[0][:2] == [4_000, 4_000]
    assert table_hourly(topics) == hourly_sums(records)
    daily = run_sql(topics, DAILY_TOTALS_SQL).rows[0]
    assert [int(x) for x in daily] == python_daily_totals(records)

    replay = group_id()  # a new group reads every offset again
    with sink_running(topics, group_id=replay, batch_bytes=16 * 1024):
        wait_for(lambda: caught_up(topics, replay, usage), 60, "replay")
    after = run_sql(
        topics,
        "SELECT count(), uniqExact(event_id), groupArraySorted(1000)(source) FROM usage_events",
    ).rows
    assert after == before
    assert table_hourly(topics) == hourly_sums(records)
    assert [int(x) for x in run_sql(topics, DAILY_TOTALS_SQL).rows[0]] == python_daily_totals(
        records
    )


def _raw_usage(events: list[dict[str, object]]) -> bytes:
    return codec("UsageBatch").encode({"batch_id": "raw", "sent_at_ms": 1, "events": events})


def test_bad_records_and_bad_events_are_dead_lettered_and_the_rest_of_their_batch_lands(
    topics: Settings,
) -> None:
    records = [
        (a, {**b, "events": [{**e, "account_id": "acct-bad"} for e in b["events"]]})
        for a, b in usage_records(400, per_record=20, seed=3)
    ]
    good_event = records[0][1]["events"][0]
    usage = Topics(topics.topic_prefix).usage
    producer = Producer(
        {"bootstrap.servers": topics.bootstrap_servers, "partitioner": "murmur2_random"}
    )
    # all on one partition (one key, the events' account), between good records: one batch
    bad = {
        "not_avro": b'{"json": "not avro"}',
        "truncated": _raw_usage([good_event])[:-7],
        "year_1970": _raw_usage([{**good_event, "event_id": "old", "occurred_at_ms": 5}]),
        "negative": _raw_usage([{**good_event, "event_id": "neg", "tokens_in": -5}]),
    }
    for _, batch in records[:10]:
        producer.produce(usage, codec("UsageBatch").encode(batch), key=b"acct-bad")
    for value in bad.values():
        producer.produce(usage, value, key=b"acct-bad")
    for _, batch in records[10:]:
        producer.produce(usage, codec("UsageBatch").encode(batch), key=b"acct-bad")
    assert producer.flush(30) == 0
    with sink_running(topics, batch_bytes=1 << 20, flush_interval_s=0.5) as sink:
        wait_for(lambda: count(topics) >= 400, 60, "the good rows")
        letters = read_dead_letters(topics, usage, expected=4)
    assert count(topics) == 400
    stats = sink["stats"]
    assert (stats.dead_letters, stats.bad_events, stats.rejected) == (4, 2, 0)
    by_value = {letter.raw_value: letter for letter in letters}
    assert set(by_value) == set(bad.values())  # a one-event record's letter is the record
    assert {k: by_value[v].reason for k, v in bad.items()} == {
        "not_avro": "not_avro",
        "truncated": "corrupt",
        "year_1970": "invalid",
        "negative": "negative_amount",
    }
    assert "occurred_at_ms 5 is before 2000-01-01" in by_value[bad["year_1970"]].error
    assert "tokens_in cannot be negative" in by_value[bad["negative"]].error
    assert sorted(letter.offset for letter in letters) == [10, 11, 12, 13]
    assert run_sql(
        topics, "SELECT count() FROM usage_events WHERE event_id IN ('old', 'neg')"
    ).rows == [[0]]


def test_decisions_cap_hits_notifications_and_feed_rows_land(
    topics: Settings, group_id: Callable[[], str]
) -> None:
    t = Topics(topics.topic_prefix)
    producer = Producer({"bootstrap.servers": topics.bootstrap_servers})
    now = 1_790_000_000_000
    for version in (1, 2, 2):  # a replayed state (same version) is one row
        state = EnforcementStateRecord(
            account_id="acme",
            bot_id="bot-1",
            version=version,
            updated_at_ms=now + version,
            model="claude-haiku",
            downgraded_until_ms=now + 3_600_000,
            plan="pro",
            caps={
                "vision": CapStatusRecord(
                    period="daily", period_key="2026-09-21", resumes_at_ms=now + 36_000_000
                )
            }
            if version == 2
            else {},
        )
        producer.produce(t.control, state.to_bytes(), key=b"acme/bot-1")
    producer.produce(t.control, None, key=b"acme/bot-gone")  # tombstone
    for i in range(3):
        hit = CapHitRecord(
            hit_id=f"h{i}",
            account_id="acme",
            bot_id="bot-1",
            conversation_id=f"c{i % 2}",
            category="vision",
            period="daily",
            period_key="2026-09-21",
            occurred_at_ms=now + i,
        )
        producer.produce(t.caphits, hit.to_bytes(), key=b"acme")
    producer.produce(t.caphits, b"\x00garbage", key=b"acme")
    note = NotificationRecord(
        notification_id="n1",
        account_id="acme",
        kind="cap_reached",
        recipients=["owner@acme.test"],
        subject="Cap reached",
        body="...",
        created_at_ms=now,
    )
    producer.produce(t.notifications, note.to_bytes(), key=b"n1")
    for attempts in (1, 2, 3):
        row = FeedRowRecord(
            account_id="acme",
            bot_id="bot-1",
            conversation_id="c0",
            local_day="2026-09-21",
            category="vision",
            period="daily",
            attempts=attempts,
            message="AI reply paused",
            cta="Top up",
        )
        producer.produce(t.feed, row.to_bytes(), key=b"acme/bot-1/c0/2026-09-21")
    assert producer.flush(30) == 0
    group = group_id()
    with sink_running(topics, group_id=group):
        for topic in (t.control, t.caphits, t.notifications, t.feed):
            wait_for(
                lambda topic=topic: caught_up(topics, group, topic),
                60,
                f"{topic} written and committed",
            )
        letters = read_dead_letters(topics, t.caphits, expected=1)
    decisions = run_sql(
        topics, "SELECT version, model, caps FROM decisions FINAL ORDER BY version"
    ).rows
    assert [(v, m) for v, m, _ in decisions] == [(1, "claude-haiku"), (2, "claude-haiku")]
    assert decisions[1][2]["vision"]["period_key"] == "2026-09-21"
    assert count(topics, "cap_hits") == 3
    assert run_sql(topics, "SELECT kind, recipients FROM notifications").rows == [
        ["cap_reached", ["owner@acme.test"]]
    ]
    feed = run_sql(topics, "SELECT conversation_id, attempts, cta FROM feed_rows FINAL").rows
    assert feed == [["c0", 3, "Top up"]]
    assert [(d.reason, d.offset) for d in letters] == [("not_avro", 3)]
