"""Tuning of the stream processors: flushes, clock mode, input limits, metrics endpoint,
the memory of the tables' RocksDB databases.

Read from ``CAPSTREAM_WORKER_*`` variables (see :class:`EnvOptions`); ``capstream worker``
passes only the options given on its command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from capstream.streams.env_options import MIB, EnvOptions

DEFAULT_MAX_RECORD_BYTES = 1_048_576
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class WorkerOptions(EnvOptions):
    """How one worker flushes state, reads its clock and guards its input."""

    model_config = SettingsConfigDict(env_prefix="CAPSTREAM_WORKER_")
    what: ClassVar[str] = "worker options"

    group_id: str | None = Field(None, validation_alias="CAPSTREAM_WORKER_GROUP")
    """Faust app id (consumer group, changelog prefix); None = ``<topic prefix>.processors``."""
    flush_interval_s: float = Field(
        2.0, ge=0.01, le=3600, validation_alias="CAPSTREAM_WORKER_FLUSH_INTERVAL"
    )
    """Write every dirty usage state once per interval (RocksDB + changelog), then ack..."""
    flush_share: float = Field(0.1, ge=0.01, le=1)
    """...but spend at most this share of the time flushing: a flush costs ~0.1 ms per dirty
    value (serialising the core's state), so under load the interval stretches..."""
    flush_events: int = Field(1_000_000, ge=1)
    """...up to this many events applied since the last flush (bounds the replay)."""
    event_time: bool = False
    """Clock: False = wall clock; True = the newest ``occurred_at`` seen on each partition
    (replays of history yield the decisions they would have produced live)."""
    max_future_skew_s: float = Field(300.0, ge=0, validation_alias="CAPSTREAM_WORKER_MAX_SKEW")
    """Events stamped further than this in the future (wall clock) go to the DLQ."""
    max_record_bytes: int = Field(DEFAULT_MAX_RECORD_BYTES, ge=1024)
    """Usage and cap-hit records larger than this go to the DLQ undecoded."""
    recent_event_ids: int = Field(512, ge=1, le=1_000_000)
    """Per account, how many recent ``event_id``s are kept to drop client resends."""
    scoped_values: int = Field(10_000, ge=1, le=10_000_000)
    """Per account, how many per-attribute policy counters (policy, bot, value: an end
    user, API key, team or model) are kept; at the bound the least recently used is dropped
    (``capstream_processor_scoped_evicted`` counts those still in their window)."""
    metrics_port: int | None = Field(0, ge=0, le=65535)
    """Prometheus endpoint port: 0 = a free port (written to ``metrics.port`` in the data
    dir), None (or -1) = no endpoint."""
    metrics_host: str = "127.0.0.1"
    session_timeout_s: float = Field(
        6.0, ge=6, le=300, validation_alias="CAPSTREAM_WORKER_SESSION_TIMEOUT"
    )
    """A worker that died (kill -9) holds its partitions this long before the group moves
    them; its membership lease (``fencing``) ends a quarter of it earlier. 6 s is the broker's
    default ``group.min.session.timeout.ms``: measured with the short chaos run, a SIGKILLed
    worker's partitions decide again 4 s sooner than with the former 10 s (README, capacity)."""
    heartbeat_interval_s: float = Field(
        1.0, ge=0.1, le=100, validation_alias="CAPSTREAM_WORKER_HEARTBEAT"
    )
    """A heartbeat this often: a rebalance (a member leaving or joining) reaches the others
    at their next one, and each answered heartbeat renews the membership lease. At most a
    third of the session timeout (the lease spans three quarters of it)."""
    standby_replicas: int = Field(0, ge=0, le=8, validation_alias="CAPSTREAM_WORKER_STANDBY")
    """How many other workers keep each partition's tables up to date from its changelogs
    (Faust's ``table_standby_replicas``): a partition moved to one of them reads only the
    changelog's tail before it decides again. Off by default: each standby reads every flush
    of the partitions it stands by for, and on a host short of CPU that costs more than the
    moves it shortens (a full chaos run on 2 cores: correct, but kills recovered in 77-147 s
    against 10-21 s without); processors README, "Moved partitions"."""
    rocksdb_write_buffer_mib: int = Field(4, ge=1, le=1024)
    """Memtable size of each RocksDB database (one per table partition the worker owns or
    stands by for: 3 tables x its partitions): writes collect there until it is this full,
    then RocksDB writes it out as a file in a thread of its own. Faust's default, 64 MiB
    with up to 3 of them, let every flush's values pile up in memory: measured with
    ``capstream bench`` (4 partitions), 307 of the worker's 566 MiB RSS after the 20,000
    events/s phase were memtables. With 4 MiB x 2 it was 296 MiB in all, against 561-581,
    and the backlog rate the same (~75,000 events/s, ~80,700 per worker CPU-second, alternating
    runs of a 1,000,000-event backlog; processors README, "RocksDB memory")."""
    rocksdb_write_buffers: int = Field(2, ge=2, le=16)
    """Memtables per database: one taking writes, the rest full and being written out (a
    write waits only if all are full). At most ``rocksdb_write_buffer_mib`` x this per
    database."""
    rocksdb_block_cache_mib: int = Field(8, ge=1, le=65536)
    """Block cache of each database: the worker reads a partition's values once, when it
    loads the partition (its state is in memory after), so a cache saves nothing; Faust's
    default is 2 GiB per database, filled by every load and kept."""
    create_topics: bool = True
    republish_on_load: bool = True
    """After loading a partition's states, publish each bot's current enforcement state again
    (a no-op for readers that have it; repairs a decision lost between flush and crash)."""
    loglevel: LogLevel = "warning"
    """The worker's log level (Faust's and capstream's loggers)."""
    profile_to: Path | None = None
    """Profile the worker with cProfile and write the stats here at exit (benchmarks)."""

    @field_validator("group_id", mode="before")
    @classmethod
    def _no_empty_group(cls, value: Any) -> Any:
        return value or None

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _minus_one_is_none(cls, value: Any) -> Any:
        return None if value in (-1, "-1") else value

    @field_validator("loglevel", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerOptions:
        if self.heartbeat_interval_s * 3 > self.session_timeout_s:
            raise ValueError(
                f"CAPSTREAM_WORKER_HEARTBEAT (heartbeat_interval_s) must be at most a third of "
                f"CAPSTREAM_WORKER_SESSION_TIMEOUT (session_timeout_s): "
                f"{self.heartbeat_interval_s:g} s against {self.session_timeout_s:g} s"
            )
        return self

    def app_id(self, topic_prefix: str) -> str:
        return self.group_id or f"{topic_prefix}.processors"

    def rocksdb_options(self) -> dict[str, int]:
        """The options of each table's RocksDB databases (Faust's ``RocksDBOptions``)."""
        return {
            "write_buffer_size": self.rocksdb_write_buffer_mib * MIB,
            "max_write_buffer_number": self.rocksdb_write_buffers,
            "block_cache_size": self.rocksdb_block_cache_mib * MIB,
        }
