"""Tuning of the ClickHouse sink: batch size and age, memory bound, retries, retention.

Read from ``CAPSTREAM_SINK_*`` variables (see :class:`EnvOptions`); ``capstream sink``
passes only the options given on its command line. Sizes are in bytes here and in MiB in
the variables and the CLI (``CAPSTREAM_SINK_BATCH_MIB``, ``CAPSTREAM_SINK_MAX_BUFFER_MIB``;
``CAPSTREAM_SINK_BATCH_BYTES`` and ``_MAX_BUFFERED_BYTES`` in bytes win over them).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from capstream.core.limits import DEFAULT_MAX_FUTURE_SKEW_MS
from capstream.processors.options import DEFAULT_MAX_RECORD_BYTES
from capstream.streams.env_options import MIB, EnvOptions

_IN_MIB = {
    "batch_bytes": ("batch_mib", "CAPSTREAM_SINK_BATCH_MIB"),
    "max_buffered_bytes": ("max_buffer_mib", "CAPSTREAM_SINK_MAX_BUFFER_MIB"),
}


class SinkOptions(EnvOptions):
    """How the sink batches, bounds memory and retries. Defaults suit one sink per store."""

    model_config = SettingsConfigDict(env_prefix="CAPSTREAM_SINK_")
    what: ClassVar[str] = "sink options"

    group_id: str | None = Field(None, validation_alias="CAPSTREAM_SINK_GROUP")
    """Consumer group; None = ``<topic prefix>.sink``."""
    batch_bytes: int = Field(24 * MIB, ge=1024)
    """A partition's batch is written once its Avro bodies reach this size (a backlog is
    drained in inserts of this size: 24 MiB = ~350,000 usage events; ClickHouse's CPU per
    row fell by 15-30% from 8 MiB, fewer parts to merge, rollup rows summed in the insert)..."""
    flush_interval_s: float = Field(
        0.5, gt=0, le=3600, validation_alias="CAPSTREAM_SINK_FLUSH_INTERVAL"
    )
    """...or once its oldest record has waited this long and its writer lane is free (else it
    grows until the lane is free, so a slow store gets bigger inserts)."""
    max_buffered_bytes: int = Field(96 * MIB, ge=2048)
    """Above this (open + queued batches), consumption pauses until half is written."""
    batch_mib: float | None = Field(
        None, gt=0, validation_alias="CAPSTREAM_SINK_BATCH_MIB", exclude=True, repr=False
    )
    """``batch_bytes`` in MiB (input only)."""
    max_buffer_mib: float | None = Field(
        None, gt=0, validation_alias="CAPSTREAM_SINK_MAX_BUFFER_MIB", exclude=True, repr=False
    )
    """``max_buffered_bytes`` in MiB (input only)."""
    writer_lanes: int = Field(1, ge=1, le=64)
    """Writer threads; partitions are spread over them and inserted in parallel. More than
    one only pays with idle cores: on a busy 2-core machine one lane measured faster."""
    poll_records: int = Field(5_000, ge=1, le=1_000_000)
    retry_initial_s: float = Field(0.2, gt=0)
    retry_max_s: float = Field(10.0, gt=0)
    session_timeout_s: float = Field(
        10.0, ge=6, le=300, validation_alias="CAPSTREAM_SINK_SESSION_TIMEOUT"
    )
    """A sink that died (kill -9) holds its partitions this long before the group moves them."""
    revoke_timeout_s: float = Field(30.0, gt=0)
    """How long a rebalance waits for the revoked partitions' batches to be written."""
    shutdown_timeout_s: float = Field(30.0, gt=0)
    retention_days: int | None = Field(395, ge=1)
    """TTL of raw tables (events, decisions, cap hits, notifications, feed rows); None (or
    0) = keep."""
    rollup_retention_days: int | None = Field(None, ge=1)
    """TTL of the hourly and daily rollups; None (or 0) = keep forever."""
    stats_interval_s: float = Field(30.0, gt=0)
    max_future_skew_s: float = Field(DEFAULT_MAX_FUTURE_SKEW_MS / 1000, ge=0)
    """Usage events stamped later than their record's timestamp plus this are dead-lettered
    (keep it equal to the worker's ``max_future_skew_s``, so both refuse the same events)."""
    max_record_bytes: int = Field(DEFAULT_MAX_RECORD_BYTES, ge=1024)
    """Usage records larger than this are dead-lettered whole (the worker's limit too)."""
    create_topics: bool = True
    serve_sql: bool = True
    """Answer ``capstream sql`` for other processes while the sink holds the chDB store."""

    @model_validator(mode="before")
    @classmethod
    def _sizes_in_mib(cls, data: Any) -> Any:
        """A size given in MiB counts unless the same size is given in bytes."""
        if isinstance(data, dict):
            for size, names in _IN_MIB.items():
                mib = next((data[n] for n in names if data.get(n) is not None), None)
                if size not in data and mib is not None:
                    with contextlib.suppress(TypeError, ValueError):  # reported by its field
                        if float(mib) > 0:
                            data = {**data, size: int(float(mib) * MIB)}
        return data

    @field_validator("group_id", mode="before")
    @classmethod
    def _no_empty_group(cls, value: Any) -> Any:
        return value or None

    @field_validator("retention_days", "rollup_retention_days", mode="before")
    @classmethod
    def _zero_keeps(cls, value: Any) -> Any:
        return None if value in (0, "0") else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_buffered_bytes < 2 * self.batch_bytes:
            raise ValueError(
                f"max_buffered_bytes ({self.max_buffered_bytes:,}) must be at least "
                f"2 x batch_bytes ({self.batch_bytes:,})"
            )
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(
                f"retry_initial_s ({self.retry_initial_s}) must not exceed retry_max_s "
                f"({self.retry_max_s})"
            )
        return self

    def group(self, topic_prefix: str) -> str:
        return self.group_id or f"{topic_prefix}.sink"
