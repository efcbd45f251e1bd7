"""ClickHouse sink figures: rows/s into chDB, and produce -> queryable lag at a steady rate.

Run: ``.venv/bin/python benchmarks/bench_sink.py [--events N] [--rate R] [--seconds S]``.
Uses ``CAPSTREAM_KAFKA_BOOTSTRAP`` if set, else starts its own broker on free ports (and
stops it). Prints figures; it is not a test. Targets: >= 200,000 rows/s sustained into chDB;
lag p99 < 2 s at 20,000 events/s (produce call -> the insert holding the event returned,
i.e. queryable), with the sink's default options.

1. throughput: ``--events`` usage events (records of 50, 4 partitions) are produced first,
   then the sink starts and drains them; rows/s is measured from the first to the last
   write (the steady state) and from start (including the consumer group join).
2. lag: the sink runs idle, then a producer sends ``--rate`` events/s in records of 20 for
   ``--seconds``; each record's Kafka timestamp is compared with the moment its batch's
   insert returned.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from capstream.bench.kafka import cluster
from capstream.sinks.batches import Batch
from capstream.sinks.options import SinkOptions
from capstream.sinks.port import Rejected
from capstream.sinks.service import run_sink
from capstream.sinks.sql import run_sql
from capstream.streams.codecs import codec
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

BASE_MS = 1_795_000_000_000
OVERRIDES: dict[str, Any] = {}


def encoded_records(count: int, per_record: int, seed: int) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` UsageBatch records over 1,000 accounts x 10 bots."""
    rng = random.Random(seed)
    encode = codec("UsageBatch").encode
    out = []
    for r in range(count):
        account = f"acct-{rng.randrange(1000)}"
        events = [
            {
                "event_id": f"{seed}-{r}-{k}",
                "account_id": account,
                "bot_id": f"bot-{rng.randrange(10)}",
                "conversation_id": f"conv-{rng.randrange(100_000)}",
                "category": rng.choice(("text", "text", "text", "vision", "audio", "documents")),
                "model": rng.choice(("claude-sonnet-4-6", "claude-haiku")),
                "tokens_in": rng.randrange(4000),
                "tokens_out": rng.randrange(1000),
                "messages": 1,
                "conversation_started": rng.random() < 0.05,
                "credits_micro": rng.randrange(100_000),
                "occurred_at_ms": BASE_MS + rng.randrange(600_000),
                "attributes": {},
            }
            for k in range(per_record)
        ]
        batch = {"batch_id": f"{seed}-{r}", "sent_at_ms": BASE_MS, "events": events}
        out.append((account.encode(), encode(batch)))
    return out


def producer(settings: Settings) -> Any:
    return Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )


def fresh_settings(bootstrap: str, tmp: Path) -> Settings:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, data_dir=tmp / prefix)
    create_topics(settings)
    return settings


class Progress:
    """Collects what the sink wrote (called from its writer thread)."""

    def __init__(self, rows_per_record: int) -> None:
        self.rows_per_record = rows_per_record
        self.rows = 0
        self.first: float | None = None
        self.first_rows = 0
        self.last = 0.0
        self.lags_ms: list[float] = []
        self.inserts = 0
        self.done = threading.Event()
        self.target = 0

    def __call__(self, batch: Batch, rejected: list[Rejected]) -> None:
        now = time.monotonic()
        wall_ms = time.time() * 1000
        self.last = now
        self.rows += (len(batch) - len(rejected)) * self.rows_per_record
        self.inserts += 1 if len(batch) else 0
        if self.first is None:  # the steady state starts when the first write returned
            self.first, self.first_rows = now, self.rows
        self.lags_ms.extend(wall_ms - ts for ts in batch.timestamps)
        if self.target and self.rows >= self.target:
            self.done.set()


