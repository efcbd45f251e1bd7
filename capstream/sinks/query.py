"""Read-only SQL for analysts: parameterised queries and table / CSV / JSON output."""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from capstream.errors import CapstreamError

READ_ONLY_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_COMMENTS = re.compile(r"(--[^\n]*|/\*.*?\*/)", re.S)
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class QueryError(CapstreamError):
    """A query was refused or failed; the message says why."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and types, and rows of JSON-safe values."""

    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    def to_json_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "types": self.types, "rows": self.rows}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> QueryResult:
        return cls(list(data["columns"]), list(data["types"]), [list(r) for r in data["rows"]])


def check_read_only(sql: str) -> str:
    """The statement, stripped; ``QueryError`` unless it is one read-only statement.

    ClickHouse enforces ``readonly=1`` on every query as well; this check only gives a
    clear message before anything is sent.
    """
    text = _COMMENTS.sub(" ", sql).strip().rstrip(";").strip()
    if not text:
        raise QueryError("empty query: pass a SELECT statement")
    if ";" in _strip_literals(text):
        raise QueryError("one statement at a time, please (found ';' between statements)")
    first = text.split(None, 1)[0].upper()
    if first not in READ_ONLY_STATEMENTS:
        raise QueryError(
            f"capstream sql is read-only: {first} statements are refused "
            f"(allowed: {', '.join(READ_ONLY_STATEMENTS)})"
        )
    return text


def _strip_literals(text: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|`[^`]*`|\"[^\"]*\"", "''", text)


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``["name=value", ...]`` into query parameters (``{name:Type}`` in the SQL)."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not _PARAM_NAME.match(name):
            raise QueryError(f"bad --param {pair!r}: expected name=value, e.g. account=acme")
        params[name] = value
    return params


def jsonable(value: Any) -> Any:
    """A JSON-safe form of a ClickHouse value (dates as ISO text, decimals as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def execute(client: Any, sql: str, params: dict[str, str] | None = None) -> QueryResult:
    """Run one read-only statement on a (readonly) clickhouse-connect client."""
    from capstream.sinks.store import short_error

    text = check_read_only(sql)
    try:
        result = client.query(text, parameters=params or None)
    except Exception as exc:
        raise QueryError(f"query failed: {short_error(exc, 1000)}") from exc
    types = [getattr(t, "name", str(t)) for t in result.column_types]
    rows = [[jsonable(v) for v in row] for row in result.result_rows]
    return QueryResult(list(result.column_names), types, rows)


def to_csv(result: QueryResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(
            [json.dumps(v) if isinstance(v, dict | list) else ("" if v is None else v) for v in row]
        )
    return buf.getvalue()


def to_json(result: QueryResult) -> str:
    """One JSON object per row, in a list."""
    objects = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return json.dumps(objects, ensure_ascii=False, indent=1)


def to_table(result: QueryResult) -> Any:
    """A ``rich`` table of the result."""
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for name, kind in zip(result.columns, result.types, strict=True):
        numeric = any(k in kind for k in ("Int", "Float", "Decimal"))
        table.add_column(name, justify="right" if numeric else "left")
    for row in result.rows:
        table.add_row(
            *[
                "NULL" if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v)
                for v in row
            ]
        )
    return table
