"""The simulation reads the same events, and decides the same, from every store it supports:
the embedded chDB store opened directly (no sink holding it) and a ClickHouse server
(``CAPSTREAM_TEST_CLICKHOUSE_URL``; skipped without one), compared with the in-memory
reference of the three statements (``MemoryEvents``); with the draft side in a second
process too (the store's columns shipped to it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from capstream.api.clickhouse import clickhouse_query
from capstream.core import UsageEvent
from capstream.simulation import EventSource, check_draft, configs, parse_body, simulate
from capstream.simulation.memory import MemoryEvents
from capstream.sinks.migrations import migrate
from capstream.sinks.store import open_client
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings

ACCT = "acme"
T0 = 1_793_523_600_000  # 2026-11-01T09:00:00Z
TENANT = TenantSettingsRecord(
    account_id=ACCT, plan="pro", timezone="Asia/Karachi", auto_downgrade=True,
    caps={"text": {"daily_micro": 300_000}},
)  # fmt: skip
CURRENT = [
    PolicyRecord(policy_id="hourly", account_id=ACCT, metric="messages", threshold=20,
                 window_seconds=3600, scope="account_total", alert={"recipients": []}),
]  # fmt: skip
DRAFT = {"policy": {"policy_id": "burst", "metric": "tokens", "threshold": 600,
                    "window_seconds": 600, "scope": "account_each_bot",
                    "block": {"duration_seconds": 600}}}  # fmt: skip
COLUMNS = [
    "occurred_at", "account_id", "bot_id", "conversation_id", "event_id", "category", "model",
    "tokens_in", "tokens_out", "messages", "conversation_started", "credits_micro",
    "attributes", "batch_id", "producer", "sent_at", "ingested_at", "source",
]  # fmt: skip


def _events() -> list[UsageEvent]:
    out = []
    for i in range(900):  # two days, another account mixed in, a few same-ms ties
        acct = ACCT if i % 7 else "other"
        t = T0 + (i // 3) * 190_000 + (i % 3) * (i % 2)
        ev = UsageEvent(f"e{i:04d}", acct, f"bot-{i % 3}", f"c{i % 5}",
                        "vision" if i % 6 == 0 else "text", "m", 150 + i % 90, 40, 1,
                        i % 8 == 0, 9_000 + 500 * (i % 4), t)  # fmt: skip
        out.append(ev)
    return out


def _row(e: UsageEvent) -> list[Any]:
    at = datetime.fromtimestamp(e.occurred_at_ms / 1000, UTC)
    return [at, e.account_id, e.bot_id, e.conversation_id, e.event_id, e.category, e.model,
            e.tokens_in, e.tokens_out, e.messages, e.conversation_started, e.credits_micro,
            {}, "b", "test", at, at, "test"]  # fmt: skip


@pytest.fixture(params=["chdb", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "chdb":
        yield Settings(data_dir=tmp_path / "data")
        return
    url = os.environ.get("CAPSTREAM_TEST_CLICKHOUSE_URL")
    if not url:
        pytest.skip("no ClickHouse server: set CAPSTREAM_TEST_CLICKHOUSE_URL to run")
    database = f"capstream_sim_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        data_dir=tmp_path / "data",
        clickhouse_url=urlparse(url)._replace(path=f"/{database}").geturl(),
    )
    yield settings
    client: Any = open_client(settings)
    client.command(f"DROP DATABASE IF EXISTS {database}")
    client.close()


def _run(query: Any, columns: Any = None, processes: int | None = None) -> dict[str, Any]:
    draft = check_draft(ACCT, parse_body(DRAFT), CURRENT, TENANT, T0 + 10 * 86_400_000)
    current, drafted = configs(CURRENT, TENANT, draft)
    source = EventSource(
        query, ACCT, T0 - 3_600_000, T0 + 3 * 86_400_000, chunk_rows=50, columns=columns
    )
    return simulate(source, current, drafted, draft, processes=processes)


def test_the_store_answers_like_the_reference(store: Settings) -> None:
    events = _events()
    client: Any = open_client(store)
    try:
        migrate(client)
        client.insert("usage_events", [_row(e) for e in events], column_names=COLUMNS)
    finally:
        client.close()
    port = clickhouse_query(store)
    try:
        got = _run(port)
        columns = _run(port, port.columns)
        two = _run(port, port.columns, processes=2)
    finally:
        port.close()  # chDB: one store per process; the next test opens its own
    want = _run(MemoryEvents(events))
    assert got["events"] == sum(e.account_id == ACCT for e in events)
    assert got["simulated"]["blocks"] and got["simulated"]["caps"]
    assert got == want
    # the column port (Native columns, no dict per row) reads the same events
    assert columns == want
    # the store's columns shipped to the draft side's second process: the same report
    assert two == want
