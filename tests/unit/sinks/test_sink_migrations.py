"""Migrations on embedded chDB: v2's inbox checks, replays across it, merge settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sink_fakes import usage_value

from capstream.sinks.clickhouse import _INSERT_SETTINGS
from capstream.sinks.ddl import MERGE_SETTINGS, MIGRATIONS
from capstream.sinks.frames import ContainerWriter, body_of
from capstream.sinks.migrations import apply_merge_settings, current_setting, migrate
from capstream.sinks.store import RowsRejectedError, classify, open_client
from capstream.streams.codecs import codec
from capstream.streams.settings import Settings


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[Any]:
    """An empty chDB store; closed after the test (one chDB per process)."""
    client = open_client(Settings(data_dir=tmp_path / "ch"))
    yield client
    client.close()


def batch(n: int, **overrides: Any) -> bytes:
    """A UsageBatch value of one event, encoded as is (no model validation in the way)."""
    event = {
        "event_id": f"e{n}",
        "account_id": "acct-1",
        "bot_id": "bot-1",
        "conversation_id": "conv-1",
        "category": "text",
        "model": "claude-haiku",
        "tokens_in": 1,
        "tokens_out": 1,
        "messages": 1,
        "conversation_started": False,
        "credits_micro": 5,
        "occurred_at_ms": 1_790_000_000_000,
        "attributes": {},
        **overrides,
    }
    record = {"batch_id": f"b{n}", "sent_at_ms": 1_790_000_000_000, "events": [event]}
    return codec("UsageBatch").encode(record)


def insert(client: Any, token: str, *values: bytes) -> None:
    usage = codec("UsageBatch")
    data = ContainerWriter("UsageBatch").container([body_of(v, usage) for v in values])
    client.raw_insert(
        "usage_batches_inbox",
        None,
        data,
        fmt="Avro",
        settings={**_INSERT_SETTINGS, "insert_deduplication_token": token},
    )


def totals(client: Any) -> tuple[int, ...]:
    return tuple(
        int(client.query(f"SELECT sum({column}) FROM {table}").result_rows[0][0])
        for table, column in (
            ("usage_events", "tokens_in + 1"),
            ("usage_hourly", "events"),
            ("usage_daily", "events"),
        )
    )


def test_a_batch_written_before_v2_is_still_deduplicated_after_it(chdb: Any) -> None:
    assert migrate(chdb, MIGRATIONS[:1]) == [1]
    insert(chdb, "t:0:0-1", usage_value(1), usage_value(2))
    before = totals(chdb)
    assert before == (12, 6, 6)  # 2 records x 3 events, tokens_in 0..2
    assert migrate(chdb, MIGRATIONS[:2]) == [2]
    insert(chdb, "t:0:0-1", usage_value(1), usage_value(2))  # a replay after the upgrade
    assert totals(chdb) == before
    insert(chdb, "t:0:2-2", usage_value(3))  # the view still feeds the table and rollups
    assert totals(chdb) == (18, 9, 9)
    assert migrate(chdb, MIGRATIONS[:2]) == []


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"event_id": ""}, "events_have_ids"),
        ({"conversation_id": ""}, "events_have_ids"),
        ({"credits_micro": -1}, "counts_not_negative"),
        ({"messages": -2}, "counts_not_negative"),
        ({"occurred_at_ms": 0}, "occurred_in_2000_to_2200"),
        ({"occurred_at_ms": 7_258_118_400_000}, "occurred_in_2000_to_2200"),
    ],
)
def test_v2_checks_reject_what_v1_rejected(
    chdb: Any, overrides: dict[str, Any], constraint: str
) -> None:
    migrate(chdb)
    with pytest.raises(Exception, match="Code: 469") as caught:
        insert(chdb, "bad", batch(1), batch(2, **overrides))
    error = classify(caught.value)  # type: ignore[arg-type]
    assert isinstance(error, RowsRejectedError)
    assert constraint in str(error)
    insert(chdb, "good", batch(1, occurred_at_ms=946_684_800_000), batch(2, tokens_in=0))
    assert totals(chdb) == (3, 2, 2)


def test_merge_settings_are_applied_once(chdb: Any) -> None:
    migrate(chdb)
    assert apply_merge_settings(chdb) == list(MERGE_SETTINGS)
    assert apply_merge_settings(chdb) == []
    for table, wanted in MERGE_SETTINGS.items():
        for name, value in wanted.items():
            assert current_setting(chdb, table, name) == str(value)
    assert current_setting(chdb, "usage_events", "non_replicated_deduplication_window") == "10000"
    assert apply_merge_settings(chdb, {"usage_events": {"no_such_setting_anywhere": 1}}) == []


FEED_COLS = ["account_id", "bot_id", "conversation_id", "local_day", "category", "period",
             "attempts", "message", "cta"]  # fmt: skip


def feed_insert(client: Any, token: str, category: str, attempts: int) -> None:
    row = ["acct-1", "bot-1", "conv-1", "2026-11-18", category, "daily", attempts, "m", None]
    client.insert("feed_rows_inbox", [row], column_names=FEED_COLS,
                  settings={"insert_deduplication_token": token})  # fmt: skip


def feed_final(client: Any) -> list[tuple[str, int]]:
    rows = client.query(
        "SELECT category, attempts FROM feed_rows FINAL ORDER BY category"
    ).result_rows
    return [(str(c), int(a)) for c, a in rows]


def test_v3_keeps_every_categorys_feed_row_of_an_existing_store(chdb: Any) -> None:
    """Issue 18 item 1: a v2 store's unmerged text and vision rows of one conversation and
    day both survive the rebuild, merges after it, and new inserts through the view."""
    assert migrate(chdb, MIGRATIONS[:2]) == [1, 2]
    feed_insert(chdb, "f1", "text", 3)
    feed_insert(chdb, "f2", "vision", 1)
    assert len(feed_final(chdb)) == 1  # v1's key: FINAL sees one of them
    assert migrate(chdb) == [3, 4, 5, 6, 7]
    assert feed_final(chdb) == [("text", 3), ("vision", 1)]
    feed_insert(chdb, "f3", "vision", 2)  # the view writes into the rebuilt table
    chdb.command("OPTIMIZE TABLE feed_rows FINAL")
    assert feed_final(chdb) == [("text", 3), ("vision", 2)]
    assert chdb.query("SELECT count() FROM feed_rows").result_rows[0][0] == 2
    assert migrate(chdb) == []


def test_an_interrupted_v3_rebuild_completes_on_the_next_start(chdb: Any) -> None:
    from capstream.sinks.migrations import rebuild_feed_rows

    assert migrate(chdb, MIGRATIONS[:2]) == [1, 2]
    feed_insert(chdb, "f1", "text", 3)
    feed_insert(chdb, "f2", "vision", 1)
    # stopped right after the exchange: no inbox, no view, the old table still around
    chdb.command("DROP TABLE feed_rows_inbox")
    chdb.command("DROP VIEW feed_rows_mv")
    chdb.command(
        "CREATE TABLE feed_rows_v3 AS feed_rows ENGINE = ReplacingMergeTree(attempts) "
        "ORDER BY (account_id, bot_id, conversation_id, local_day, category)"
    )
    chdb.command("INSERT INTO feed_rows_v3 SELECT * FROM feed_rows")
    chdb.command("EXCHANGE TABLES feed_rows AND feed_rows_v3")
    rebuild_feed_rows(chdb)
    assert migrate(chdb) == [3, 4, 5, 6, 7]
    feed_insert(chdb, "f3", "audio", 1)
    assert feed_final(chdb) == [("audio", 1), ("text", 3), ("vision", 1)]
    tables = {r[0] for r in chdb.query("SHOW TABLES").result_rows}
    assert "feed_rows_v3" not in tables


def test_a_fresh_store_keys_feed_rows_by_category(chdb: Any) -> None:
    assert migrate(chdb) == [1, 2, 3, 4, 5, 6, 7]
    key = chdb.query(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() "
        "AND name = 'feed_rows'"
    ).result_rows[0][0]
    assert key.endswith("category")


def test_select_star_reads_usage_daily_and_uniq_merge_still_counts(chdb: Any) -> None:
    """Issue 18 item 3: the docs' first query, ``SELECT * FROM usage_daily``, failed to
    deserialize the uniq state; after v4 it lists the sums, and the distinct conversations
    written before and after the migration still merge."""
    assert migrate(chdb, MIGRATIONS[:3]) == [1, 2, 3]
    insert(chdb, "t:0:0-0", batch(1, conversation_id="conv-1"))
    assert migrate(chdb) == [4, 5, 6, 7]
    insert(chdb, "t:0:1-1", batch(2, conversation_id="conv-2"), batch(3))
    res = chdb.query("SELECT * FROM usage_daily WHERE account_id = {a:String}",
                     parameters={"a": "acct-1"})  # fmt: skip
    assert "active_conversations" not in res.column_names
    assert sum(dict(zip(res.column_names, r, strict=True))["events"] for r in res.result_rows) == 3
    merged = chdb.query("SELECT uniqMerge(active_conversations) FROM usage_daily").result_rows
    assert merged == [(2,)]


def rows(client: Any) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in client.query(
            "SELECT event_id, source FROM usage_events ORDER BY event_id"
        ).result_rows
    ]


def test_v6_keeps_each_event_once_in_the_table_and_the_rollups(chdb: Any) -> None:
    migrate(chdb)
    insert(chdb, "t:0:0-1", batch(1), batch(2))
    # an SDK resend of e1 in another record, on another partition, plus e1 twice in one
    # record of the same insert, beside a new event
    insert(chdb, "t:3:7-8", batch(1), batch(3), batch(1))
    assert rows(chdb) == [("e1", "t:0:0-1"), ("e2", "t:0:0-1"), ("e3", "t:3:7-8")]
    assert totals(chdb) == (6, 3, 3)  # tokens_in + 1 per event, events in each rollup
    # the same event_id with another time or bot is another event
    insert(chdb, "t:1:0-0", batch(1, occurred_at_ms=1_790_000_000_001), batch(2, bot_id="b2"))
    assert totals(chdb) == (10, 5, 5)


def test_v6_replays_add_nothing_and_rewrite_nothing(chdb: Any) -> None:
    assert migrate(chdb, MIGRATIONS[:5]) == [1, 2, 3, 4, 5]
    insert(chdb, "t:0:0-0", batch(1))  # written before the upgrade
    assert migrate(chdb) == [6, 7]
    insert(chdb, "t:0:0-0", batch(1))  # its replay after it
    insert(chdb, "t:0:1-1", batch(2), batch(1))  # a batch holding a resend
    insert(chdb, "t:0:1-1", batch(2), batch(1))  # that batch replayed (kill -9)
    assert rows(chdb) == [("e1", "t:0:0-0"), ("e2", "t:0:1-1")]
    assert totals(chdb) == (4, 2, 2)
    assert migrate(chdb) == []


def test_while_v6_replaces_the_view_inserts_fail_with_a_retryable_error(chdb: Any) -> None:
    from capstream.sinks.ddl import Migration
    from capstream.sinks.store import StoreUnavailableError

    migrate(chdb, MIGRATIONS[:5])
    v6 = MIGRATIONS[5]
    assert v6.version == 6
    migrate(chdb, (Migration(6, v6.name, v6.statements[:3]),))  # interrupted mid-way
    with pytest.raises(Exception, match="being replaced") as caught:
        insert(chdb, "t:0:0-0", batch(1))
    assert isinstance(classify(caught.value), StoreUnavailableError)  # type: ignore[arg-type]
    chdb.command("DELETE FROM capstream_migrations WHERE version = 6")
    assert migrate(chdb) == [6, 7]  # run again from the start
    insert(chdb, "t:0:0-0", batch(1))
    assert totals(chdb) == (2, 1, 1)


def test_v7_records_the_bot_of_each_notification_once(chdb: Any) -> None:
    """Issue 24 item 5: the history filters alerts by bot through notification_bots."""
    assert migrate(chdb, MIGRATIONS[:6]) == [1, 2, 3, 4, 5, 6]
    cols = ["notification_id", "account_id", "kind", "policy_id", "recipients", "subject",
            "body", "created_at_ms", "window_start_ms"]  # fmt: skip
    old = ["n0", "acct-1", "policy_alert", "p1", [], "s", "b", 1_790_000_000_000, None]
    chdb.insert("notifications_inbox", [old], column_names=cols)
    assert migrate(chdb) == [7]
    rows = [
        ["n1", "acct-1", "policy_alert", "p1", [], "s", "b", 1_790_000_000_000, None, "bot-1"],
        ["n2", "acct-1", "cap_reached", None, [], "s", "b", 1_790_000_000_000, None, None],
    ]
    for token in ("t1", "t1"):  # a replayed insert adds nothing
        chdb.insert("notifications_inbox", rows, column_names=[*cols, "bot_id"],
                    settings={**_INSERT_SETTINGS, "insert_deduplication_token": token})  # fmt: skip
    got = chdb.query(
        "SELECT notification_id, bot_id, kind, policy_id FROM notification_bots"
    ).result_rows
    assert [tuple(r) for r in got] == [("n1", "bot-1", "policy_alert", "p1")]
    count = chdb.query("SELECT count() FROM notifications").result_rows[0][0]
    assert count == 3  # the notifications table itself is unchanged
    assert migrate(chdb) == []
