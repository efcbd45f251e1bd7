"""The same sink against a ClickHouse server (HTTP): set CAPSTREAM_TEST_CLICKHOUSE_URL to run.

With no URL, a server is started with testcontainers when it is installed and a Docker
daemon answers; otherwise these tests are skipped and say why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from sink_helpers import (
    DAILY_TOTALS_SQL,
    caught_up,
    count,
    hourly_sums,
    produce_usage,
    python_daily_totals,
    sink_running,
    table_hourly,
    usage_records,
    wait_for,
)

from capstream.sinks.migrations import current_retention, migrate
from capstream.sinks.query import QueryError
from capstream.sinks.sql import run_sql
from capstream.sinks.store import open_client
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

SKIP_REASON = (
    "no ClickHouse server to test against: set CAPSTREAM_TEST_CLICKHOUSE_URL="
    "http://user:password@host:8123 (or install testcontainers with a running Docker daemon)"
)


def _container_url() -> Iterator[str]:
    try:
        import docker  # type: ignore[import-not-found]
        from testcontainers.clickhouse import (  # type: ignore[import-not-found]
            ClickHouseContainer,
        )

        docker.from_env().ping()
    except Exception:
        pytest.skip(SKIP_REASON)
    with ClickHouseContainer("clickhouse/clickhouse-server:24.8") as server:
        host, port = server.get_container_host_ip(), server.get_exposed_port(8123)
        yield f"http://{server.username}:{server.password}@{host}:{port}"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    url = os.environ.get("CAPSTREAM_TEST_CLICKHOUSE_URL")
    if url:
        yield urlparse(url)._replace(path="").geturl()
    else:
        yield from _container_url()


@pytest.fixture
def server_settings(settings: Settings, server_url: str) -> Iterator[Settings]:
    """The test's settings with a fresh database on the server (dropped afterwards)."""
    database = f"capstream_test_{uuid.uuid4().hex[:10]}"
    scoped = settings.model_copy(
        update={"clickhouse_url": urlparse(server_url)._replace(path=f"/{database}").geturl()}
    )
    from capstream.streams.topics import create_topics

    create_topics(scoped)
    yield scoped
    client: Any = open_client(scoped)
    try:
        client.command(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.close()


def test_migrations_apply_once_on_a_server(server_settings: Settings) -> None:
    client: Any = open_client(server_settings)  # creates the database
    try:
        assert migrate(client) == [1, 2, 3, 4, 5, 6, 7]
        assert migrate(client) == []
        tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
        assert {
            "usage_events",
            "usage_hourly",
            "usage_daily",
            "decisions",
            "sink_intents",
        } <= tables
        assert current_retention(client, "usage_events") is None
    finally:
        client.close()


def test_exactly_once_and_replay_through_http(
    server_settings: Settings, group_id: Callable[[], str]
) -> None:
    records = usage_records(3_000, per_record=30, seed=5)
    produce_usage(server_settings, records)
    usage = Topics(server_settings.topic_prefix).usage
    for _ in range(2):  # the second run is a replay by a new group
        group = group_id()
        with sink_running(server_settings, group_id=group, batch_bytes=32 * 1024):
            wait_for(lambda group=group: caught_up(server_settings, group, usage), 90, "commits")
        assert count(server_settings) == 3_000
        assert table_hourly(server_settings) == hourly_sums(records)
        daily = [int(x) for x in run_sql(server_settings, DAILY_TOTALS_SQL).rows[0]]
        assert daily == python_daily_totals(records)


def test_server_queries_are_read_only(server_settings: Settings) -> None:
    client: Any = open_client(server_settings)
    try:
        migrate(client)
    finally:
        client.close()
    with pytest.raises(QueryError, match="read-only"):
        run_sql(server_settings, "DROP TABLE usage_events")
    with pytest.raises(QueryError, match=r"(?i)readonly"):
        run_sql(server_settings, "SELECT count() FROM usage_events SETTINGS readonly = 0")
