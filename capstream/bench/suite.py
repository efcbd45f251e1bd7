"""``capstream bench``: every phase on one broker and one generated stream, then the report.

Phases, in order (each bounded by its time limit; a failed peer, latency or component phase
is reported and the run goes on):

1. setup: the broker (or ``CAPSTREAM_KAFKA_BOOTSTRAP``) and the Quix peer's virtualenv;
2. the seeded backlog through the SDK, read back and checked against the generator;
3. ceilings: aiokafka raw consume, consume + decode, the broker's produce rate;
4. capstream's worker at max rate (event time), its decisions checked against the core's;
5. the peers on the same backlog, their decisions checked against the ground truth;
6. latency and overshoot at fixed offered rates (wall-clock worker, own topics);
7. component benchmarks (full mode);
8. ``results.json``, ``summary.md``, PNG charts in ``<out>/<timestamp>/``, tables printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib import metadata
from pathlib import Path

from rich.console import Console

from capstream.bench import ceilings, charts, latency, peers, report
from capstream.bench.components import COMPONENTS, run_component
from capstream.bench.display import Display, Phase
from capstream.bench.kafka import cluster, deployment, write_catalog
from capstream.bench.load import Workload, WorkloadSpec
from capstream.bench.options import BenchError, BenchOptions, Figures
from capstream.bench.proc import load_average
from capstream.bench.truth import capstream_truth, peer_truth, policy_sets, split_by_partition
from capstream.bench.worker import check_states, throughput
from capstream.processors.catalog import core_settings
from capstream.streams.settings import Settings


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("capstream", "faust-streaming", "aiokafka", "confluent-kafka", "rocksdict"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def run_bench(settings: Settings, options: BenchOptions, console: Console, command: str) -> Path:
    """Run the suite; return the results folder."""
    started = time.perf_counter()
    out = options.out_dir / datetime.now().strftime("%Y%m%d-%H%M%S")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec = WorkloadSpec(seed=options.seed, events=options.events, accounts=options.accounts,
                        bots=options.bots, partitions=options.partitions)  # fmt: skip
    workload = Workload(spec)
    results: Figures = {
        "meta": {"timestamp": out.name, "mode": options.mode, "cpus": _cpus(),
                 "load_avg_start": load_average(), "python": platform.python_version(),
                 "platform": platform.platform(), "versions": _versions(), "command": command},
        "workload": {"seed": spec.seed, "events": spec.events, "accounts": spec.accounts,
                     "bots": spec.bots, "zipf_accounts": spec.zipf_accounts,
                     "zipf_bots": spec.zipf_bots, "partitions": spec.partitions,
                     "threshold_tokens": workload.threshold_tokens, "window_ms": spec.window_ms,
                     "step_ms": spec.step_ms, "span_s": spec.events / spec.sim_rate},
        "produce": {}, "ceilings": {}, "systems": {}, "latency": [], "components": {},
        "errors": {},
    }  # fmt: skip
    errors: dict[str, str] = results["errors"]
    console.print(f"capstream bench ({options.mode}): results in [bold]{out}[/]")
    with (
        Display(console) as d,
        tempfile.TemporaryDirectory(prefix="capstream-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        quix: Path | None = None
        try:
            with d.phase("setup: broker, Quix Streams env", 1, "steps") as ph:
                pool = stack.enter_context(ThreadPoolExecutor(1))
                pending = pool.submit(peers.quix_python, logs / "quix-peer-setup.log") \
                    if "quix" in options.peers else None  # fmt: skip
                bootstrap, broker = stack.enter_context(cluster(settings, work))
                ph.note = results["meta"]["broker"] = broker
                if pending is not None:
                    try:
                        quix = pending.result()
                    except Exception as exc:
                        errors["quix"] = str(exc)
            _measure(results, options, workload, settings, bootstrap, work, logs, out, d, quix)
        except Exception as exc:
            errors["suite"] = f"{type(exc).__name__}: {exc}"
    results["meta"]["load_avg_end"] = load_average()
    results["meta"]["duration_s"] = time.perf_counter() - started
    results["ratios"] = report.ratios(results)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(report.summary_markdown(results))
    charts.throughput_chart(results, out / "throughput.png")
    charts.latency_chart(results, out / "latency.png")
    wide = console if console.is_terminal else Console(width=180)
    for table in report.rich_tables(results):
        wide.print(table)
    for phase, message in errors.items():
        console.print(f"[red]{phase} failed:[/] {message}", highlight=False)
    console.print(f"results: [bold]{out}[/] ({results['meta']['duration_s']:.0f} s)")
    if errors:
        raise BenchError(f"phases failed: {', '.join(errors)} (see {out / 'summary.md'})")
    return out


def _cpus() -> int:
    return os.cpu_count() or 1


def _measure(
    results: Figures, options: BenchOptions, workload: Workload, settings: Settings,
    bootstrap: str, work: Path, logs: Path, out: Path, d: Display, quix: Path | None,
) -> None:  # fmt: skip
    spec, n = workload.spec, workload.spec.events
    errors: dict[str, str] = results["errors"]
    a = deployment(settings, bootstrap, work / "a", spec.partitions)
    tenants, policies = workload.tenants(), workload.policies()
    with d.phase("backlog through the SDK", n) as ph:
        events = list(workload.events())
        write_catalog(a, tenants, policies)
        sdk = ceilings.produce_backlog(a, events, d.ticker(ph))
        results["produce"]["sdk"] = sdk
        ph.note = f"{sdk['events_per_s']:,.0f} events/s into Kafka"
    by_partition = split_by_partition(events, workload.partition_of, spec.partitions)
    with d.phase("read back, check against generator", n) as ph:
        backlog = ceilings.read_backlog(a, by_partition)
        results["workload"].update(records=backlog.records, mib=backlog.bytes / 2**20,
                                   events_per_record=n / backlog.records)  # fmt: skip
        ph.note = f"{backlog.records:,} records, {n / backlog.records:.0f} events/record"
    for name, decode in (("aiokafka_raw", False), ("aiokafka_decode", True)):
        with d.phase(f"ceiling: {name.replace('_', ' ')}", n) as ph:
            fig = ceilings.consume_ceiling(
                a,
                backlog,
                decode=decode,
                min_s=options.ceiling_min_s,
                max_s=options.ceiling_max_s,
                progress=d.ticker(ph),
            )
            results["ceilings"][name] = fig
            ph.note = f"{fig['events_per_s']:,.0f} events/s"
    with d.phase("broker produce rate", 1, "runs") as ph:
        fig = ceilings.broker_produce(a, backlog, seconds=options.produce_test_s)
        results["produce"]["broker"] = fig
        ph.note = f"{fig['mib_per_s']:,.0f} MiB/s, {fig['events_per_s']:,.0f} events/s"
    profile = out / "worker.prof" if options.profile else None
    with d.phase("capstream worker, max rate", n) as ph:
        fig, cut = throughput(a, backlog, logs, max_s=options.worker_max_s,
                              progress=d.ticker(ph), profile_to=profile)  # fmt: skip
        results["systems"]["capstream"] = fig
        ph.note = f"{fig['events_per_s']:,.0f} events/s"
    with d.phase("check capstream against the core", sum(cut)) as ph:
        ps = policy_sets(policies)
        ts = {t.account_id: core_settings(t) for t in tenants}
        verdict = check_states(a, capstream_truth(by_partition, cut, ps, ts))
        fig["check"] = verdict.as_dict()
        ph.note = "correct" if verdict.correct else f"INCORRECT: {verdict.as_dict()}"
    if profile is not None and profile.exists():
        _write_profile(profile, out / "profile-max-rate.txt", "at max rate (event time)")
        results["meta"].setdefault("profiles", []).append("profile-max-rate.txt")
    for name in options.peers:
        python = quix if name == "quix" else Path(sys.executable)
        if python is None:
            continue
        try:
            with d.phase(f"peer: {name}", int(options.peer_max_s), "s") as ph:
                fig, got = peers.run_peer(
                    name, python, a, backlog, logs, work, threshold=workload.threshold_tokens,
                    window_ms=spec.window_ms, step_ms=spec.step_ms,
                    max_s=options.peer_max_s, progress=d.ticker(ph),
                )  # fmt: skip
                results["systems"][name] = fig
                cut = backlog.events_before(fig["cut"])
                want = peer_truth(
                    by_partition, cut, workload.threshold_tokens, spec.window_ms, spec.step_ms
                )
                v = peers.check(fig, got, want)
                ph.note = f"{fig['events_per_s']:,.0f} events/s, " + (
                    "correct" if v.correct else f"INCORRECT {v.as_dict()}")  # fmt: skip
        except Exception as exc:
            errors[name] = str(exc)
    del events, by_partition, backlog
    _latency(results, options, workload, settings, bootstrap, work, logs, d)
    if options.components:
        for name in COMPONENTS:
            with d.phase(f"component: {name.split(' ')[0]}", 1, "runs") as ph:
                comp = run_component(name, bootstrap)
                results["components"][name] = comp
                ph.note = f"exit {comp['exit_code']}"


def _latency(
    results: Figures, options: BenchOptions, workload: Workload, settings: Settings,
    bootstrap: str, work: Path, logs: Path, d: Display,
) -> None:  # fmt: skip
    total = int(len(options.rates) * options.rate_seconds)
    try:
        with d.phase("latency: worker, gateway", 1, "steps"):
            b = deployment(settings, bootstrap, work / "b", workload.spec.partitions)
            write_catalog(b, workload.tenants(), [*workload.policies(), workload.probe_policy()])
            prof = logs.parent / "worker-latency.prof" if options.profile else None
            rig = latency.open_rig(b, logs, workload.live(), profile_to=prof)
        try:
            with d.phase("latency at fixed rates", total, "s") as ph:
                for i, rate in enumerate(options.rates):
                    base = int(i * options.rate_seconds)
                    fig = latency.phase(rig, rate, options.rate_seconds, options.probes,
                                        _offset(ph, base))  # fmt: skip
                    results["latency"].append(fig)
                ph.note = ", ".join(
                    f"{f['offered_rate']:,}/s p99 {f['p99_ms'] or 0:,.0f} ms"
                    for f in results["latency"]
                )
        finally:
            latency.close_rig(rig)
        if prof is not None and prof.exists():
            _write_profile(prof, logs.parent / "profile-latency.txt", "in the latency phases")
            results["meta"].setdefault("profiles", []).append("profile-latency.txt")
    except Exception as exc:
        results["errors"]["latency"] = str(exc)


def _offset(phase: Phase, base: int) -> ceilings.Progress:
    def update(done: int) -> None:
        phase.update(base + done)

    return update


def _write_profile(prof: Path, text: Path, what: str) -> None:
    with text.open("w") as f:
        stats = pstats.Stats(str(prof), stream=f)
        f.write(f"# capstream worker {what}, by own time\n")
        stats.sort_stats("tottime").print_stats(40)
        f.write("\n# by cumulative time\n")
        stats.sort_stats("cumulative").print_stats(40)
