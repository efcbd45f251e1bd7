"""The default ClickHouse port of the read endpoints: clickhouse-connect on the settings' DSN."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from capstream.api.reads import Row
from capstream.streams.settings import Settings


class StoreQuery:
    """A read-only port on the sink's store, connected lazily: called, ``query(sql, params)
    -> rows`` (a dict per row); :meth:`columns` gives the same result as column names and
    one list per column (no per-row objects: the simulation reads millions of rows).

    Embedded chDB serves one process per data path: while ``capstream sink`` holds it, the
    query goes through the sink's read-only SQL endpoint (as ``capstream sql`` does); when no
    process holds it, the store is opened here, and :meth:`close` (the API's shutdown)
    releases it. A ClickHouse server is queried directly.
    """

    def __init__(self, settings: Settings) -> None:
        from capstream.sinks.store import is_embedded

        self.settings = settings
        self._lock = threading.Lock()
        self._client: list[Any] = []
        self._embedded = is_embedded(settings.clickhouse_dsn)

    def __call__(self, sql: str, params: dict[str, Any]) -> list[Row]:
        names, rows = self._rows(sql, params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def columns(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]]]:
        owned = self._owned(sql, params)
        if owned is not None:
            names, rows = owned
            return names, [list(c) for c in zip(*rows, strict=True)] or [[] for _ in names]
        result = self._query(sql, params)
        return list(result.column_names), list(result.result_columns)

    def _rows(self, sql: str, params: dict[str, Any]) -> tuple[list[str], Sequence[Sequence[Any]]]:
        owned = self._owned(sql, params)
        if owned is not None:
            return owned
        result = self._query(sql, params)
        return list(result.column_names), result.result_rows

    def _owned(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
        """The sink's answer while it holds the embedded store, else None."""
        if not self._embedded or self._client:
            return None
        from capstream.sinks.endpoint import query_owner
        from capstream.sinks.store import chdb_path

        owned = query_owner(
            chdb_path(self.settings.clickhouse_dsn),
            sql,
            {k: str(v) for k, v in params.items()},
            timeout=30.0,
        )
        return None if owned is None else (owned.columns, owned.rows)

    def _query(self, sql: str, params: dict[str, Any]) -> Any:
        from capstream.sinks.store import open_client

        with self._lock:
            if not self._client:
                self._client.append(open_client(self.settings, readonly=True))
            return self._client[0].query(sql, parameters=params)

    def close(self) -> None:
        """Release the store if this process opened it (chDB: one store per process)."""
        with self._lock:
            client = self._client[0] if self._client else None
            self._client.clear()
        if client is not None:
            client.close()


def clickhouse_query(settings: Settings) -> StoreQuery:
    """The read-only port on the sink's store (see :class:`StoreQuery`)."""
    return StoreQuery(settings)
