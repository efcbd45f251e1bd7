"""Apply the numbered DDL migrations once each; keep retention (TTL) and merge settings as set."""

from __future__ import annotations

import logging
import re
from typing import Any

from capstream.sinks.ddl import (
    FEED_ROWS_INBOX_AND_VIEW,
    FEED_ROWS_KEY,
    FEED_ROWS_V3,
    MERGE_SETTINGS,
    MIGRATIONS,
    TTL_COLUMNS,
    Migration,
)
from capstream.sinks.store import StoreError, short_error
from capstream.sinks.tables import ROLLUP_TABLES

log = logging.getLogger(__name__)

_LEDGER = """CREATE TABLE IF NOT EXISTS capstream_migrations (
    version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY version"""
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


def applied_versions(client: Any) -> set[int]:
    """The migration versions recorded in ``capstream_migrations``."""
    client.command(_LEDGER)
    rows = client.query("SELECT DISTINCT version FROM capstream_migrations").result_rows
    return {int(row[0]) for row in rows}


def migrate(client: Any, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now.

    Statements are idempotent (``IF NOT EXISTS``), so a migration interrupted half-way is
    simply applied again on the next start; it is recorded only once all of it succeeded.
    """
    done = applied_versions(client)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements:
            try:
                if callable(statement):
                    statement(client)
                else:
                    client.command(statement)
            except Exception as exc:
                shown = getattr(statement, "__name__", statement)
                raise StoreError(
                    f"migration {migration.version} ({migration.name}) failed: "
                    f"{short_error(exc)}\nstatement:\n{shown}"
                ) from exc
        client.insert(
            "capstream_migrations",
            [[migration.version, migration.name]],
            column_names=["version", "name"],
        )
        log.info("applied ClickHouse migration %d: %s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


def rebuild_feed_rows(client: Any) -> None:
    """Migration 3: rebuild ``feed_rows`` with the category in its key, keeping every row.

    Each step is skipped when done, so an interrupted rebuild completes when run again.
    """
    rows = client.query(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() "
        "AND name = 'feed_rows'"
    ).result_rows
    keyed = bool(rows) and str(rows[0][0]).replace(" ", "") == FEED_ROWS_KEY.replace(" ", "")
    if not keyed:
        client.command("DROP TABLE IF EXISTS feed_rows_inbox")  # inserts fail, and are retried
        client.command("DROP VIEW IF EXISTS feed_rows_mv")
        client.command("DROP TABLE IF EXISTS feed_rows_v3")
        client.command(FEED_ROWS_V3.format(name="feed_rows_v3"))
        if rows:
            client.command("INSERT INTO feed_rows_v3 SELECT * FROM feed_rows")
            client.command("EXCHANGE TABLES feed_rows AND feed_rows_v3")
        else:
            client.command("RENAME TABLE feed_rows_v3 TO feed_rows")
    client.command("DROP TABLE IF EXISTS feed_rows_v3")
    for statement in FEED_ROWS_INBOX_AND_VIEW:
        client.command(statement)


def _engine_full(client: Any, table: str) -> str:
    rows = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
        "AND name = {table:String}",
        parameters={"table": table},
    ).result_rows
    if not rows:
        raise StoreError(f"table {table} does not exist; run the migrations first")
    return str(rows[0][0])


def current_retention(client: Any, table: str) -> int | None:
    """The TTL of ``table`` in days, or None when rows never expire."""
    match = _TTL_DAYS.search(_engine_full(client, table))
    return int(match.group(1)) if match else None


def current_setting(client: Any, table: str, name: str) -> str | None:
    """The value of MergeTree setting ``name`` in ``table``'s definition (None: the default)."""
    match = re.search(rf"\b{re.escape(name)} = '?([^,'\s]+)", _engine_full(client, table))
    return match.group(1) if match else None


def apply_merge_settings(
    client: Any, settings: dict[str, dict[str, int]] = MERGE_SETTINGS
) -> list[str]:
    """Give each table the MergeTree settings of ``settings`` that differ, skipping settings
    this server does not know (older versions). Returns the tables changed."""
    names = sorted({name for wanted in settings.values() for name in wanted})
    known = {
        str(row[0])
        for row in client.query(
            "SELECT name FROM system.merge_tree_settings WHERE name IN {names:Array(String)}",
            parameters={"names": names},
        ).result_rows
    }
    changed: list[str] = []
    for table, wanted in settings.items():
        todo = {
            name: value
            for name, value in wanted.items()
            if name in known and current_setting(client, table, name) != str(value)
        }
        if todo:
            assignments = ", ".join(f"{name} = {int(value)}" for name, value in todo.items())
            client.command(f"ALTER TABLE {table} MODIFY SETTING {assignments}")
            log.info("merge settings of %s: %s", table, assignments)
            changed.append(table)
    return changed


def apply_retention(client: Any, *, raw_days: int | None, rollup_days: int | None) -> list[str]:
    """Set each table's TTL to the configured days (None or 0 = keep forever).

    Only tables whose TTL differs are altered, without rewriting existing parts
    (``materialize_ttl_after_modify=0``: old rows expire as merges reach them).
    Returns the tables changed.
    """
    changed: list[str] = []
    for table, column in TTL_COLUMNS.items():
        days = rollup_days if table in ROLLUP_TABLES else raw_days
        want = days or None
        if current_retention(client, table) == want:
            continue
        if want is None:
            statement = f"ALTER TABLE {table} REMOVE TTL"
        else:
            statement = f"ALTER TABLE {table} MODIFY TTL {column} + INTERVAL {int(want)} DAY"
        client.command(statement, settings={"materialize_ttl_after_modify": 0})
        log.info("retention of %s set to %s", table, f"{want} days" if want else "forever")
        changed.append(table)
    return changed
