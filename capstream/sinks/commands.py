"""The bodies of ``capstream sink`` and ``capstream sql`` (the CLI only parses options)."""

from __future__ import annotations

import logging
import sys

from rich.console import Console

from capstream.sinks.options import MIB, SinkOptions
from capstream.sinks.query import QueryError, parse_params, to_csv, to_json, to_table
from capstream.streams.settings import Settings

FORMATS = ("table", "csv", "json")


def sink_command(
    settings: Settings,
    console: Console,
    *,
    batch_mib: float,
    flush_interval_s: float,
    max_buffer_mib: float,
    retention_days: int,
    rollup_retention_days: int,
    group: str | None,
    session_timeout_s: float = 10.0,
) -> None:
    """Run the sink in the foreground until SIGINT/SIGTERM; log to stderr."""
    from capstream.sinks.service import run_sink

    options = SinkOptions(
        group_id=group or None,
        batch_bytes=int(batch_mib * MIB),
        flush_interval_s=flush_interval_s,
        max_buffered_bytes=int(max_buffer_mib * MIB),
        retention_days=retention_days or None,
        rollup_retention_days=rollup_retention_days or None,
        session_timeout_s=session_timeout_s,
    )
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
