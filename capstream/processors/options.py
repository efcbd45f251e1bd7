"""Tuning of the stream processors: flushes, clock mode, input limits, metrics endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from capstream.errors import ConfigError

DEFAULT_MAX_RECORD_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How one worker flushes state, reads its clock and guards its input."""

    group_id: str | None = None
    """Faust app id (consumer group, changelog prefix); None = ``<topic prefix>.processors``."""
    flush_interval_s: float = 2.0
    """Write every dirty usage state once per interval (RocksDB + changelog), then ack..."""
    flush_share: float = 0.1
    """...but spend at most this share of the time flushing: a flush costs ~0.1 ms per dirty
    value (serialising the core's state), so under load the interval stretches..."""
    flush_events: int = 1_000_000
    """...up to this many events applied since the last flush (bounds the replay)."""
    event_time: bool = False
    """Clock: False = wall clock; True = the newest ``occurred_at`` seen on each partition
    (replays of history yield the decisions they would have produced live)."""
    max_future_skew_s: float = 300.0
    """Events stamped further than this in the future (wall clock) go to the DLQ."""
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    """Usage and cap-hit records larger than this go to the DLQ undecoded."""
    recent_event_ids: int = 512
    """Per account, how many recent ``event_id``s are kept to drop client resends."""
    metrics_port: int | None = 0
    """Prometheus endpoint port: 0 = a free port (written to ``metrics.port`` in the data
    dir), None = no endpoint."""
    metrics_host: str = "127.0.0.1"
    session_timeout_s: float = 10.0
    """A worker that died (kill -9) holds its partitions this long before the group moves them."""
    create_topics: bool = True
    republish_on_load: bool = True
    """After loading a partition's states, publish each bot's current enforcement state again
    (a no-op for readers that have it; repairs a decision lost between flush and crash)."""

    profile_to: Path | None = None
    """Profile the worker with cProfile and write the stats here at exit (benchmarks)."""

    def __post_init__(self) -> None:
        checks = {
            "flush_interval_s": 0.01 <= self.flush_interval_s <= 3600,
            "flush_events": self.flush_events >= 1,
            "flush_share": 0.01 <= self.flush_share <= 1,
            "max_future_skew_s": self.max_future_skew_s >= 0,
            "max_record_bytes": self.max_record_bytes >= 1024,
            "recent_event_ids": 1 <= self.recent_event_ids <= 1_000_000,
            "metrics_port": self.metrics_port is None or 0 <= self.metrics_port <= 65535,
            "session_timeout_s": 6 <= self.session_timeout_s <= 300,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                "invalid worker options: "
                + ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
                + " (flush_interval_s in [0.01, 3600], flush_share in [0.01, 1], "
                "flush_events >= 1, skew >= 0, "
                "max_record_bytes >= 1024, recent_event_ids in [1, 1e6], metrics_port in "
                "[0, 65535] or unset, session_timeout_s in [6, 300])"
            )

    def app_id(self, topic_prefix: str) -> str:
        return self.group_id or f"{topic_prefix}.processors"
