"""The report: ratios only between correct runs, summary.md, the printed tables, PNG charts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from capstream.bench import charts, report
from capstream.bench.ceilings import Backlog
from capstream.bench.options import BenchError, BenchOptions, from_cli


def check(expected: int, missing: int = 0, extra: int = 0) -> dict[str, Any]:
    return {"expected": expected, "got": expected - missing + extra, "missing": missing,
            "extra": extra, "correct": not (missing or extra)}  # fmt: skip


def system(events_per_s: float, cpu: float, verdict: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"events": 100_000, "records": 400, "seconds": 100_000 / events_per_s,
            "events_per_s": events_per_s, "records_per_s": events_per_s / 250,
            "events_per_cpu_s": cpu, "peak_rss_mib": 300.0, "complete": True,
            "check": verdict, **kw}  # fmt: skip


@pytest.fixture
def results() -> dict[str, Any]:
    return {
        "meta": {"timestamp": "20260101-000000", "mode": "quick", "cpus": 2,
                 "load_avg_start": [3.5, 3.0, 2.0], "load_avg_end": [4.25, 3.0, 2.0],
                 "python": "3.11.7", "broker": "local Kafka 4.4.0", "duration_s": 170.0,
                 "command": "capstream bench --quick"},
        "workload": {"seed": 7, "events": 100_000, "accounts": 1000, "bots": 10,
                     "zipf_accounts": 1.1, "zipf_bots": 1.0, "partitions": 4,
                     "threshold_tokens": 500_000, "window_ms": 3_600_000,
                     "step_ms": 1_800_000, "span_s": 3333.0, "records": 400,
                     "events_per_record": 250.0},
        "produce": {"sdk": {"events_per_s": 60_000.0, "records": 400, "seconds": 1.6},
                    "broker": {"events_per_s": 1e6, "records_per_s": 4000.0,
                               "mib_per_s": 80.0}},
        "ceilings": {"aiokafka_decode": {"events": 100_000, "records": 400, "seconds": 1.0,
                                         "passes": 1, "events_per_s": 100_000.0,
                                         "events_per_cpu_s": 125_000.0,
                                         "records_per_s": 400.0}},
        "systems": {
            "capstream": system(20_000.0, 25_000.0, check(5_000), committed_seconds=7.0),
            "faust": system(2_000.0, 2_500.0, check(40), durable_seconds=60.0),
            "quix": system(5_000.0, 5_000.0, check(40, missing=3, extra=1)),
        },
        "latency": [{"offered_rate": 1000, "achieved_rate": 1001.0, "p50_ms": 20.0,
                     "p95_ms": 40.0, "p99_ms": 55.5, "max_ms": 70.0, "decided": 40,
                     "probes": 40, "overshoot_p50_msgs": 0.0, "overshoot_p95_msgs": 1.0,
                     "overshoot_max_msgs": 2, "worker_cores": 0.05, "worker_cores_per_10k": 0.5,
                     "worker_rss_mib": 150.0, "probe_rate_msgs_per_s": 20.0,
                     "probe_threshold_msgs": 10}],
        "components": {},
        "errors": {},
    }  # fmt: skip


def test_ratios_compare_capstream_with_correct_peers_only(results: dict[str, Any]) -> None:
    r = report.ratios(results)
    assert r["capstream/faust"] == {"events_per_s": 10.0, "events_per_cpu_s": 10.0}
    assert "incorrect" in r["capstream/quix"]["note"]
    assert r["capstream/aiokafka_decode"] == {"events_per_s": 0.2, "events_per_cpu_s": 0.2}


def test_nothing_is_compared_when_capstream_itself_is_incorrect(
    results: dict[str, Any],
) -> None:
    results["systems"]["capstream"]["check"] = check(5_000, missing=1)
    assert list(report.ratios(results)) == ["note"]
    assert "INCORRECT (1 missing, 0 extra of 5,000)" in report.summary_markdown(results)


def test_summary_shows_every_figure_and_marks_the_incorrect_run(results: dict[str, Any]) -> None:
    md = report.summary_markdown(results)
    assert "load average 3.5 at start and 4.2 at end" in md
    assert "`capstream bench --quick`" in md
    assert "| capstream worker | 20,000 |" in md
    assert "correct (5,000)" in md
    assert "| Quix Streams (hopping window) | 5,000 |" in md
    assert "INCORRECT (3 missing, 1 extra of 40)" in md
    assert "| capstream/faust | 10.00× | 10.00× |" in md
    assert "quix incorrect or unchecked: not compared" in md
    assert "| 1,000 | 1,001 | 20.0 | 40.0 | 55.5 | 70.0 | 40/40 | 0/1/2 | 0.05 (0.50) | 150 |" in md
    results["errors"] = {"quix": "could not prepare the Quix Streams peer"}
    assert "- quix: could not prepare the Quix Streams peer" in report.summary_markdown(results)


def test_a_profiled_run_says_so_and_where_its_profiles_are(results: dict[str, Any]) -> None:
    md = report.summary_markdown(results)
    assert "cProfile" not in md
    results["meta"]["profiles"] = ["profile-max-rate.txt", "profile-latency.txt"]
    results["latency"][0]["profiled"] = True
    md = report.summary_markdown(results)
    assert "wall clock; worker under cProfile, slower than without it)" in md
    assert "`profile-max-rate.txt`, `profile-latency.txt`" in md
    console = Console(width=200, record=True)
    for table in report.rich_tables(results):
        console.print(table)
    assert "Latency and overshoot; worker under cProfile" in console.export_text()


def test_the_printed_tables_hold_the_same_rows(results: dict[str, Any]) -> None:
    console = Console(width=200, record=True)
    for table in report.rich_tables(results):
        console.print(table)
    text = console.export_text()
    assert "capstream worker" in text
    assert "INCORRECT" in text
    assert "10.00×" in text


def test_charts_are_png_files_even_with_an_incorrect_peer_and_no_latency(
    results: dict[str, Any], tmp_path: Path
) -> None:
    charts.throughput_chart(results, tmp_path / "throughput.png")
    charts.latency_chart(results, tmp_path / "latency.png")
    for name in ("throughput.png", "latency.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 10_000
    empty = copy.deepcopy(results)
    empty["latency"] = []
    charts.latency_chart(empty, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_backlog_offsets_turn_into_event_prefixes() -> None:
    backlog = Backlog([[b"a", b"b", b"c"], [b"d"]], [[5, 7, 1], [4]], 17, 4)
    assert backlog.records == 4
    assert backlog.events_before([2, 0]) == [12, 0]
    assert backlog.events_before([3, 1]) == [13, 4]


def test_options_presets_and_flags() -> None:
    quick, full = BenchOptions.quick(), BenchOptions.full()
    assert quick.events < full.events
    assert quick.worker_max_s + 2 * quick.peer_max_s < full.worker_max_s
    assert not quick.components
    opts = from_cli(True, 5_000, 3, "none", True, False, "out")
    assert (opts.mode, opts.events, opts.seed, opts.peers, opts.components) == (
        "quick", 5_000, 3, (), True)  # fmt: skip
    with pytest.raises(BenchError, match="unknown peers"):
        from_cli(False, None, 7, "flink", None, False, "out")
    with pytest.raises(BenchError, match="events must be at least"):
        BenchOptions.full(events=10)


def test_the_workers_histogram_is_read_per_phase_from_two_scrapes() -> None:
    from capstream.bench.latency import _bucket_quantile

    name = "capstream_processor_decision_latency_seconds"
    before = {f'{name}_bucket{{le="0.1"}}': 90.0, f'{name}_bucket{{le="1.0"}}': 100.0,
              f'{name}_bucket{{le="+Inf"}}': 100.0, f"{name}_count": 100.0}  # fmt: skip
    # This phase: 10 decisions within 100 ms, 60 within a second, 40 slower.
    after = {f'{name}_bucket{{le="0.1"}}': 100.0, f'{name}_bucket{{le="1.0"}}': 160.0,
             f'{name}_bucket{{le="+Inf"}}': 200.0, f"{name}_count": 200.0}  # fmt: skip
    assert _bucket_quantile(before, after, 0.1) == 100.0
    assert _bucket_quantile(before, after, 0.5) == 1000.0
    assert _bucket_quantile(before, after, 0.99) is None  # beyond the last finite bucket
    assert _bucket_quantile(after, after, 0.5) is None  # no decision in the phase


def test_the_full_run_takes_1000_probes_per_rate_and_quick_stays_short() -> None:
    from capstream.bench.latency import probes_due

    full, quick = BenchOptions.full(), BenchOptions.quick()
    assert full.probes == 1_000
    assert quick.probes * len(quick.rates) <= 100 and quick.rate_seconds * len(quick.rates) <= 15
    for opts in (full, quick):
        seconds, n = opts.rate_seconds, opts.probes
        # Probe i starts at i * seconds / n: every one within the phase, none twice.
        starts = [probes_due(i * seconds / n + 1e-9, seconds, n) for i in range(n)]
        assert starts == list(range(1, n + 1))
        assert probes_due(seconds, seconds, n) == probes_due(10 * seconds, seconds, n) == n
    assert probes_due(-0.5, 40, 1_000) == 0
    with pytest.raises(BenchError, match="at least 1 probe"):
        BenchOptions.full(probes=0)


def test_a_probe_never_decided_counts_as_slower_than_every_decided_one() -> None:
    from capstream.bench.latency import latency_figures

    decided: list[float | None] = [float(i) for i in range(1, 991)]  # 990 probes: 1-990 ms
    fig = latency_figures([*decided, *[None] * 10])  # and 10 that never got their block
    assert (fig["probes"], fig["decided"]) == (1_000, 990)
    assert (fig["p50_ms"], fig["p95_ms"], fig["p99_ms"]) == (500.0, 950.0, 990.0)
    assert fig["max_ms"] is None  # not the slowest decided one: 10 took longer
    fig = latency_figures([*decided, *[None] * 11])
    assert fig["p99_ms"] is None  # the 991st of 1,001 was never decided
    row = {"offered_rate": 5_000, "achieved_rate": 4_990.0, "overshoot_p50_msgs": 0.0,
           "overshoot_p95_msgs": 1.0, "overshoot_max_msgs": 2, "worker_cores": 0.5,
           "worker_cores_per_10k": 1.0, "worker_rss_mib": 200.0, "probe_give_up_s": 10.0,
           **fig}  # fmt: skip
    cells = report.latency_rows({"latency": [row]})[0]
    assert cells[4] == "> 10 s (undecided)" and cells[6] == "990/1001"
    assert latency_figures([])["p99_ms"] is None


def test_probe_percentiles_are_nearest_rank_so_p99_of_100_probes_is_not_the_maximum() -> None:
    from capstream.bench.latency import _pct

    ms = [float(i) for i in range(1, 101)]  # 100 probes: 1 ms ... 100 ms
    assert (_pct(ms, 0.50), _pct(ms, 0.95), _pct(ms, 0.99)) == (50.0, 95.0, 99.0)
    twenty = ms[:20]
    assert (_pct(twenty, 0.50), _pct(twenty, 0.95), _pct(twenty, 0.99)) == (10.0, 19.0, 20.0)
    assert _pct([7], 0.5) == _pct([7], 0.99) == 7.0
    assert _pct([], 0.5) is None


def test_a_run_that_failed_early_still_gets_a_summary_and_charts(
    results: dict[str, Any], tmp_path: Path
) -> None:
    results["meta"].pop("broker")
    for key in ("records", "events_per_record"):
        results["workload"].pop(key)
    for key in ("produce", "ceilings", "systems", "components"):
        results[key] = {}
    results["latency"] = []
    results["errors"] = {"suite": "KafkaSetupError: `mvn` was not found on PATH"}
    md = report.summary_markdown(results)
    assert "- suite: KafkaSetupError: `mvn` was not found on PATH" in md
    assert "nothing compared" in md
    charts.throughput_chart(results, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes().startswith(b"\x89PNG")
