"""``capstream sink``: wire settings, store, migrations, query endpoint and the consume loop."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from capstream.sinks.clickhouse import ClickHouseStorage
from capstream.sinks.dead_letters import DeadLetters, dead_letter_producer
from capstream.sinks.endpoint import QueryEndpoint
from capstream.sinks.migrations import apply_merge_settings, apply_retention, migrate
from capstream.sinks.options import SinkOptions
from capstream.sinks.runner import SinkRunner, SinkStats
from capstream.sinks.store import chdb_path, is_embedded, open_client
from capstream.sinks.tables import sink_tables
from capstream.sinks.writer import OnWritten
from capstream.streams.env_options import MIB
from capstream.streams.settings import Settings

log = logging.getLogger(__name__)


def sink_consumer(settings: Settings, options: SinkOptions) -> Any:
    """A confluent-kafka consumer that commits only when told to."""
    from confluent_kafka import Consumer

    # librdkafka's own prefetch counts toward memory too: keep it a fraction of the bound.
    prefetch_kb = max(1024, options.max_buffered_bytes // 4 // 1024)
    return Consumer(
        {
            **settings.librdkafka_config(),
            "group.id": options.group(settings.topic_prefix),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "queued.max.messages.kbytes": prefetch_kb,
            "fetch.max.bytes": max(MIB, min(50 * MIB, prefetch_kb * 1024)),
            # A fetch answers once 256 KiB are there or after 100 ms (librdkafka: at the
            # first byte), not once per trickle of records: a third of the client's CPU at
            # 20,000 events/s, and the broker's; within the 0.5 s a batch waits anyway.
            "fetch.min.bytes": 256 * 1024,
            "fetch.wait.max.ms": 100,
            "isolation.level": "read_committed",
            "session.timeout.ms": int(options.session_timeout_s * 1000),
            "heartbeat.interval.ms": max(1000, int(options.session_timeout_s * 1000) // 4),
            "log_level": 3,
        }
    )


def prepare_store(settings: Settings, options: SinkOptions) -> ClickHouseStorage:
    """Open the store, apply pending migrations, the configured retention, merge settings."""
    storage = ClickHouseStorage(lambda: open_client(settings))
    try:
        migrate(storage.client)
        apply_retention(
            storage.client,
            raw_days=options.retention_days,
            rollup_days=options.rollup_retention_days,
        )
        apply_merge_settings(storage.client)
    except BaseException:
        storage.close()
        raise
    return storage


def run_sink(
    settings: Settings,
    options: SinkOptions,
    *,
    stop: threading.Event | None = None,
    on_written: OnWritten | None = None,
    ready: threading.Event | None = None,
) -> SinkStats:
    """Run the sink until ``stop`` is set (or SIGINT/SIGTERM in the main thread)."""
    stop = stop or threading.Event()
    if options.create_topics:
        from capstream.streams.topics import create_topics

        create_topics(settings)
    storage = prepare_store(settings, options)
    endpoint: QueryEndpoint | None = None
    dsn = settings.clickhouse_dsn
    try:
        if options.serve_sql and is_embedded(dsn):
            endpoint = QueryEndpoint(open_client(settings, readonly=True), chdb_path(dsn)).start()
        runner = SinkRunner(
            sink_consumer(settings, options),
            sink_tables(settings.topic_prefix),
            storage,
            DeadLetters(dead_letter_producer(settings)),
            options,
            on_written=on_written,
            usage_partitions=settings.usage_partitions,
        )
        restore = _stop_on_signals(stop)
        try:
            if ready is not None:
                ready.set()
            log.info("sink consuming %s into %s", ", ".join(runner.tables), _where(dsn))
            stats = runner.run(stop)
        finally:
            restore()
        log.info("sink stopped: %s", stats)
        return stats
    finally:
        if endpoint is not None:
            endpoint.close()
            endpoint.client.close()
        storage.close()


def _where(dsn: str) -> str:
    return f"chDB at {chdb_path(dsn)}" if is_embedded(dsn) else "the ClickHouse server"


def _stop_on_signals(stop: threading.Event) -> Any:
    """Set ``stop`` on SIGINT/SIGTERM (main thread only); returns a function undoing it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
