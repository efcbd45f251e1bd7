"""Throughput and latency of one processors worker, end to end, with the naive Faust baseline.

Run: ``.venv/bin/python benchmarks/bench_worker.py [--events N] [--rate R] [--profile]``
(uses ``CAPSTREAM_KAFKA_BOOTSTRAP`` or starts a local broker). Prints figures; not a test.

Workload: 1,000 accounts x 10 bots, accounts Zipf-skewed (s = 1.1), 5 usage policies per
account (every scope and metric, alerts and blocks) and caps in every category, produced
through the SDK's per-partition ``UsageBatch`` envelopes (``UsageRecorder``).

1. Throughput: a backlog of N events is produced first; then ``capstream worker`` starts and
   the clock runs from its first event until the group's committed offsets reach the end of
   the usage topic (offsets are committed only after the state and every decision of those
   records are acknowledged by the broker): events/s and records/s end to end, worker RSS.
2. Latency: the same worker under a steady R events/s; every 50 ms a probe event on a fresh
   bot of a probe account whose policy blocks at its first message. Event-to-decision
   latency = from ``record()`` to the moment a ``ControlView`` in this process holds the
   blocked state (SDK linger + Kafka + worker + Kafka + view): p50 / p99. The worker's own
   histogram (occurred_at -> broker ack of the decision) is printed too.
3. Baseline: ``benchmarks/naive_faust.py`` (one hopping-window table write per event, no
   policy logic) on the same backlog.
With ``--profile`` the worker runs under cProfile and the top functions are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from capstream.bench.kafka import cluster
from capstream.gateway import ControlView, UsageRecorder
from capstream.gateway.recorder import DEFAULT_LINGER_MS
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS, BOTS = 1_000, 10
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Asia/Karachi"]
CATEGORIES = ["text"] * 7 + ["vision", "audio", "documents"]
PROBE = "probe-account"


def configure(settings: Settings) -> None:
    """Settings (caps in every category) and 5 policies for every account, plus the probe."""
    topics = Topics(settings.topic_prefix)
    p = Producer({**settings.librdkafka_config(), "linger.ms": 20})
    caps = {
        "text": {"daily_micro": 2 * 10**9, "monthly_micro": 3 * 10**10},
        "vision": {"daily_micro": 2 * 10**8},
        "audio": {"monthly_micro": 10**9},
        "documents": {"daily_micro": 10**8, "monthly_micro": 10**9},
    }
    for i in range(ACCOUNTS):
        a = f"acct-{i}"
        s = TenantSettingsRecord(
            account_id=a,
            timezone=ZONES[i % 5],
            plan="pro",
            caps=caps,
            auto_downgrade=True,
            throttle="smart",
        )
        p.produce(topics.tenants, s.to_bytes(), a.encode())
        block, alert = {"duration_seconds": 300}, {"recipients": []}
        for pol in (
            {
                "policy_id": "tok-h",
                "metric": "tokens",
                "threshold": 400_000,
                "window_seconds": 3600,
                "scope": "account_each_bot",
                "alert": alert,
                "block": block,
            },
            {
                "policy_id": "msg-m",
                "metric": "messages",
                "threshold": 300,
                "window_seconds": 60,
                "scope": "bot",
                "bot_id": "bot-0",
                "alert": alert,
            },
            {
                "policy_id": "conv-d",
                "metric": "conversations",
                "threshold": 5_000,
                "window_seconds": 86_400,
                "scope": "account_total",
                "alert": alert,
            },
            {
                "policy_id": "cr-w",
                "metric": "credits",
                "category": "text",
                "threshold": 5 * 10**9,
                "window_seconds": 7 * 86_400,
                "scope": "account_each_bot",
                "alert": alert,
            },
            {
                "policy_id": "msg-h",
                "metric": "messages",
                "threshold": 20_000,
                "window_seconds": 3600,
                "scope": "account_total",
                "block": block,
            },
        ):
            rec = PolicyRecord(account_id=a, **pol)  # type: ignore[arg-type]
            p.produce(topics.policies, rec.to_bytes(), f"{a}/{rec.policy_id}".encode())
        p.poll(0)
    probe = PolicyRecord(
        account_id=PROBE,
        policy_id="first",
        metric="messages",
        threshold=1,
        window_seconds=60,
        scope="account_each_bot",
        block={"duration_seconds": 3600},
    )
    p.produce(topics.policies, probe.to_bytes(), f"{PROBE}/first".encode())
    assert p.flush(30) == 0


class Load:
    """Zipf-skewed usage events (1,000 accounts x 10 bots)."""

    def __init__(self, seed: int = 1) -> None:
        self.rnd = random.Random(seed)
        weights = [1 / (i + 1) ** 1.1 for i in range(ACCOUNTS)]
        self.accounts = [f"acct-{i}" for i in range(ACCOUNTS)]
        self.cum = list(_accumulate(weights))
        self.n = 0

    def record(self, rec: UsageRecorder, k: int) -> None:
        rnd, accounts = self.rnd, self.accounts
        picks = rnd.choices(accounts, cum_weights=self.cum, k=k)
        for a in picks:
            self.n += 1
            c = rnd.randrange(5_000)
            rec.record(
                event_id=f"e{self.n}",
                account_id=a,
                bot_id=f"bot-{c % BOTS}",
                conversation_id=f"c{c}",
                category=CATEGORIES[c % 10],
                model="claude-sonnet-4-6",
                tokens_in=200 + c % 900,
                tokens_out=100 + c % 300,
                messages=1,
                conversation_started=c % 20 == 0,
                credits_micro=1_000 + c % 9_000,
            )


def _accumulate(xs: list[float]) -> Iterator[float]:
    total = 0.0
    for x in xs:
        total += x
        yield total


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def gc_summary(before: dict[str, float], after: dict[str, float]) -> str:
    """Garbage collections between two metric readings: count and total pause per generation."""
    name = "capstream_processor_gc_pause_seconds"
    parts = []
    for g in range(3):
        label = f'{{generation="{g}"}}'
        count = after.get(f"{name}_count{label}", 0.0) - before.get(f"{name}_count{label}", 0.0)
        total = after.get(f"{name}_sum{label}", 0.0) - before.get(f"{name}_sum{label}", 0.0)
        parts.append(f"gen{g} {count:.0f} taking {total * 1000:.0f} ms")
    return ", ".join(parts)


def committed_to_end(settings: Settings, group: str) -> bool:
    c = Consumer({**settings.librdkafka_config(), "group.id": group})
    try:
        topic = Topics(settings.topic_prefix).usage
        tps = [TopicPartition(topic, p) for p in range(settings.usage_partitions)]
        return all(
            tp.offset == c.get_watermark_offsets(tp, timeout=10)[1]
            for tp in c.committed(tps, timeout=10)
        )
    finally:
        c.close()


def usage_records(settings: Settings) -> int:
    c = Consumer({**settings.librdkafka_config(), "group.id": uuid.uuid4().hex})
    try:
        topic = Topics(settings.topic_prefix).usage
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(settings.usage_partitions)
        )
    finally:
        c.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_worker(settings: Settings, profile: Path | None) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "CAPSTREAM_DATA_DIR": str(settings.data_dir),
    }
    cmd = [sys.executable, "-m", "capstream.cli", "worker"]
    if profile is not None:
        cmd += ["--profile-to", str(profile)]
    port_file = settings.data_dir / "metrics.port"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the worker did not start")
        time.sleep(0.1)
    return proc, int(port_file.read_text())


def histogram_quantile(m: dict[str, float], name: str, q: float) -> float:
    buckets = sorted(
        (float(k.split('le="')[1].rstrip('"}')), v)
        for k, v in m.items()
        if k.startswith(f"{name}_bucket") and "+Inf" not in k
    )
    total = m.get(f"{name}_count", 0.0)
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("inf")


def cpu_times() -> tuple[int, int]:
    """(steal, all) jiffies of the whole machine so far (``/proc/stat``; zeros elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_since(before: tuple[int, int]) -> str:
    """The share of the machine's CPU time the hypervisor gave to others since ``before``:
    on a shared host, the same code runs slower when this is high."""
    steal, total = cpu_times()
    if total <= before[1]:
        return "host steal unknown"
    return f"host steal {(steal - before[0]) / (total - before[1]):.0%}"


def throughput(
    settings: Settings, n: int, profile: Path | None
) -> tuple[subprocess.Popen[bytes], int]:
    load = Load()
    t = time.perf_counter()
    with UsageRecorder(settings, linger_ms=5, max_queue=n + 1) as rec:
        for _ in range(n // 10_000):
            load.record(rec, 10_000)
        assert rec.flush(120) == 0
    produced = time.perf_counter() - t
    records = usage_records(settings)
    print(
        f"backlog: {n:,} events in {records:,} UsageBatch records "
        f"({n / records:.0f} events/record), produced in {produced:.1f} s",
        flush=True,
    )
    proc, port = start_worker(settings, profile)
    while metrics(port).get("capstream_processor_events_total", 0) == 0:
        time.sleep(0.02)
    t0 = time.perf_counter()
    cpu0 = cpu_seconds(proc.pid)
    stolen = cpu_times()
    # Each scrape costs the worker a little CPU: poll rarely while far from the end.
    while (done := metrics(port).get("capstream_processor_events_total", 0)) < n:
        rate = max(done / max(time.perf_counter() - t0, 1e-3), 1_000)
        time.sleep(min(0.5, max(0.02, (n - done) / rate / 4)))
    dt = time.perf_counter() - t0  # every event applied and its decisions produced
    cpu = cpu_seconds(proc.pid) - cpu0
    group = f"{settings.topic_prefix}.processors"
    while not committed_to_end(settings, group):
        time.sleep(0.1)
    committed = time.perf_counter() - t0
    m = metrics(port)
    states = m.get('capstream_processor_published_total{kind="state"}', 0)
    notes = m.get('capstream_processor_published_total{kind="notification"}', 0)
    print(
        f"worker: {n / dt:,.0f} events/s, {records / dt:,.0f} records/s end to end "
        f"({dt:.1f} s from the first event until all {n:,} were applied and their decisions "
        f"produced; offsets committed, after the state was durable, at {committed:.1f} s); "
        f"RSS {rss_mib(proc.pid):,.0f} MiB; "
        f"{states:,.0f} control states, {notes:,.0f} notifications, "
        f"{m.get('capstream_processor_flushes_total', 0):,.0f} flushes writing "
        f"{m.get('capstream_processor_flushed_values_total', 0):,.0f} table values; "
        f"worker CPU {cpu:.1f} s = {n / cpu:,.0f} events per CPU-second (the machine is shared: "
        f"the worker got {cpu / dt:.0%} of a core; {steal_since(stolen)})",
        flush=True,
    )
    return proc, port


def latency(
    settings: Settings,
    port: int,
    pid: int,
    rate: int,
    seconds: float,
    verbose: bool,
    linger_ms: float,
) -> None:
    arrived: dict[str, float] = {}
    lock = threading.Lock()

    def on_update(state: object) -> None:
        s = state  # EnforcementState
        if getattr(s, "account_id", "") == PROBE and getattr(s, "blocked_until_ms", None):
            with lock:
                arrived.setdefault(s.bot_id, time.perf_counter())  # type: ignore[attr-defined]

    view = ControlView(settings, on_update=on_update)
    while not view.ready:
        time.sleep(0.05)
    before = metrics(port)
    stolen = cpu_times()
    cpu0 = cpu_seconds(pid)
    sent: dict[str, float] = {}
    load = Load(seed=2)
    slice_s = 0.01
    per_slice = max(1, int(rate * slice_s))
    with UsageRecorder(settings, linger_ms=linger_ms) as rec:
        start = time.perf_counter()
        next_probe = start
        next_report = start + 2
        i = 0
        while (now := time.perf_counter()) - start < seconds:
            load.record(rec, per_slice)
            if now >= next_probe:
                bot = f"probe-{i}"
                sent[bot] = time.perf_counter()
                rec.record(
                    event_id=f"p{uuid.uuid4().hex}",
                    account_id=PROBE,
                    bot_id=bot,
                    conversation_id="c",
                    category="text",
                    model="m",
                    messages=1,
                )
                i += 1
                next_probe += 0.05
            if verbose and now >= next_report:
                m = metrics(port)
                lag = sum(v for k, v in m.items() if k.startswith("capstream_processor_lag{"))
                print(
                    f"  t={now - start:4.1f}s sent={load.n:,} worker events="
                    f"{m.get('capstream_processor_events_total', 0):,.0f} lag={lag:,.0f} records "
                    f"sdk queued={rec.stats.queued:,} in flight={rec.stats.in_flight:,} "
                    f"cpu={cpu_seconds(pid):.1f}s",
                    flush=True,
                )
                next_report += 2
            i_slice = int((time.perf_counter() - start) / slice_s) + 1
            pause = start + i_slice * slice_s - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - start
        worker_cpu = (cpu_seconds(pid) - cpu0) / elapsed
        rec.flush(30)
    time.sleep(2)
    view.close()
    lat = sorted((arrived[b] - t) * 1000 for b, t in sent.items() if b in arrived)
    if not lat:
        print("latency: no probe decision arrived")
        return
    p50 = statistics.median(lat)
    p90 = lat[min(len(lat) - 1, int(0.90 * len(lat)))]
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    slow = sum(1 for x in lat if x > 100)
    name = "capstream_processor_decision_latency_seconds"
    after = metrics(port)
    m = {k: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(name)}
    delay = "capstream_processor_record_delay_seconds"
    d = {k: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(delay)}
    gc_pauses = gc_summary(before, after)
    print(
        f"latency at {load.n / elapsed:,.0f} events/s (SDK linger {linger_ms:g} ms): "
        f"{len(lat)}/{len(sent)} probe decisions; "
        f"event -> decision in a gateway's view p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
        f"p99 {p99:.1f} ms ({slow} over 100 ms), max "
        f"{lat[-1]:.1f} ms; worker histogram (occurred_at -> decision acked) p50 <= "
        f"{histogram_quantile(m, name, 0.5) * 1000:.0f} ms, p99 <= "
        f"{histogram_quantile(m, name, 0.99) * 1000:.0f} ms; usage record timestamp -> "
        f"worker starts it p50 <= {histogram_quantile(d, delay, 0.5) * 1000:.0f} ms, p99 <= "
        f"{histogram_quantile(d, delay, 0.99) * 1000:.0f} ms; GC pauses {gc_pauses}; "
        f"the worker used {worker_cpu:.0%} of a core; {steal_since(stolen)}",
        flush=True,
    )


def naive(settings: Settings, seconds: float) -> None:
    out = settings.data_dir / "naive.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "naive_faust.py"),
        settings.bootstrap_servers,
        Topics(settings.topic_prefix).usage,
        str(settings.usage_partitions),
        str(settings.data_dir / "naive"),
        str(seconds),
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(seconds + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not out.exists():
        print("naive baseline: no result")
        return
    r = json.loads(out.read_text())
    print(
        f"naive Faust baseline (hopping-window table write per event): "
        f"{r['events_per_s']:,.0f} events/s ({r['events']:,} events in {r['seconds']:.1f} s)",
        flush=True,
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument(
        "--linger",
        type=float,
        default=DEFAULT_LINGER_MS,
        help="UsageRecorder linger (ms), latency phase (default: the SDK's)",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--naive-seconds", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print the worker's lag as it goes")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp, cluster(Settings(), Path(tmp)) as (bootstrap, what):
        print(f"Kafka: {what}", flush=True)
        settings = Settings(
            kafka_bootstrap=bootstrap,
            data_dir=Path(tmp),
            topic_prefix=f"bench{uuid.uuid4().hex[:6]}",
        )
        create_topics(settings)
        configure(settings)
        profile = Path(tmp) / "worker.prof" if args.profile else None
        proc, port = throughput(settings, args.events, profile)
        try:
            latency(
                settings, port, proc.pid, args.rate, args.latency_seconds, args.verbose, args.linger
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        if profile is not None and profile.exists():
            print("worker profile (whole run), top functions by own time:")
            pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)
            print("... and by cumulative time:")
            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(40)
        if args.naive_seconds > 0:  # 0: skip the baseline
            naive(settings, args.naive_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
