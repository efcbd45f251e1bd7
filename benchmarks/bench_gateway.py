"""Gateway SDK figures: gate() calls/s, record() events/s into Kafka, decision-to-verdict latency.

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--calls N] [--events N] [--decisions N]``.
Uses ``CAPSTREAM_KAFKA_BOOTSTRAP`` if set, else starts its own broker on free ports (and
stops it). Prints figures; it is not a test. Targets: gate() >= 500,000 calls/s from one
thread; record() >= 200,000 events/s into the broker (counted until flush() returns, i.e.
acknowledged by Kafka); decision-to-verdict p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from capstream.bench.kafka import cluster
from capstream.core.models import CapStatus, EnforcementState
from capstream.gateway import ControlView, Gateway, UsageRecorder
from capstream.streams.control_wire import control_key, record_from_state
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

NOW = int(time.time() * 1000)
LATER = NOW + 3_600_000
CATEGORY_MIX = ["text"] * 7 + ["vision", "audio", "documents"]


def state(account: str, bot: str, version: int, **changes: object) -> EnforcementState:
    fields: dict[str, object] = {
        "account_id": account,
        "bot_id": bot,
        "version": version,
        "updated_at_ms": NOW,
        "blocked_until_ms": None,
        "block_policy_id": None,
        "model": "claude-sonnet-4-6",
        "downgraded_until_ms": None,
        "batching_interval_s": 3,
        "throttled_until_ms": None,
        "throttle_reason": None,
        "caps": {},
        "plan": "pro",
        "fallback_text_daily": "back tomorrow",
        "fallback_text_monthly": "back next month",
    }
    fields.update(changes)
    return EnforcementState(**fields)  # type: ignore[arg-type]


def bench_gate(settings: Settings, calls: int) -> None:
    """gate() from one thread over 10,000 bots whose states came through the control topic."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20})
    topic = Topics(settings.topic_prefix).control
    bots = [(f"acct-{a}", f"bot-{b}") for a in range(1_000) for b in range(10)]
    for i, (account, bot) in enumerate(bots):
        extra: dict[str, object] = {}
        if i % 10 == 1:
            extra = {"model": "claude-haiku", "downgraded_until_ms": LATER}
        elif i % 10 == 2:
            extra = {"caps": {"vision": CapStatus("monthly", "2026-11", LATER)}}
        s = state(account, bot, 1, **extra)
        producer.produce(topic, record_from_state(s).to_bytes(), control_key(account, bot))
    producer.flush(60)
    with Gateway(settings) as gateway:
        started = time.perf_counter()
        gateway.wait_ready(60)
        print(f"ControlView rebuilt {len(bots):,} states in {time.perf_counter() - started:.2f}s")
        rng = random.Random(7)
        asks = [(*rng.choice(bots), f"conv-{rng.randrange(5_000)}", "text") for _ in range(100_000)]
        mixed = [
            (*rng.choice(bots), f"conv-{rng.randrange(5_000)}", rng.choice(CATEGORY_MIX))
            for _ in range(100_000)
        ]
        gate = gateway.gate
        for name, workload in (("text calls", asks), ("mixed categories", mixed)):
            best = best_cpu = 0.0
            for _ in range(3):
                rounds = max(1, calls // len(workload))
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(rounds):
                    for account, bot, conversation, category in workload:
                        gate(account, bot, conversation, category)
                n = rounds * len(workload)
                best = max(best, n / (time.perf_counter() - t0))
                best_cpu = max(best_cpu, n / (time.process_time() - c0))
            print(
                f"gate() {name:<17} {best:>12,.0f} calls/s  (best of 3, one thread; "
                f"{best_cpu:,.0f} per CPU-second)"
            )
        hits = gateway.reporter.stats.reported
        print(f"  (capped media calls reported to caphits: {hits:,})")


def bench_record(settings: Settings, events: int, *, realistic: bool = False) -> None:
    """record() into the broker until flush() confirms every event (acks=all).

    ``realistic``: token counts and credits spread like real calls (most above the encoder's
    small-number table, so those events take its checked path).
    """
    rng = random.Random(3)
    accounts = [f"acct-{a}" for a in range(1_000)]
    work = [
        (f"{uuid.uuid4().hex[:8]}-{i}", rng.choice(accounts), f"conv-{rng.randrange(20_000)}")
        for i in range(events)
    ]
    if realistic:
        sizes = [
            (rng.randrange(50, 40_000), rng.randrange(20, 4_000), rng.randrange(500, 600_000))
            for _ in range(10_000)
        ]
    else:
        sizes = [(420, 180, 2_300)]
    label = "realistic counts" if realistic else "small counts"
    with UsageRecorder(settings, linger_ms=5, max_queue=events + 1) as recorder:
        record = recorder.record
        started = time.perf_counter()
        cpu_started = time.process_time()
        for i, (event_id, account, conversation) in enumerate(work):
            tokens_in, tokens_out, credits = sizes[i % len(sizes)]
            record(
                event_id=event_id,
                account_id=account,
                bot_id="bot-1",
                conversation_id=conversation,
                category="text",
                model="claude-haiku",
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                messages=1,
                credits_micro=credits,
            )
        recorded = time.perf_counter() - started
        left = recorder.flush(120)
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        stats = recorder.stats
    print(
        f"record() {label:<17} {events / total:>10,.0f} events/s into Kafka, acknowledged "
        f"({events:,} events in {total:.2f}s; the record() calls alone: "
        f"{recorded / events * 1e6:.2f} µs each)"
    )
    print(
        f"  {stats.batches:,} UsageBatch records ({events / max(stats.batches, 1):.0f} events "
        f"each), delivered {stats.delivered:,}, not confirmed {left}; this process used "
        f"{cpu / events * 1e6:.2f} CPU-µs per event (all threads, librdkafka's included)"
    )


def bench_latency(settings: Settings, decisions: int) -> None:
    """From the processors' produce() of a new state to the moment gate() can see it."""
    seen: dict[int, float] = {}
    arrived = threading.Event()

    def on_update(s: EnforcementState) -> None:
        seen[s.version] = time.perf_counter()
        arrived.set()

    # The processors' producer settings: idempotent, acks=all, a short linger.
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
        }
    )
    topic = Topics(settings.topic_prefix).control
    sent: dict[int, float] = {}
    with ControlView(settings, on_update=on_update) as view:
        view.wait_ready(60)
        for version in range(1, decisions + 1):
            blocked = LATER if version % 2 else None
            decision = state("acct-lat", "bot-lat", version, blocked_until_ms=blocked)
            value = record_from_state(decision)
            arrived.clear()
            sent[version] = time.perf_counter()
            producer.produce(topic, value.to_bytes(), control_key("acct-lat", "bot-lat"))
            producer.poll(0)
            arrived.wait(5)
            time.sleep(random.uniform(0.0, 0.01))
    producer.flush(10)
    lat = sorted((seen[v] - sent[v]) * 1000 for v in sent if v in seen)
    p = statistics.quantiles(lat, n=100)
    print(
        f"decision-to-verdict over {len(lat)} decisions: p50 {p[49]:.1f} ms, "
        f"p99 {p[98]:.1f} ms, max {lat[-1]:.1f} ms"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--only", choices=["gate", "record", "latency"], action="append")
    args = parser.parse_args(argv)
    only = set(args.only or ["gate", "record", "latency"])
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp, cluster(Settings(), Path(tmp)) as (bootstrap, what):
        print(f"Kafka: {what}", flush=True)
        settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
        create_topics(settings)
        if "gate" in only:
            bench_gate(settings, args.calls)
        if "record" in only:
            bench_record(settings, args.events)
            bench_record(settings, args.events, realistic=True)
        if "latency" in only:
            bench_latency(settings, args.decisions)
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
