"""The default ClickHouse port of the read endpoints: clickhouse-connect on the settings' DSN."""

from __future__ import annotations

import threading
from typing import Any

from capstream.api.reads import Query, Row
from capstream.streams.settings import Settings


def clickhouse_query(settings: Settings) -> Query:
    """A read-only ``query(sql, params) -> rows`` on the sink's store, connected lazily.

    Embedded chDB serves one process per data path: while ``capstream sink`` holds it, the
    query goes through the sink's read-only SQL endpoint (as ``capstream sql`` does); when no
    process holds it, the store is opened here. A ClickHouse server is queried directly.
    """
    from capstream.sinks.store import chdb_path, is_embedded

    lock = threading.Lock()
    client: list[Any] = []
    embedded = is_embedded(settings.clickhouse_dsn)

    def query(sql: str, params: dict[str, Any]) -> list[Row]:
        from capstream.sinks.store import open_client

        if embedded and not client:
            from capstream.sinks.endpoint import query_owner

            owned = query_owner(
                chdb_path(settings.clickhouse_dsn),
                sql,
                {k: str(v) for k, v in params.items()},
                timeout=30.0,
            )
            if owned is not None:
                return [dict(zip(owned.columns, row, strict=True)) for row in owned.rows]
        with lock:
            if not client:
                client.append(open_client(settings, readonly=True))
            result = client[0].query(sql, parameters=params)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    return query
