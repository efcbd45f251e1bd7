"""The default ClickHouse port of the read endpoints: clickhouse-connect on the settings' DSN."""

from __future__ import annotations

import threading
from typing import Any

from capstream.api.reads import Row
from capstream.streams.settings import Settings


class ClickHouseQuery:
    """A read-only ``query(sql, params) -> rows`` on the sink's store, connected lazily.

    Embedded chDB serves one process per data path: while ``capstream sink`` holds it, the
    query goes through the sink's read-only SQL endpoint (as ``capstream sql`` does); when no
    process holds it, the store is opened here, and :meth:`close` (the API's shutdown)
    releases it. A ClickHouse server is queried directly.
    """

    def __init__(self, settings: Settings) -> None:
        from capstream.sinks.store import is_embedded

        self._settings = settings
        self._lock = threading.Lock()
        self._client: Any = None
        self._embedded = is_embedded(settings.clickhouse_dsn)

    def __call__(self, sql: str, params: dict[str, Any]) -> list[Row]:
        from capstream.sinks.store import chdb_path, open_client

        if self._embedded and self._client is None:
            from capstream.sinks.endpoint import query_owner

            owned = query_owner(
                chdb_path(self._settings.clickhouse_dsn),
                sql,
                {k: str(v) for k, v in params.items()},
                timeout=30.0,
            )
            if owned is not None:
                return [dict(zip(owned.columns, row, strict=True)) for row in owned.rows]
        with self._lock:
            if self._client is None:
                self._client = open_client(self._settings, readonly=True)
            result = self._client.query(sql, parameters=params)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def close(self) -> None:
        """Release the store if this process opened it (chDB: one store per process)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def clickhouse_query(settings: Settings) -> ClickHouseQuery:
    """The default ClickHouse port of the read endpoints (see :class:`ClickHouseQuery`)."""
    return ClickHouseQuery(settings)
