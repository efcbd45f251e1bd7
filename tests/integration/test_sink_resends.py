"""The sink on the real broker and chDB: an SDK resend is one row, and counted once in the
rollups, whatever records, batches or replays it arrives in."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sink_helpers import (
    DAILY_TOTALS_SQL,
    caught_up,
    hourly_sums,
    produce_usage,
    python_daily_totals,
    sink_running,
    table_hourly,
    usage_records,
    wait_for,
)

from capstream.sinks.sql import run_sql
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

COUNTS = "SELECT count(), uniqExact(event_id) FROM usage_events"


def resends(records: list[tuple[str, dict[str, Any]]], seed: int = 5) -> list[tuple[str, Any]]:
    """What an SDK resends after a lost acknowledgement: some of each record's events again,
    in new records (new batch ids), one of them twice in the same record."""
    rng = random.Random(seed)
    out: list[tuple[str, Any]] = []
    for n, (account, batch) in enumerate(records[::3]):
        again = rng.sample(batch["events"], k=max(1, len(batch["events"]) // 2))
        out.append((account, {**batch, "batch_id": f"resend-{n}", "events": again + again[:1]}))
    return out


def test_a_resent_event_is_one_row_and_counted_once_in_the_rollups(
    topics: Settings, group_id: Callable[[], str]
) -> None:
    records = usage_records(3_000, per_record=30, seed=11)
    again = resends(records)
    assert sum(len(b["events"]) for _, b in again) > 500
    usage = Topics(topics.topic_prefix).usage
    first = group_id()
    produce_usage(topics, records)
    with sink_running(topics, group_id=first, batch_bytes=32 * 1024):
        wait_for(lambda: caught_up(topics, first, usage), 60, "the first sends")
        produce_usage(topics, again)  # later inserts, on the same partitions (key = account)
        wait_for(lambda: caught_up(topics, first, usage), 60, "the resends")
    assert run_sql(topics, COUNTS).rows == [[3_000, 3_000]]
    assert table_hourly(topics) == hourly_sums(records)
    daily = [int(x) for x in run_sql(topics, DAILY_TOTALS_SQL).rows[0]]
    assert daily == python_daily_totals(records)

    replay = group_id()  # everything again, in other batch boundaries
    with sink_running(topics, group_id=replay, batch_bytes=8 * 1024):
        wait_for(lambda: caught_up(topics, replay, usage), 90, "the replay")
    assert run_sql(topics, COUNTS).rows == [[3_000, 3_000]]
    assert table_hourly(topics) == hourly_sums(records)
    assert [int(x) for x in run_sql(topics, DAILY_TOTALS_SQL).rows[0]] == daily
