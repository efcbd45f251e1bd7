"""The notifier's Prometheus endpoint: its counters and the sent-log's deliveries by status.

A failed, expired or uncertain delivery shows here (``capstream_notifier_failed_total`` ...,
``capstream_notifier_deliveries{status="failed"}``) as well as on the DLQ topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from capstream.notifier.dispatcher import NotifierStats

log = logging.getLogger(__name__)

HELP = {
    "received": "Notifications read from the topic and written to the sent-log",
    "duplicates": "Notifications dropped as repeats of a known id (topic duplicates, replays)",
    "delivered": "Deliveries sent (email or webhook)",
    "retries": "Delivery attempts that failed and were scheduled again",
    "failed": "Deliveries refused for good (dead-lettered)",
    "expired": "Deliveries given up after CAPSTREAM_NOTIFY_EXPIRE_S (dead-lettered)",
    "uncertain": "Deliveries interrupted while sending: not resent, dead-lettered",
    "undecodable": "Records that did not decode (dead-lettered)",
    "dead_lettered": "Records and deliveries published to the notifications DLQ",
    "poison": "Records whose handling raised (dead-lettered as processing_error)",
}
STATUSES = ("pending", "sending", "sent", "failed", "expired", "uncertain")


class NotifierCollector(Collector):
    """Reads the live counters and the sent-log's status counts at each scrape."""

    def __init__(self, stats: NotifierStats, counts: Callable[[], dict[str, int]]) -> None:
        self.stats = stats
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        for name, value in self.stats.as_dict().items():
            yield CounterMetricFamily(f"capstream_notifier_{name}", HELP[name], value=value)
        by_status = self.counts()
        gauge = GaugeMetricFamily(
            "capstream_notifier_deliveries",
            "Deliveries in the sent-log by status",
            labels=["status"],
        )
        for status in sorted({*STATUSES, *by_status}):
            gauge.add_metric([status], by_status.get(status, 0))
        yield gauge


def serve_metrics(
    collector: NotifierCollector, host: str, port: int, port_file: Path | None
) -> tuple[Any, int]:
    """Serve ``/metrics`` on ``host:port`` (0 = a free port, written to ``port_file``);
    returns (server, bound port)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_port)
    if port_file is not None:
        port_file.parent.mkdir(parents=True, exist_ok=True)
        port_file.write_text(f"{bound}\n")
    log.info("notifier metrics on http://%s:%d/metrics", host, bound)
    return server, bound