@contextmanager
def sink(settings: Settings, progress: Progress) -> Iterator[float]:
    stop, ready = threading.Event(), threading.Event()
    options = SinkOptions(create_topics=False, stats_interval_s=3600, **OVERRIDES)
    thread = threading.Thread(
        target=run_sink,
        args=(settings, options),
        kwargs={"stop": stop, "ready": ready, "on_written": progress},
    )
    thread.start()
    ready.wait(120)
    try:
        yield time.monotonic()
    finally:
        stop.set()
        thread.join(120)


def bench_throughput(bootstrap: str, tmp: Path, events: int) -> None:
    per_record = 50
    settings = fresh_settings(bootstrap, tmp)
    records = events // per_record
    # distinct events: the sink stores an event once (a repeated record would be resends)
    pool = encoded_records(records, per_record, seed=1)
    p = producer(settings)
    topic = Topics(settings.topic_prefix).usage
    t0 = time.perf_counter()
    for i in range(records):
        key, value = pool[i % len(pool)]
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(120)
    print(f"produced {records * per_record:,} events in {time.perf_counter() - t0:.1f}s")

    progress = Progress(per_record)
    progress.target = records * per_record
    cpu0 = time.process_time()
    with sink(settings, progress) as started:
        if not progress.done.wait(600):
            print(f"!! only {progress.rows:,} rows written in 600s")
        total = time.monotonic() - started
        cpu = time.process_time() - cpu0
        rows = run_sql(settings, "SELECT count() FROM usage_events").rows[0][0]
    assert progress.first is not None
    steady = progress.last - progress.first
    print(f"rows in usage_events: {rows:,} (expected {records * per_record:,})")
    print(
        f"throughput: {(progress.rows - progress.first_rows) / steady:,.0f} rows/s sustained "
        f"(first to last write, {steady:.2f}s); {progress.rows / total:,.0f} rows/s "
        f"including start-up and group join ({total:.2f}s)"
    )
    print(
        f"cpu: {cpu * 1e6 / progress.rows:.1f} µs of this process's CPU per row "
        f"(consumer, chDB inserts and merges) = {progress.rows / cpu:,.0f} rows per CPU-second"
    )
    print(f"inserts: {progress.inserts} of {progress.rows / progress.inserts:,.0f} rows; {load()}")


def load() -> str:
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_lag(bootstrap: str, tmp: Path, rate: int, seconds: float) -> None:
    per_record = 20
    settings = fresh_settings(bootstrap, tmp)
    records_per_s = rate / per_record
    pool = encoded_records(int(records_per_s * seconds) + 1, per_record, seed=2)
    progress = Progress(per_record)
    topic = Topics(settings.topic_prefix).usage
    with sink(settings, progress):
        time.sleep(3)  # let the consumer join the group before the clock starts
        p = producer(settings)
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * records_per_s) + 1
            while sent < due:
                key, value = pool[sent % len(pool)]
                p.produce(topic, value, key)
                sent += 1
            p.poll(0)
            time.sleep(0.002)
        p.flush(30)
        progress.target = sent * per_record
        progress.done.wait(60)
    lags = progress.lags_ms
    print(
        f"lag at {rate:,} events/s for {seconds:.0f}s ({sent * per_record:,} events, "
        f"{progress.rows:,} written): p50 {percentile(lags, 0.5):.0f} ms, "
        f"p99 {percentile(lags, 0.99):.0f} ms, max {max(lags):.0f} ms"
    )
    print(f"inserts: {progress.inserts} of {progress.rows / progress.inserts:,.0f} rows; {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args()
    print(f"{load()} at start, on {os.cpu_count()} cores")
    with (
        tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp,
        cluster(Settings(), Path(tmp)) as (bootstrap, what),
    ):
        print(f"Kafka: {what}", flush=True)
        if not args.skip_throughput:
            bench_throughput(bootstrap, Path(tmp), args.events)
        if not args.skip_lag:
            bench_lag(bootstrap, Path(tmp), args.rate, args.seconds)
    print(f"{load()} at end")


if __name__ == "__main__":
    main()
