"""A per-end-user draft simulated on the embedded chDB store (issue 24.3): the events'
attributes come back from the store (row and column ports) as the in-memory reference has
them, so the draft alerts the same end user."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capstream.api.clickhouse import clickhouse_query
from capstream.core import UsageEvent
from capstream.simulation import (
    EventSource,
    check_draft,
    configs,
    parse_body,
    reads_attributes,
    simulate,
)
from capstream.simulation.memory import MemoryEvents
from capstream.sinks.migrations import migrate
from capstream.sinks.store import open_client
from capstream.streams.records import TenantSettingsRecord
from capstream.streams.settings import Settings

ACCT = "acme"
T0 = 1_793_523_600_000
MIN = 60_000
TENANT = TenantSettingsRecord(account_id=ACCT, plan="pro", owner_email="o@acme.test")
DRAFT = {"policy": {"policy_id": "heavy", "metric": "tokens", "threshold": 1_000,
                    "window_seconds": 3600, "scope": "account_each_bot", "per": "end_user",
                    "alert": {"recipients": []}}}  # fmt: skip
COLUMNS = [
    "occurred_at", "account_id", "bot_id", "conversation_id", "event_id", "category", "model",
    "tokens_in", "tokens_out", "messages", "conversation_started", "credits_micro",
    "attributes", "batch_id", "producer", "sent_at", "ingested_at", "source",
]  # fmt: skip


def _events() -> list[UsageEvent]:
    out = []
    for i in range(40):
        user = ("alice", "bob", "")[i % 3]
        attrs = {"end_user": user} if user else {}
        out.append(UsageEvent(f"e{i:02d}", ACCT, f"bot-{i % 2}", "c", "text", "m", 150, 0, 1,
                              False, 0, T0 + i * MIN, attrs))  # fmt: skip
    return out


def _row(e: UsageEvent) -> list[Any]:
    at = datetime.fromtimestamp(e.occurred_at_ms / 1000, UTC)
    return [at, e.account_id, e.bot_id, e.conversation_id, e.event_id, e.category, e.model,
            e.tokens_in, e.tokens_out, e.messages, e.conversation_started, e.credits_micro,
            e.attributes, "b", "test", at, at, "test"]  # fmt: skip


def _run(query: Any, columns: Any = None) -> dict[str, Any]:
    draft = check_draft(ACCT, parse_body(DRAFT), [], TENANT, T0 + 10 * 86_400_000)
    current, drafted = configs([], TENANT, draft)
    reads = reads_attributes(current.policies, drafted.policies)
    source = EventSource(query, ACCT, T0 - MIN, T0 + 86_400_000, chunk_rows=7, columns=columns,
                         attributes=reads)  # fmt: skip
    return simulate(source, current, drafted, draft)


def test_attributes_read_from_chdb_give_the_reference_alerts(tmp_path: Path) -> None:
    events = _events()
    store = Settings(data_dir=tmp_path / "data")
    client: Any = open_client(store)
    try:
        migrate(client)
        client.insert("usage_events", [_row(e) for e in events], column_names=COLUMNS)
    finally:
        client.close()
    port = clickhouse_query(store)
    try:
        rows = _run(port)
        columns = _run(port, port.columns)
    finally:
        port.close()
    want = _run(MemoryEvents(events))
    alerted = [a["attribute_value"] for a in want["simulated"]["alerts"]]
    # 7 x 150 tokens for alice on each bot and bob on bot-1; bob has 6 on bot-0
    assert sorted(alerted) == ["alice", "alice", "bob"]
    assert rows == want and columns == want
