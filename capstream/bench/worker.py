"""capstream's worker as the suite runs it: a ``capstream worker`` subprocess and its figures.

``throughput`` starts an event-time worker on the backlog and times it from its first event
until it has applied the whole backlog (or until the phase's limit), then stops it cleanly
(SIGTERM: everything taken is flushed, acknowledged and committed), so the committed offsets
are exactly the prefix it processed; the last control state of every bot on that prefix
must equal the decision core's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from capstream.bench.ceilings import Backlog, Progress
from capstream.bench.kafka import committed, read_all
from capstream.bench.options import BenchError, Figures
from capstream.bench.proc import Usage, sample
from capstream.bench.truth import Verdict
from capstream.core import EnforcementState
from capstream.streams.control_wire import encode_state
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics


class WorkerProcess:
    """``capstream worker`` in a subprocess with its own data dir, log file and metrics port."""

    def __init__(
        self, settings: Settings, log: Path, *, event_time: bool, profile_to: Path | None = None
    ) -> None:
        self.settings = settings
        self.profiled = profile_to is not None
        self.group = f"{settings.topic_prefix}.processors"
        data = Path(settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        port_file = data / "metrics.port"
        port_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "CAPSTREAM_DATA_DIR": str(data),
            "CAPSTREAM_USAGE_PARTITIONS": str(settings.usage_partitions),
            "CAPSTREAM_CONTROL_PARTITIONS": str(settings.control_partitions),
        }
        cmd = [sys.executable, "-m", "capstream.cli", "worker", "--metrics-port", "0",
               "--event-time" if event_time else "--wall-clock"]  # fmt: skip
        if profile_to is not None:
            cmd += ["--profile-to", str(profile_to)]
        self.log_path = log
        self._log = log.open("ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise BenchError(f"capstream worker did not start; see {log}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples: ``name{labels}`` -> value."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def events(self) -> float:
        return self.metrics().get("capstream_processor_events_total", 0.0)

    def usage(self) -> Usage:
        u = sample(self.pid)
        if u is None:
            raise BenchError(f"capstream worker exited; see {self.log_path}")
        return u

    def stop(self, timeout: float = 90.0) -> int:
        """SIGTERM (flush, ack, commit, stop); SIGKILL if it takes longer than ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()


def poll_interval(done: float, total: int, elapsed: float, left_s: float) -> float:
    """Seconds until the next scrape of the worker's metrics (each costs it CPU): rarely
    while far from the end, every 20 ms near it, never past the phase's limit."""
    rate = max(done / max(elapsed, 1e-3), 1_000.0)
    return max(0.02, min(0.5, (total - done) / rate / 4, left_s))


def throughput(
    settings: Settings,
    backlog: Backlog,
    work: Path,
    *,
    max_s: float,
    progress: Progress,
    profile_to: Path | None = None,
) -> tuple[Figures, list[int]]:
    """Max-rate run on the backlog; (figures, events processed per partition)."""
    worker = WorkerProcess(settings, work / "worker-throughput.log", event_time=True,
                           profile_to=profile_to)  # fmt: skip
    try:
        while (n := worker.events()) == 0:
            if time.perf_counter() - worker.started > 180:
                raise BenchError(f"the worker applied no event in 180 s; see {worker.log_path}")
            time.sleep(0.02)
        t0, u0 = time.perf_counter(), worker.usage()
        startup = t0 - worker.started
        while n < backlog.events and (elapsed := time.perf_counter() - t0) < max_s:
            time.sleep(poll_interval(n, backlog.events, elapsed, max_s - elapsed))
            n = worker.events()
            progress(int(n))
        t1, u1 = time.perf_counter(), worker.usage()
        topic = Topics(settings.topic_prefix).usage
        parts = settings.usage_partitions
        ends = [len(v) for v in backlog.values]
        committed_s = None
        while n >= backlog.events and time.perf_counter() - t1 < 60:
            if committed(settings, worker.group, topic, parts) == ends:
                committed_s = time.perf_counter() - t0
                break
            time.sleep(0.05)
        m = worker.metrics()
    finally:
        code = worker.stop()
    cut = backlog.events_before(committed(settings, worker.group, topic, parts))
    seconds = t1 - t0
    cpu = u1.cpu_s - u0.cpu_s
    return {
        "events": int(n), "records": sum(backlog.counts[p].__len__() for p in range(parts)),
        "seconds": seconds, "events_per_s": n / seconds,
        "records_per_s": n / seconds * backlog.records / backlog.events,
        "complete": n >= backlog.events, "committed_seconds": committed_s,
        "cpu_s": cpu, "events_per_cpu_s": n / cpu if cpu else None,
        "rss_mib": u1.rss_mib, "peak_rss_mib": u1.peak_rss_mib, "startup_s": startup,
        "exit_code": code,
        "states_published": m.get('capstream_processor_published_total{kind="state"}', 0),
        "notifications": m.get('capstream_processor_published_total{kind="notification"}', 0),
        "flushes": m.get("capstream_processor_flushes_total", 0),
        "flushed_values": m.get("capstream_processor_flushed_values_total", 0),
        "flush_s": m.get("capstream_processor_flush_seconds_sum", 0),
        "gc_s": {g: m.get(f'capstream_processor_gc_pause_seconds_sum{{generation="{g}"}}', 0)
                 for g in "012"},
        "gc_collections": {
            g: m.get(f'capstream_processor_gc_pause_seconds_count{{generation="{g}"}}', 0)
            for g in "012"
        },
        "dead_letters": sum(v for k, v in m.items()
                            if k.startswith("capstream_processor_dead_letters_total")),
        "profiled": profile_to is not None,
    }, cut  # fmt: skip


def check_states(settings: Settings, want: dict[tuple[str, str], EnforcementState]) -> Verdict:
    """Compare the control topic's last state per bot with the core's (byte for byte; a bot
    whose last record is a tombstone follows its account's ``*`` state, and has none)."""
    got: dict[tuple[str, str], bytes] = {}
    for records in read_all(settings, Topics(settings.topic_prefix).control):
        for _, key, value in records:
            if key is not None:
                account, _, bot = key.decode().partition("/")
                if value is None:
                    got.pop((account, bot), None)
                else:
                    got[(account, bot)] = value
    expected = {k: encode_state(s) for k, s in want.items()}
    missing = sum(1 for k, v in expected.items() if got.get(k) != v)
    extra = sum(1 for k in got if k not in expected)
    return Verdict(len(expected), len(got), missing, extra)
