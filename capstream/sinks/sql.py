"""``capstream sql``: one read-only query against the configured store, wherever it is held."""

from __future__ import annotations

from capstream.sinks.endpoint import query_owner
from capstream.sinks.query import QueryError, QueryResult, check_read_only, execute
from capstream.sinks.store import chdb_path, is_embedded, open_client
from capstream.streams.settings import Settings


def run_sql(settings: Settings, sql: str, params: dict[str, str] | None = None) -> QueryResult:
    """Run ``sql`` read-only: through the process holding the embedded store if one does,
    directly otherwise (a ClickHouse server is always queried directly, ``readonly=1``)."""
    check_read_only(sql)
    params = params or {}
    dsn = settings.clickhouse_dsn
    if is_embedded(dsn):
        store = chdb_path(dsn)
        answer = query_owner(store, sql, params)
        if answer is not None:
            return answer
        if not store.is_dir():
            raise QueryError(f"no ClickHouse store at {store} yet: run `capstream sink` first")
    client = open_client(settings, readonly=True)
    try:
        return execute(client, sql, params)
    finally:
        client.close()
