"""Tuning of the ClickHouse sink: batch size and age, memory bound, retries, retention."""

from __future__ import annotations

from dataclasses import dataclass

from capstream.core.limits import DEFAULT_MAX_FUTURE_SKEW_MS
from capstream.errors import ConfigError
from capstream.processors.options import DEFAULT_MAX_RECORD_BYTES

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SinkOptions:
    """How the sink batches, bounds memory and retries. Defaults suit one sink per store."""

    group_id: str | None = None
    """Consumer group; None = ``<topic prefix>.sink``."""
    batch_bytes: int = 24 * MIB
    """A partition's batch is written once its Avro bodies reach this size (a backlog is
    drained in inserts of this size: 24 MiB = ~350,000 usage events; ClickHouse's CPU per
    row fell by 15-30% from 8 MiB, fewer parts to merge, rollup rows summed in the insert)..."""
    flush_interval_s: float = 0.5
    """...or once its oldest record has waited this long and its writer lane is free (else it
    grows until the lane is free, so a slow store gets bigger inserts)."""
    max_buffered_bytes: int = 96 * MIB
    """Above this (open + queued batches), consumption pauses until half is written."""
    writer_lanes: int = 1
    """Writer threads; partitions are spread over them and inserted in parallel. More than
    one only pays with idle cores: on a busy 2-core machine one lane measured faster."""
    poll_records: int = 5_000
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    session_timeout_s: float = 10.0
    """A sink that died (kill -9) holds its partitions this long before the group moves them."""
    revoke_timeout_s: float = 30.0
    """How long a rebalance waits for the revoked partitions' batches to be written."""
    shutdown_timeout_s: float = 30.0
    retention_days: int | None = 395
    """TTL of raw tables (events, decisions, cap hits, notifications, feed rows); None = keep."""
    rollup_retention_days: int | None = None
    """TTL of the hourly and daily rollups; None = keep forever."""
    stats_interval_s: float = 30.0
    max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_MS / 1000
    """Usage events stamped later than their record's timestamp plus this are dead-lettered
    (keep it equal to the worker's ``max_future_skew_s``, so both refuse the same events)."""
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    """Usage records larger than this are dead-lettered whole (the worker's limit too)."""
    create_topics: bool = True
    serve_sql: bool = True
    """Answer ``capstream sql`` for other processes while the sink holds the chDB store."""

    def __post_init__(self) -> None:
        checks = {
            "batch_bytes": self.batch_bytes >= 1024,
            "flush_interval_s": 0.001 <= self.flush_interval_s <= 3600,
            "max_buffered_bytes": self.max_buffered_bytes >= 2 * self.batch_bytes,
            "poll_records": 1 <= self.poll_records <= 1_000_000,
            "writer_lanes": 1 <= self.writer_lanes <= 64,
            "retry_initial_s": 0 < self.retry_initial_s <= self.retry_max_s,
            "session_timeout_s": 6 <= self.session_timeout_s <= 300,
            "revoke_timeout_s": self.revoke_timeout_s > 0,
            "shutdown_timeout_s": self.shutdown_timeout_s > 0,
            "max_future_skew_s": self.max_future_skew_s >= 0,
            "max_record_bytes": self.max_record_bytes >= 1024,
            "retention_days": self.retention_days is None or self.retention_days >= 0,
            "rollup_retention_days": (
                self.rollup_retention_days is None or self.rollup_retention_days >= 0
            ),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                "invalid sink options: "
                + ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
                + " (batch_bytes >= 1024, max_buffered_bytes >= 2 x batch_bytes, "
                "flush_interval_s in (0, 3600], session_timeout_s in [6, 300], "
                "retries 0 < initial <= max, days >= 0, max_future_skew_s >= 0, "
                "max_record_bytes >= 1024)"
            )

    def group(self, topic_prefix: str) -> str:
        return self.group_id or f"{topic_prefix}.sink"
