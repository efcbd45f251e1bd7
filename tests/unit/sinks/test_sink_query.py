"""``capstream sql``: read-only checks, parameters, output formats, and the owner endpoint."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from capstream.sinks.endpoint import QueryEndpoint, endpoint_file, query_owner
from capstream.sinks.query import (
    QueryError,
    QueryResult,
    check_read_only,
    execute,
    jsonable,
    parse_params,
    to_csv,
    to_json,
)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  with x AS (SELECT 1) SELECT * FROM x",
        "-- usage per bot\nSELECT bot_id FROM usage_events;",
        "SELECT 'a;b' AS semicolon_in_a_literal",
        "SHOW TABLES",
        "DESCRIBE TABLE usage_events",
    ],
)
def test_read_only_statements_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("INSERT INTO usage_events VALUES (1)", "INSERT statements are refused"),
        ("/* hi */ drop table usage_events", "DROP statements are refused"),
        ("SELECT 1; DROP TABLE usage_events", "one statement at a time"),
        ("   ", "empty query"),
        ("ALTER TABLE usage_events DELETE WHERE 1", "read-only"),
    ],
)
def test_writes_are_refused_with_a_clear_message(sql: str, words: str) -> None:
    with pytest.raises(QueryError, match=words):
        check_read_only(sql)


def test_params_parse_name_value_pairs() -> None:
    assert parse_params(["account=acme", "tz=Asia/Kolkata", "q=a=b"]) == {
        "account": "acme",
        "tz": "Asia/Kolkata",
        "q": "a=b",
    }
    for bad in ("account", "=x", "1x=2", "a b=c"):
        with pytest.raises(QueryError, match="expected name=value"):
            parse_params([bad])


def test_values_become_json_safe() -> None:
    row = [
        dt.datetime(2026, 1, 2, 3, 4, 5),
        dt.date(2026, 1, 2),
        Decimal("1.50"),
        b"\xff",
        {"text": (1, "x")},
        None,
        7,
    ]
    assert jsonable(row) == [
        "2026-01-02T03:04:05",
        "2026-01-02",
        "1.50",
        "\ufffd",
        {"text": [1, "x"]},
        None,
        7,
    ]


RESULT = QueryResult(
    ["bot_id", "events", "caps"],
    ["String", "UInt64", "Map"],
    [["bot-1", 3, {"text": "daily"}], ["bot,2", 0, {}]],
)


def test_csv_and_json_output() -> None:
    assert to_csv(RESULT).splitlines() == [
        "bot_id,events,caps",
        'bot-1,3,"{""text"": ""daily""}"',
        '"bot,2",0,{}',
    ]
    assert json.loads(to_json(RESULT)) == [
        {"bot_id": "bot-1", "events": 3, "caps": {"text": "daily"}},
        {"bot_id": "bot,2", "events": 0, "caps": {}},
    ]


@dataclass
class _Type:
    name: str


@dataclass
class _Result:
    column_names: tuple[str, ...]
    column_types: list[_Type]
    result_rows: list[tuple[Any, ...]]


@dataclass
class FakeClient:
    """Answers like clickhouse-connect; remembers the parameters it was given."""

    seen: list[tuple[str, Any]] = field(default_factory=list)

    def query(self, sql: str, parameters: dict[str, str] | None = None) -> _Result:
        self.seen.append((sql, parameters))
        if "boom" in sql:
            raise RuntimeError("Code: 60. DB::Exception: Unknown table boom\nstack trace...")
        return _Result(("n", "at"), [_Type("UInt8"), _Type("Date")], [(1, dt.date(2026, 5, 1))])


def test_execute_passes_parameters_and_reports_clickhouse_errors_briefly() -> None:
    client = FakeClient()
    result = execute(client, "SELECT {n:UInt8} AS n", {"n": "1"})
    assert result.rows == [[1, "2026-05-01"]] and result.types == ["UInt8", "Date"]
    assert client.seen == [("SELECT {n:UInt8} AS n", {"n": "1"})]
    with pytest.raises(QueryError, match=r"Unknown table boom$"):
        execute(client, "SELECT * FROM boom")


def test_the_owner_endpoint_answers_with_its_token_only(tmp_path: Path) -> None:
    store = tmp_path / "clickhouse"
    client = FakeClient()
    endpoint = QueryEndpoint(client, store).start()
    try:
        info = json.loads(endpoint_file(store).read_text())
        assert info["pid"] == os.getpid()
        assert endpoint_file(store).stat().st_mode & 0o077 == 0  # only the owner reads it
        got = query_owner(store, "SELECT {n:UInt8}", {"n": "1"})
        assert got is not None and got.rows == [[1, "2026-05-01"]]
        with pytest.raises(QueryError, match="DROP statements are refused"):
            query_owner(store, "DROP TABLE usage_events", {})
        endpoint_file(store).write_text(json.dumps({**info, "token": "stolen"}))
        with pytest.raises(QueryError, match="wrong token"):
            query_owner(store, "SELECT 1", {})
        assert [sql for sql, _ in client.seen] == ["SELECT {n:UInt8}"]
    finally:
        endpoint.close()
    assert query_owner(store, "SELECT 1", {}) is None  # nobody serves it any more


def test_a_stale_endpoint_file_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "clickhouse"
    endpoint_file(store).write_text(json.dumps({"port": 1, "token": "t", "pid": 2**22 + 12345}))
    assert query_owner(store, "SELECT 1", {}) is None


def test_sql_on_a_store_that_does_not_exist_yet_says_what_to_do(tmp_path: Path) -> None:
    from capstream.sinks.sql import run_sql
    from capstream.streams.settings import Settings

    settings = Settings(data_dir=tmp_path / "nothing-here", clickhouse_url=None)
    with pytest.raises(QueryError, match="run `capstream sink` first"):
        run_sql(settings, "SELECT count() FROM usage_events")
    assert not (tmp_path / "nothing-here").exists()  # a query creates nothing
    with pytest.raises(QueryError, match="read-only"):
        run_sql(settings, "DELETE FROM usage_events WHERE 1")
