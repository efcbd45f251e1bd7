"""The backlog and the limits around capstream: SDK and broker produce rates, consume ceilings.

- ``produce_backlog``: the generated stream through the SDK's ``UsageRecorder`` (per-partition
  ``UsageBatch`` envelopes), timed until Kafka acknowledged every event.
- ``read_backlog``: the records back, checked against the generator (every event, in each
  partition's order), with the events each record holds (to turn offsets into prefixes).
- ``consume_ceiling``: one aiokafka consumer reading the topic as fast as it can (optionally
  decoding each ``UsageBatch``): the ceiling a Python consumer reaches on this machine.
- ``broker_produce``: the records produced again (librdkafka, acks=all, lz4) for a few
  seconds: what the broker itself takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Producer

from capstream.bench.kafka import BenchKafkaError, create_topic, read_all
from capstream.bench.options import Figures
from capstream.core import UsageEvent
from capstream.gateway import UsageRecorder
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.usage_decode import UsageDecoder

Progress = Callable[[int], None]
_NO_LIMIT = 1 << 62


@dataclass(slots=True)
class Backlog:
    """The usage topic's records as the systems see them."""

    values: list[list[bytes]]
    """Record values per partition, by offset (offsets start at 0 and are contiguous)."""
    counts: list[list[int]]
    """Events in each record."""
    events: int
    bytes: int

    @property
    def records(self) -> int:
        return sum(len(v) for v in self.values)

    def events_before(self, offsets: Sequence[int]) -> list[int]:
        """Events per partition in the records below ``offsets`` (a committed position)."""
        return [sum(c[:o]) for c, o in zip(self.counts, offsets, strict=True)]


def produce_backlog(
    settings: Settings, events: Sequence[UsageEvent], progress: Progress
) -> Figures:
    """Record every event through the SDK; seconds until all are acknowledged."""
    n = len(events)
    started = time.perf_counter()
    with UsageRecorder(settings, linger_ms=5, max_queue=n + 1, on_overflow="raise") as rec:
        for i, e in enumerate(events, 1):
            rec.record(e)
            if i % 10_000 == 0:
                progress(i)
        pending = rec.flush(300)
        stats = rec.stats
    seconds = time.perf_counter() - started
    if pending:
        raise BenchKafkaError(f"{pending:,} backlog events were not acknowledged in 300 s")
    progress(n)
    return {"events": n, "records": stats.batches, "seconds": seconds, "events_per_s": n / seconds}


def read_backlog(settings: Settings, by_partition: Sequence[Sequence[UsageEvent]]) -> Backlog:
    """Read the usage topic back; fail unless it holds exactly the generated partitions."""
    decoder = UsageDecoder(1 << 30)
    topic = Topics(settings.topic_prefix).usage
    values: list[list[bytes]] = []
    counts: list[list[int]] = []
    size = total = 0
    for p, records in enumerate(read_all(settings, topic)):
        want = by_partition[p]
        vals, cnts = [], []
        for i, (offset, _, value) in enumerate(records):
            if offset != i or value is None:
                raise BenchKafkaError(f"{topic}[{p}] has a gap or an empty record at {offset}")
            got = decoder.decode(value, _NO_LIMIT).events
            if [e.event_id for e in got] != [e.event_id for e in want[total : total + len(got)]]:
                raise BenchKafkaError(f"{topic}[{p}]@{offset} is not the generated order")
            total += len(got)
            size += len(value)
            vals.append(value)
            cnts.append(len(got))
        if total != len(want):
            raise BenchKafkaError(f"{topic}[{p}] holds {total:,} events, not {len(want):,}")
        values.append(vals)
        counts.append(cnts)
        total = 0
    return Backlog(values, counts, sum(len(w) for w in by_partition), size)


def consume_ceiling(
    settings: Settings,
    backlog: Backlog,
    *,
    decode: bool,
    min_s: float,
    max_s: float,
    progress: Progress,
) -> Figures:
    """Read the usage topic from the start with aiokafka (and decode it if asked), in whole
    passes for at least ``min_s`` seconds (at most ``max_s``)."""
    return asyncio.run(_consume(settings, backlog, decode, min_s, max_s, progress))


async def _consume(
    settings: Settings,
    backlog: Backlog,
    decode: bool,
    min_s: float,
    max_s: float,
    progress: Progress,
) -> Figures:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = Topics(settings.topic_prefix).usage
    ends = [len(v) for v in backlog.values]
    consumer = AIOKafkaConsumer(
        **settings.aiokafka_config(),
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    decoder = UsageDecoder(1 << 30)
    try:
        tps = [TopicPartition(topic, p) for p in range(len(ends))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = events = size = passes = 0
        first = elapsed = cpu0 = 0.0
        # Whole passes over the topic until it has read for min_s (a small topic is read in
        # milliseconds), stopping anyway at max_s.
        while elapsed < min(min_s, max_s):
            pos = [0] * len(ends)
            while pos != ends and elapsed <= max_s:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                if not first and batch:
                    first, cpu0 = time.perf_counter(), time.process_time()
                for tp, msgs in batch.items():
                    for m in msgs:
                        if decode:
                            events += len(decoder.decode(m.value, _NO_LIMIT).events)
                        else:
                            events += backlog.counts[tp.partition][m.offset]
                        size += len(m.value)
                    records += len(msgs)
                    pos[tp.partition] = msgs[-1].offset + 1 if msgs else pos[tp.partition]
                progress(events % (backlog.events + 1))
                elapsed = time.perf_counter() - first if first else 0.0
            passes += pos == ends
            await consumer.seek_to_beginning(*tps)
        cpu = time.process_time() - cpu0
    finally:
        await consumer.stop()
    return {"events": events, "records": records, "seconds": elapsed, "passes": passes,
            "cpu_s": cpu, "events_per_cpu_s": events / cpu if cpu else None,
            "events_per_s": events / elapsed, "records_per_s": records / elapsed,
            "mib_per_s": size / elapsed / 2**20, "complete": passes > 0}  # fmt: skip


def broker_produce(settings: Settings, backlog: Backlog, *, seconds: float) -> Figures:
    """Produce the backlog's records again (acks=all, lz4) for about ``seconds``."""
    topic = f"{settings.topic_prefix}.produce-test"
    create_topic(settings, topic, len(backlog.values))
    p = Producer({**settings.librdkafka_config(), "acks": "all", "enable.idempotence": True,
                  "compression.type": "lz4", "linger.ms": 5, "log_level": 0,
                  "queue.buffering.max.kbytes": 262_144})  # fmt: skip
    records = events = size = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for part, (vals, cnts) in enumerate(zip(backlog.values, backlog.counts, strict=True)):
            for v, c in zip(vals, cnts, strict=True):
                while True:
                    try:
                        p.produce(topic, v, partition=part)
                        break
                    except BufferError:
                        p.poll(0.01)
                records += 1
                events += c
                size += len(v)
            p.poll(0)
    if p.flush(120) != 0:
        raise BenchKafkaError("the produce test was not acknowledged in 120 s")
    took = time.perf_counter() - started
    return {"events": events, "records": records, "seconds": took, "events_per_s": events / took,
            "records_per_s": records / took, "mib_per_s": size / took / 2**20}  # fmt: skip
