"""A seeded fuzz run on the real broker: random and mutated records on the usage and cap-hit
topics while the worker and the sink run. Neither may exit, both must read to the end (no
record stops a partition), and their memory must stay within a stated bound (issue 20).

``CAPSTREAM_FUZZ_SECONDS`` (default 15) sets how long records are written;
``CAPSTREAM_FUZZ_SEED`` the seed. A failure prints the seed, so the run can be repeated.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from sink_helpers import caught_up
from test_worker_harness import WorkerProcess, wait_for

from capstream.gateway.wire import encode_event
from capstream.sinks.endpoint import endpoint_file
from capstream.sinks.store import chdb_path
from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.codecs import codec
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.usage_wire import encode_batch

SECONDS = float(os.environ.get("CAPSTREAM_FUZZ_SECONDS", "15"))
SEED = int(os.environ.get("CAPSTREAM_FUZZ_SEED", "20261204"))
WORKER_GROWTH_MIB = 100
"""The stated bound: how much either process may grow from its size after a warm-up."""
SINK_GROWTH_MIB = 300


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Fuzzer:
    """Seeded records: valid ones, mutations of valid ones, and junk."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def event(self) -> bytes:
        r = self.rng
        self.n += 1
        return encode_event(
            f"e{self.n}", f"acct-{r.randrange(50)}", f"bot-{r.randrange(5)}", f"c{r.randrange(99)}",
            r.choice(["text", "vision", "audio", "documents"]), "m", r.randrange(5_000),
            r.randrange(500), 1, r.random() < 0.1, r.randrange(10_000), None, None,
        )  # fmt: skip

    def usage(self) -> bytes:
        return encode_batch("b", "fuzz", int(time.time() * 1000),
                            [self.event() for _ in range(self.rng.randrange(1, 20))])  # fmt: skip

    def cap_hit(self) -> bytes:
        r = self.rng
        self.n += 1
        return codec("CapHit").encode({
            "hit_id": f"h{self.n}", "account_id": f"acct-{r.randrange(50)}", "bot_id": "bot-1",
            "conversation_id": f"c{r.randrange(99)}", "category": "text", "period": "daily",
            "period_key": time.strftime("%Y-%m-%d"), "occurred_at_ms": int(time.time() * 1000),
        })  # fmt: skip

    def mutate(self, data: bytes) -> bytes:
        r = self.rng
        raw = bytearray(data)
        for _ in range(r.randrange(1, 4)):
            kind = r.randrange(6)
            at = r.randrange(2, len(raw)) if len(raw) > 2 else 0
            if kind == 0:
                raw[at] ^= 1 << r.randrange(8)  # a bit flip
            elif kind == 1:
                del raw[at:]  # truncated
            elif kind == 2:
                raw[at:at] = bytes(r.randrange(256) for _ in range(r.randrange(1, 12)))
            elif kind == 3:
                raw[at:at] = b"\xff" * r.randrange(9, 14) + b"\x7f"  # an overlong varint
            elif kind == 4:
                raw[at:at] = long_bytes(r.choice([-1, -(1 << 40), 1 << 62, 1 << 31]))
            else:
                raw[at:at] = string_bytes("x" * r.choice([201, 5_000, 100_000]))
        return bytes(raw)

    def junk(self) -> bytes | None:
        r = self.rng
        return r.choice([
            None, b"", os.urandom(r.randrange(1, 200)),
            b"\xc3\x01" + os.urandom(r.randrange(0, 300)),
            b"\xc3\x01" + codec("UsageBatch").fingerprint + os.urandom(r.randrange(0, 300)),
        ])  # fmt: skip

    def record(self, topic: str, usage: str) -> bytes | None:
        r = self.rng.random()
        valid = self.usage() if topic == usage else self.cap_hit()
        if r < 0.4:
            return valid
        if r < 0.85:
            return self.mutate(valid)
        return self.junk()


@pytest.fixture
def worker_and_sink(topics: Settings) -> Iterator[tuple[WorkerProcess, subprocess.Popen[bytes]]]:
    log = Path(topics.data_dir) / "sink.log"
    Path(topics.data_dir).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CAPSTREAM_KAFKA_BOOTSTRAP": topics.bootstrap_servers,
        "CAPSTREAM_TOPIC_PREFIX": topics.topic_prefix,
        "CAPSTREAM_DATA_DIR": str(topics.data_dir),
        "CAPSTREAM_SINK_FLUSH_INTERVAL": "0.1",
    }
    sink = subprocess.Popen(
        [sys.executable, "-m", "capstream.cli", "sink"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    store = chdb_path(topics.clickhouse_dsn)

    def serving() -> bool:
        assert sink.poll() is None, f"the sink exited:\n{log.read_text()[-3000:]}"
        return endpoint_file(store).exists()

    with WorkerProcess(topics) as worker:
        try:
            wait_for(serving, 90, "the sink to serve SQL")
            yield worker, sink
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(10)


def test_no_record_stops_the_worker_or_the_sink_and_memory_stays_bounded(
    topics: Settings, worker_and_sink: tuple[WorkerProcess, subprocess.Popen[bytes]]
) -> None:
    worker, sink = worker_and_sink
    names = Topics(topics.topic_prefix)
    fuzz = Fuzzer(SEED)
    producer = Producer({**topics.librdkafka_config(), "linger.ms": 5})
    warm_until = time.monotonic() + min(3.0, SECONDS / 4)
    base: dict[str, float] = {}
    peak = {"worker": 0.0, "sink": 0.0}
    written = 0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for _ in range(20):
            topic = fuzz.rng.choice([names.usage, names.usage, names.caphits])
            key = fuzz.rng.choice([b"acct-1", None, os.urandom(8), b"acct-33"])
            producer.produce(topic, fuzz.record(topic, names.usage), key,
                             partition=fuzz.rng.randrange(topics.usage_partitions))  # fmt: skip
            written += 1
        producer.poll(0)
        time.sleep(0.02)
        for name, proc in (("worker", worker.proc), ("sink", sink)):
            assert proc.poll() is None, f"the {name} exited (seed {SEED}): {worker.log()}"
            now = rss_mib(proc.pid)
            if time.monotonic() >= warm_until:
                base.setdefault(name, now)
                peak[name] = max(peak[name], now)
    assert producer.flush(30) == 0
    group = f"{topics.topic_prefix}.processors"
    for topic in (names.usage, names.caphits):
        wait_for(lambda t=topic: caught_up(topics, group, t), 120, f"the worker to finish {topic}")
        wait_for(lambda t=topic: caught_up(topics, f"{topics.topic_prefix}.sink", t), 120,
                 f"the sink to finish {topic}")  # fmt: skip
    assert worker.proc.poll() is None and sink.poll() is None, f"seed {SEED}"
    print(f"fuzz: {written} records in {SECONDS:.0f} s (seed {SEED}); RSS worker "
          f"{base['worker']:.0f} -> peak {peak['worker']:.0f} MiB, sink {base['sink']:.0f} -> "
          f"peak {peak['sink']:.0f} MiB")  # fmt: skip
    assert peak["worker"] - base["worker"] < WORKER_GROWTH_MIB, f"seed {SEED}"
    assert peak["sink"] - base["sink"] < SINK_GROWTH_MIB, f"seed {SEED}"
    assert worker.metric("capstream_processor_dead_letters_total") > 0
    assert worker.metric("capstream_processor_events_total") > 0
