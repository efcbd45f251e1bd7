"""How the worker scales here: the same backlog read by 1 worker, then by 2 (each run in a
consumer group of its own, so each starts from the beginning with empty tables); events/s
from the first event applied until every partition is committed, and events per CPU-second
of the workers over the same span (read from /proc; their start-up is not counted).

``python -m capstream.chaos.scaling [--events N]``; uses ``CAPSTREAM_KAFKA_BOOTSTRAP`` or
starts a broker of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from capstream.bench.kafka import committed, end_offsets, write_catalog
from capstream.bench.load import Workload, WorkloadSpec
from capstream.bench.proc import load_average, sample
from capstream.chaos.services import Service, wait_until
from capstream.gateway import UsageRecorder
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics


def measure(settings: Settings, workers: int, events: int, out: Path) -> dict[str, Any]:
    """``workers`` event-time workers in a new group on the whole usage topic."""
    group = f"{settings.topic_prefix}.scale{workers}-{uuid.uuid4().hex[:4]}"
    env = {"CAPSTREAM_WORKER_EVENT_TIME": "true", "CAPSTREAM_WORKER_GROUP": group}
    procs = [
        Service(f"scale{workers}-worker-{i}", "worker", settings, out / f"scale{workers}/w{i}",
                out, env)
        for i in range(workers)
    ]  # fmt: skip
    usage = Topics(settings.topic_prefix).usage
    parts = settings.usage_partitions
    ends = end_offsets(settings, usage, parts)
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready(180)

        def applied() -> float:
            return sum(p.metrics().get("capstream_processor_events_total", 0.0) for p in procs)

        wait_until(lambda: applied() > 0, 300, "the first event applied", every=0.05)
        t0 = time.monotonic()
        # CPU from the first event on: each worker's start (Faust, reading the catalog) apart.
        cpu0 = sum(u.cpu_s for p in procs if (u := sample(p.pid)) is not None)
        wait_until(lambda: committed(settings, group, usage, parts) == ends, 1_800,
                   "every partition committed", every=0.25)  # fmt: skip
        seconds = time.monotonic() - t0
        cpu = -cpu0
        for p in procs:
            u = sample(p.pid)
            cpu += u.cpu_s if u else 0.0
    finally:
        for p in procs:
            p.stop(90)
    return {"workers": workers, "events": events, "seconds": round(seconds, 1),
            "events_per_s": round(events / seconds), "cpu_s": round(cpu, 1),
            "events_per_cpu_s": round(events / cpu)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m capstream.chaos.scaling", description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("chaos-results") / "scaling")
    args = ap.parse_args(argv)
    from capstream.streams.local_kafka import LocalKafka, free_port

    args.out.mkdir(parents=True, exist_ok=True)
    base = Settings()
    broker = None
    bootstrap = base.kafka_bootstrap
    if not bootstrap:
        broker = LocalKafka(args.out / "kafka", free_port(), free_port())
        broker.up(timeout=180)
        bootstrap = broker.bootstrap
    try:
        settings = Settings(
            kafka_bootstrap=bootstrap, topic_prefix=f"scale{uuid.uuid4().hex[:8]}",
            data_dir=args.out / "data", usage_partitions=args.partitions,
            control_partitions=args.partitions,
        )  # fmt: skip
        create_topics(settings)
        w = Workload(WorkloadSpec(seed=11, events=args.events, accounts=2_000,
                                  partitions=args.partitions))  # fmt: skip
        write_catalog(settings, w.tenants(), w.policies())
        with UsageRecorder(settings, linger_ms=5, max_queue=args.events + 1) as rec:
            for e in w.events():
                rec.record(e)
            assert rec.flush(300) == 0
        load0 = load_average()
        rows = [measure(settings, n, args.events, args.out) for n in (1, 2)]
        result = {"rows": rows, "load_avg_start": load0, "load_avg_end": load_average(),
                  "partitions": args.partitions}  # fmt: skip
        (args.out / "scaling.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
    finally:
        if broker is not None:
            broker.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
