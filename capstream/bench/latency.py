"""Event-to-decision latency and overshoot at fixed offered rates (open loop, wall clock).

A wall-clock worker runs on its own deployment. For each offered rate the suite records the
workload's live events at that rate (time slices; a slow generator catches up, and the rate
it achieved is reported) and starts its probes evenly spread over the phase (1,000 per rate
in the full run, ``BenchOptions.probes``): each a fresh bot
of the probe account, whose policy blocks at its ``PROBE_THRESHOLD``-th message in a minute.
The probe sends those messages at once, then keeps sending ``PROBE_RATE`` messages a second,
asking the gateway before each one, as a real gateway does, until it answers ``paused``.

The achieved rate is the background's; the probes add a little on top (reported apart), and
the worker's CPU per 10k events/s counts both.

- latency: from the ``record()`` of the crossing message to the moment the gateway's
  control view holds the block (SDK linger + Kafka + worker + Kafka + view);
- overshoot: the messages the bot still got through after crossing its threshold.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capstream.bench.ceilings import Progress
from capstream.bench.load import PROBE_ACCOUNT, PROBE_THRESHOLD
from capstream.bench.options import Figures
from capstream.bench.worker import WorkerProcess
from capstream.core import EnforcementState
from capstream.gateway import ControlView, Gateway, UsageRecorder
from capstream.streams.settings import Settings

PROBE_RATE = 20.0
"""Messages per second a probe bot keeps sending after its threshold (a busy bot)."""
PROBE_TOKENS = 1_000
PROBE_GIVE_UP_S = 10.0
_HISTOGRAM = "capstream_processor_decision_latency_seconds"


@dataclass(slots=True)
class Probe:
    bot: str
    crossed_at: float
    next_send: float
    after: int = 0
    ended_at: float | None = None


@dataclass(slots=True)
class Rig:
    """The worker, gateway and recorder the latency phases share."""

    worker: WorkerProcess
    gateway: Gateway
    recorder: UsageRecorder
    live: Iterator[dict[str, Any]]
    seen: dict[str, float] = field(default_factory=dict)
    probes: int = 0


def open_rig(
    settings: Settings,
    work: Path,
    live: Iterator[dict[str, Any]],
    profile_to: Path | None = None,
) -> Rig:
    """Start a wall-clock worker, a gateway following its control topic and a recorder."""
    worker = WorkerProcess(
        settings, work / "worker-latency.log", event_time=False, profile_to=profile_to
    )
    seen: dict[str, float] = {}
    lock = threading.Lock()

    def on_update(state: EnforcementState) -> None:
        if state.account_id == PROBE_ACCOUNT and state.blocked_until_ms is not None:
            with lock:
                seen.setdefault(state.bot_id, time.perf_counter())

    view = ControlView(settings, on_update=on_update)
    gateway = Gateway(settings, view=view)
    gateway.wait_ready(60)
    recorder = UsageRecorder(settings, max_queue=2_000_000)  # the SDK's default linger
    rig = Rig(worker, gateway, recorder, live, seen)
    # Warm-up: one probe must come back before anything is measured (group join, catalog).
    bot = _start_probe(rig).bot
    deadline = time.perf_counter() + 180
    while bot not in seen:
        if time.perf_counter() > deadline:
            close_rig(rig)
            raise TimeoutError("the latency worker made no decision in 180 s")
        time.sleep(0.05)
    return rig


def close_rig(rig: Rig) -> None:
    rig.recorder.close(30)
    rig.gateway.close()
    rig.worker.stop()


def _record_probe(rig: Rig, bot: str) -> None:
    rig.recorder.record(
        event_id=f"{bot}-{time.perf_counter_ns()}", account_id=PROBE_ACCOUNT, bot_id=bot,
        conversation_id="probe", category="text", model="claude-sonnet-4-6",
        tokens_in=PROBE_TOKENS // 2, tokens_out=PROBE_TOKENS // 2, messages=1,
    )  # fmt: skip


def _start_probe(rig: Rig) -> Probe:
    rig.probes += 1
    bot = f"p{rig.probes}"
    for _ in range(PROBE_THRESHOLD):
        _record_probe(rig, bot)
    crossed = time.perf_counter()
    return Probe(bot, crossed, crossed + 1 / PROBE_RATE)


def _tend(rig: Rig, active: list[Probe], done: list[Probe], now: float) -> None:
    """Each active probe asks the gateway and sends its next message if still allowed."""
    for probe in list(active):
        if now < probe.next_send:
            continue
        paused = rig.gateway.gate(PROBE_ACCOUNT, probe.bot, "probe", "text").action == "paused"
        if paused or now - probe.crossed_at > PROBE_GIVE_UP_S:
            probe.ended_at = now
        else:
            _record_probe(rig, probe.bot)
            probe.after += 1
            probe.next_send += 1 / PROBE_RATE
            continue
        active.remove(probe)
        done.append(probe)


def probes_due(elapsed: float, seconds: float, probes: int) -> int:
    """How many of a phase's ``probes`` have started ``elapsed`` seconds into it: the
    ``i``-th at ``i * seconds / probes``, so the phase starts all of them, evenly spread."""
    if elapsed < 0:
        return 0
    return min(probes, math.floor(elapsed * probes / seconds) + 1)


def phase(rig: Rig, rate: int, seconds: float, probes: int, progress: Progress) -> Figures:
    """Offer ``rate`` events/s for ``seconds`` with ``probes`` probes; figures of the phase
    (the phase runs on until its last probe has started, should the loop fall behind)."""
    m0, u0 = rig.worker.metrics(), rig.worker.usage()
    e0 = m0.get("capstream_processor_events_total", 0.0)
    active: list[Probe] = []
    done: list[Probe] = []
    background = 0
    started = 0
    start = now = time.perf_counter()
    while now - start < seconds or started < probes:
        due = min(int((now - start) * rate) - background, max(rate // 50, 100))
        for _ in range(due):
            rig.recorder.record(**next(rig.live))
        background += max(due, 0)
        if started < probes_due(now - start, seconds, probes):
            active.append(_start_probe(rig))
            started += 1
        _tend(rig, active, done, now)
        progress(int(now - start))
        pause = 0.002 - (time.perf_counter() - now)
        if pause > 0:
            time.sleep(pause)
        now = time.perf_counter()
    elapsed = now - start
    while active:  # the probes still running finish without background load
        _tend(rig, active, done, time.perf_counter())
        time.sleep(0.002)
    probe_events = len(done) * PROBE_THRESHOLD + sum(p.after for p in done)
    sent = background + probe_events
    u1 = rig.worker.usage()
    deadline = time.perf_counter() + 30  # let the worker catch up before the next rate
    while rig.worker.events() - e0 < sent and time.perf_counter() < deadline:
        time.sleep(0.1)
    m1 = rig.worker.metrics()
    fig = _figures(rig, rate, sent, elapsed, done, u1.cpu_s - u0.cpu_s, u1.rss_mib, m0, m1)
    fig["achieved_rate"] = background / elapsed
    fig["probe_events_per_s"] = probe_events / elapsed
    return fig


def _figures(
    rig: Rig, rate: int, sent: int, elapsed: float, probes: list[Probe], cpu: float,
    rss: float, m0: dict[str, float], m1: dict[str, float],
) -> Figures:  # fmt: skip
    lat = [(rig.seen[p.bot] - p.crossed_at) * 1000 if p.bot in rig.seen else None
           for p in probes]  # fmt: skip
    over = sorted(p.after for p in probes if p.bot in rig.seen)
    achieved = sent / elapsed
    cores = cpu / elapsed
    return {
        "offered_rate": rate, "seconds": elapsed,
        **latency_figures(lat),
        "overshoot_p50_msgs": _pct(over, 0.5), "overshoot_p95_msgs": _pct(over, 0.95),
        "overshoot_max_msgs": over[-1] if over else None,
        "overshoot_p95_pct": (_pct(over, 0.95) or 0) / PROBE_THRESHOLD * 100 if over else None,
        "probe_rate_msgs_per_s": PROBE_RATE, "probe_threshold_msgs": PROBE_THRESHOLD,
        "probe_give_up_s": PROBE_GIVE_UP_S,
        "worker_cores": cores, "worker_cores_per_10k": cores * 10_000 / achieved,
        "worker_rss_mib": rss,
        "worker_p50_ms_le": _bucket_quantile(m0, m1, 0.5),
        "worker_p99_ms_le": _bucket_quantile(m0, m1, 0.99),
        "recorder_rejected": rig.recorder.stats.rejected,
        "profiled": rig.worker.profiled,
    }  # fmt: skip


def latency_figures(lat: list[float | None]) -> Figures:
    """Percentiles of the probes' latencies (ms; None: no decision within the give-up time).

    A probe without a decision counts as slower than every decided one: a percentile that
    falls on one is None (the report says "over the give-up time"), and so is the maximum;
    the mean is of the decided probes."""
    decided = sorted(x for x in lat if x is not None)
    ranked: list[float] = [*decided, *[math.inf] * (len(lat) - len(decided))]

    def pct(q: float) -> float | None:
        v = _pct(ranked, q)
        return None if v is None or math.isinf(v) else v

    return {
        "probes": len(lat), "decided": len(decided),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
        "max_ms": pct(1.0), "mean_ms": statistics.fmean(decided) if decided else None,
    }  # fmt: skip


def _pct(xs: list[float] | list[int], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``xs``: the smallest value with at least ``q`` of
    the values at or below it (p99 of 100 probes is the 99th, not the maximum)."""
    if not xs:
        return None
    return float(xs[max(0, math.ceil(q * len(xs) - 1e-9) - 1)])


def _bucket_quantile(m0: dict[str, float], m1: dict[str, float], q: float) -> float | None:
    """Upper bound (ms) of the worker's histogram bucket holding quantile ``q`` of the phase."""
    buckets = []
    for name, value in m1.items():
        if name.startswith(f"{_HISTOGRAM}_bucket") and "+Inf" not in name:
            le = float(name.split('le="')[1].split('"')[0])
            buckets.append((le, value - m0.get(name, 0.0)))
    buckets.sort()
    total = m1.get(f"{_HISTOGRAM}_count", 0.0) - m0.get(f"{_HISTOGRAM}_count", 0.0)
    for le, count in buckets:
        if total and count >= q * total:
            return le * 1000
    return None
