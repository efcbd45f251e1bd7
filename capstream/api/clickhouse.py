"""The default ClickHouse port of the read endpoints: clickhouse-connect on the settings' DSN."""

from __future__ import annotations

import threading
from typing import Any

from capstream.api.reads import Query, Row
from capstream.streams.settings import Settings


def clickhouse_query(settings: Settings) -> Query:
    """A ``query(sql, params) -> rows`` over ``settings.clickhouse_dsn``, connected lazily.

    Embedded chDB serves one process per data path, so point ``CAPSTREAM_CLICKHOUSE_URL`` at
    a ClickHouse server (or the owner process) when the sink runs beside the API.
    """
    lock = threading.Lock()
    client: list[Any] = []

    def query(sql: str, params: dict[str, Any]) -> list[Row]:
        import clickhouse_connect

        with lock:
            if not client:
                password = settings.clickhouse_password
                kwargs: dict[str, Any] = {"dsn": settings.clickhouse_dsn}
                if password is not None:
                    kwargs["password"] = password.get_secret_value()
                client.append(clickhouse_connect.get_client(**kwargs))
            result = client[0].query(sql, parameters=params)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    return query
