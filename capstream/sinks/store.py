"""Opening the ClickHouse store (embedded chDB or a server) and classifying its errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from capstream.errors import CapstreamError
from capstream.streams.settings import Settings


class StoreError(CapstreamError):
    """The ClickHouse store could not be opened or used."""


class StoreBusyError(StoreError):
    """Another process holds the embedded chDB store (chDB allows one process per path)."""


class StoreUnavailableError(StoreError):
    """ClickHouse did not answer or failed for a reason worth retrying (same dedup token)."""


class RowsRejectedError(StoreError):
    """ClickHouse refused the data itself (parse error, constraint, bad value): retrying the
    same bytes fails again, so the batch is split to isolate the poison record."""


# Error codes ClickHouse returns when the data (not the server) is at fault.
DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        252,  # TOO_MANY_PARTS (too many partitions for one insert block)
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT
        1001,  # STD_EXCEPTION (the Avro reader's errors on a corrupt body)
    }
)
_CODE = re.compile(r"Code: (\d+)")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code named in an exception's message, if any."""
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def short_error(exc: BaseException, limit: int = 400) -> str:
    """The first line of a ClickHouse error, without the stack trace."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify(exc: Exception) -> StoreError:
    """Map a clickhouse-connect/chDB error to ``RowsRejectedError`` or ``StoreUnavailableError``."""
    if isinstance(exc, StoreError):
        return exc
    code = error_code(exc)
    if code in DATA_ERROR_CODES:
        return RowsRejectedError(short_error(exc))
    return StoreUnavailableError(f"ClickHouse failed: {short_error(exc)}")


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def chdb_path(dsn: str) -> Path:
    """The data directory of a ``chdb:///abs/path`` DSN."""
    return Path(urlparse(dsn).path)


def open_client(settings: Settings, *, readonly: bool = False) -> Any:
    """A clickhouse-connect client on the configured store.

    ``readonly`` sets ``readonly=1`` for the whole session (writes and setting changes are
    refused by ClickHouse itself). A server URL naming a missing database gets it created
    (unless ``readonly``).
    """
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    dsn = settings.clickhouse_dsn
    session: dict[str, Any] = {"readonly": 1} if readonly else {}
    if is_embedded(dsn):
        chdb_path(dsn).mkdir(parents=True, exist_ok=True)
        try:
            return clickhouse_connect.get_client(dsn=dsn, settings=session)
        except ClickHouseError as exc:
            if "Unable to open the chdb engine" in str(exc):
                raise StoreBusyError(
                    f"the embedded ClickHouse store {chdb_path(dsn)} is held by another "
                    "process (chDB allows one per data directory); if `capstream sink` runs, "
                    "query through it, otherwise stop the other process"
                ) from exc
            raise StoreError(f"cannot open chDB at {chdb_path(dsn)}: {short_error(exc)}") from exc
    password = (
        settings.clickhouse_password.get_secret_value() if settings.clickhouse_password else ""
    )
    kwargs: dict[str, Any] = {"dsn": dsn, "settings": session}
    if password:
        kwargs["password"] = password
    where = _redacted(dsn)
    try:
        return clickhouse_connect.get_client(**kwargs)
    except ClickHouseError as exc:
        database = urlparse(dsn).path.strip("/")
        if error_code(exc) == 81 and database and not readonly:  # UNKNOWN_DATABASE
            admin = clickhouse_connect.get_client(**kwargs, database="default")
            admin.command(f"CREATE DATABASE IF NOT EXISTS `{database.replace('`', '')}`")
            admin.close()
            return clickhouse_connect.get_client(**kwargs)
        raise StoreUnavailableError(
            f"cannot connect to ClickHouse at {where}: {short_error(exc)}"
        ) from exc


def _redacted(dsn: str) -> str:
    """The DSN without any password it may carry (for messages and logs)."""
    parsed = urlparse(dsn)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return dsn
