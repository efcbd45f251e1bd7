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


def rows(client: Any) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in client.query(
            "SELECT event_id, source FROM usage_events ORDER BY event_id"
        ).result_rows
    ]


def test_v4_keeps_each_event_once_in_the_table_and_the_rollups(chdb: Any) -> None:
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


def test_v4_replays_add_nothing_and_rewrite_nothing(chdb: Any) -> None:
    assert migrate(chdb, MIGRATIONS[:2]) == [1, 2]
    insert(chdb, "t:0:0-0", batch(1))  # written before the upgrade
    assert migrate(chdb) == [4]
    insert(chdb, "t:0:0-0", batch(1))  # its replay after it
    insert(chdb, "t:0:1-1", batch(2), batch(1))  # a batch holding a resend
    insert(chdb, "t:0:1-1", batch(2), batch(1))  # that batch replayed (kill -9)
    assert rows(chdb) == [("e1", "t:0:0-0"), ("e2", "t:0:1-1")]
    assert totals(chdb) == (4, 2, 2)
    assert migrate(chdb) == []


def test_while_v4_replaces_the_view_inserts_fail_with_a_retryable_error(chdb: Any) -> None:
    from capstream.sinks.ddl import Migration
    from capstream.sinks.store import StoreUnavailableError

    migrate(chdb, MIGRATIONS[:2])
    v4 = MIGRATIONS[2]
    assert v4.version == 4
    migrate(chdb, (Migration(4, v4.name, v4.statements[:3]),))  # interrupted mid-way
    with pytest.raises(Exception, match="being replaced") as caught:
        insert(chdb, "t:0:0-0", batch(1))
    assert isinstance(classify(caught.value), StoreUnavailableError)  # type: ignore[arg-type]
    chdb.command("DELETE FROM capstream_migrations WHERE version = 4")
    assert migrate(chdb) == [4]  # run again from the start
    insert(chdb, "t:0:0-0", batch(1))
    assert totals(chdb) == (2, 1, 1)
