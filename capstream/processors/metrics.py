"""The worker's Prometheus metrics (own registry) and the HTTP endpoint that serves them."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)  # fmt: skip


class Metrics:
    """Counters, gauges and histograms of one worker."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter(
            "capstream_processor_records", "Kafka records read", ["topic"], registry=r
        )
        self.events = Counter(
            "capstream_processor_events", "Usage events applied to the usage state", registry=r
        )
        self.duplicates = Counter(
            "capstream_processor_duplicates",
            "Usage events dropped as replays (offset watermarks) or resends (recent ids)",
            registry=r,
        )
        self.scoped_evicted = Counter(
            "capstream_processor_scoped_evicted",
            "Per-attribute policy counters (an end user's, API key's, team's or model's window) "
            "dropped while still in their window: the account held scoped_values counters",
            registry=r,
        )
        self.dead_letters = Counter(
            "capstream_processor_dead_letters",
            "Records or events sent to a dead-letter topic",
            ["topic", "reason"],
            registry=r,
        )
        self.rerouted = Counter(
            "capstream_processor_rerouted_events",
            "Usage events that arrived on a partition other than their account's and were "
            "sent on to it (a producer not keying by account_id)",
            registry=r,
        )
        self.poison = Counter(
            "capstream_processor_poison_records",
            "Records whose processing raised: dead-lettered as processing_error, stream goes on",
            ["topic"],
            registry=r,
        )
        self.decisions = Counter(
            "capstream_processor_published",
            "Records published: control states, notifications, feed rows",
            ["kind"],
            registry=r,
        )
        self.flushes = Counter(
            "capstream_processor_flushes", "State flushes (RocksDB + changelog)", registry=r
        )
        self.flushed_values = Counter(
            "capstream_processor_flushed_values", "Table values written by flushes", registry=r
        )
        self.lapses = Counter(
            "capstream_processor_lapses",
            "Times the membership may have lapsed (a freeze, lost heartbeats): state dropped",
            registry=r,
        )
        self.flush_seconds = Histogram(
            "capstream_processor_flush_seconds",
            "Time to serialise and write one flush (to durable)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "capstream_processor_decision_latency_seconds",
            "Event occurred_at to the broker's ack of the decision it caused",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.record_delay = Histogram(
            "capstream_processor_record_delay_seconds",
            "A usage record's broker timestamp to the moment the worker starts applying it",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.gc_pause = Histogram(
            "capstream_processor_gc_pause_seconds",
            "Python garbage collections (the whole process stops), by generation",
            ["generation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "capstream_processor_lag",
            "Records of the usage topic not yet processed, per partition",
            ["partition"],
            registry=r,
        )
        self.partitions = Gauge(
            "capstream_processor_partitions", "Usage partitions this worker owns", registry=r
        )
        self.accounts = Gauge("capstream_processor_accounts", "Accounts held in memory", registry=r)
        self.timers = Counter(
            "capstream_processor_timer_expirations",
            "Accounts expired by the clock alone (blocks ending, midnight, ...)",
            registry=r,
        )
        self.catalog_records = Counter(
            "capstream_processor_catalog_records",
            "Policy and tenant-settings records applied",
            ["topic"],
            registry=r,
        )

    def watch_gc(self) -> None:
        """Observe every garbage collection's pause in ``gc_pause`` (from now on)."""
        pauses = [self.gc_pause.labels(generation=str(g)) for g in range(3)]
        started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                pauses[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(on_gc)

    def serve(self, host: str, port: int, data_dir: Path | None) -> tuple[Any, int]:
        """Serve ``/metrics`` on ``host:port`` (0 = a free port, written to
        ``<data_dir>/metrics.port``); returns (server, port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound = int(server.server_port)
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "metrics.port").write_text(f"{bound}\n")
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return server, bound


def update_lag(
    metrics: Metrics,
    consumer: Any,
    topic: str,
    positions: dict[int, int],
    partitions: dict[int, Any],
) -> None:
    """Records behind the high watermark per held usage partition, and the accounts held."""
    import faust

    for p, offset in positions.items():
        try:
            high = consumer.highwater(faust.types.TP(topic, p))
        except Exception:  # not assigned any more, or not started
            continue
        if high is not None:
            metrics.lag.labels(partition=str(p)).set(max(0, high - offset - 1))
    metrics.accounts.set(sum(len(part.accounts) for part in partitions.values()))
