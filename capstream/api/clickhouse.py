"""The default ClickHouse port of the read endpoints: clickhouse-connect on the settings' DSN."""

from __future__ import annotations

import threading
from typing import Any

from capstream.api.reads import Query, Row
from capstream.streams.settings import Settings


def clickhouse_query(settings: Settings) -> Query:
    """A read-only ``query(sql, params) -> rows`` on the sink's store, connected lazily.

    Embedded chDB serves one process per data path, so point ``CAPSTREAM_CLICKHOUSE_URL`` at
    a ClickHouse server (or the owner process) when the sink runs beside the API.
    """
    lock = threading.Lock()
    client: list[Any] = []

    def query(sql: str, params: dict[str, Any]) -> list[Row]:
        from capstream.sinks.store import open_client

        with lock:
            if not client:
                client.append(open_client(settings, readonly=True))
            result = client[0].query(sql, parameters=params)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    return query
