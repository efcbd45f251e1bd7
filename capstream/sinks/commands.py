"""The bodies of ``capstream sink`` and ``capstream sql`` (the CLI only parses options)."""

from __future__ import annotations

import logging
import sys

from rich.console import Console

from capstream.sinks.options import SinkOptions
from capstream.sinks.query import QueryError, parse_params, to_csv, to_json, to_table
from capstream.streams.settings import Settings

FORMATS = ("table", "csv", "json")


def sink_command(settings: Settings, console: Console, options: SinkOptions) -> None:
    """Run the sink in the foreground until SIGINT/SIGTERM; log to stderr."""
    from capstream.sinks.service import run_sink

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stats = run_sink(settings, options)
    console.print(
        f"sink stopped: {stats.records:,} records read, {stats.written:,} written in "
        f"{stats.batches:,} batches, {stats.dead_letters + stats.rejected:,} dead-lettered"
    )


def sql_command(
    settings: Settings, sql: str, params: list[str], fmt: str, console: Console
) -> None:
    """Run one read-only query and print it as a table, CSV or JSON."""
    from capstream.sinks.sql import run_sql

    if fmt not in FORMATS:
        raise QueryError(f"unknown --format {fmt!r}: use one of {', '.join(FORMATS)}")
    result = run_sql(settings, sql, parse_params(params))
    if fmt == "csv":
        sys.stdout.write(to_csv(result))
    elif fmt == "json":
        sys.stdout.write(to_json(result) + "\n")
    else:
        console.print(to_table(result))
        console.print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}")
