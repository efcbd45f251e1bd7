"""The results of one run as tables: ratios, ``summary.md`` and the rich tables printed at the end.

Only correct runs are compared: a system whose decisions differ from the ground truth gets its
figures shown, marked incorrect, and no ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from capstream.bench.options import Figures

Row = list[str]
LABELS = {
    "aiokafka_raw": "aiokafka consume, raw (ceiling)",
    "aiokafka_decode": "aiokafka consume + decode",
    "capstream": "capstream worker",
    "faust": "Faust, naive (windowed table)",
    "quix": "Quix Streams (hopping window)",
}

THROUGHPUT_HEADER = ["system", "events/s", "records/s", "events/CPU-s", "peak RSS MiB",
                     "processed", "durable after", "decisions"]  # fmt: skip
LATENCY_HEADER = ["offered ev/s", "achieved ev/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                  "decided", "overshoot msgs p50/p95/max", "worker cores (per 10k ev/s)",
                  "worker RSS MiB"]  # fmt: skip


def _num(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def _check(fig: Figures) -> str:
    c = fig.get("check")
    if c is None:
        return "not checked"
    if c["correct"]:
        return f"correct ({c['expected']:,})"
    return f"INCORRECT ({c['missing']:,} missing, {c['extra']:,} extra of {c['expected']:,})"


def correct(fig: Figures | None) -> bool:
    return bool(fig and fig.get("check", {}).get("correct"))


def ratios(results: Figures) -> Figures:
    """capstream / each correct peer, and capstream / the consume ceilings."""
    systems = results.get("systems", {})
    cap = systems.get("capstream")
    out: Figures = {}
    if not correct(cap):
        return {"note": "capstream's decisions were not checked correct: nothing compared"}
    for name, fig in systems.items():
        if name == "capstream":
            continue
        if not correct(fig):
            out[f"capstream/{name}"] = {"note": f"{name} incorrect or unchecked: not compared"}
            continue
        cpu = (cap.get("events_per_cpu_s") or 0) / (fig.get("events_per_cpu_s") or 1)
        out[f"capstream/{name}"] = {"events_per_s": cap["events_per_s"] / fig["events_per_s"],
                                    "events_per_cpu_s": cpu}  # fmt: skip
    for name, fig in results.get("ceilings", {}).items():
        if fig.get("events_per_s"):
            out[f"capstream/{name}"] = {
                "events_per_s": cap["events_per_s"] / fig["events_per_s"],
                "events_per_cpu_s": (cap.get("events_per_cpu_s") or 0)
                / (fig.get("events_per_cpu_s") or float("inf")),
            }
    return out


def throughput_rows(results: Figures) -> list[Row]:
    rows = []
    for name, fig in results.get("ceilings", {}).items():
        rows.append([LABELS.get(name, name), _num(fig["events_per_s"]),
                     _num(fig["records_per_s"]), _num(fig.get("events_per_cpu_s")), "—",
                     _done(fig), "—", "—"])  # fmt: skip
    for name, fig in results.get("systems", {}).items():
        label = LABELS.get(name, name)
        if fig.get("profiled"):
            label += " (under cProfile)"
        durable = fig.get("committed_seconds", fig.get("durable_seconds"))
        measured = "committed_seconds" in fig or "durable_seconds" in fig
        after = f"{durable:.1f} s" if durable else ("not in time" if measured else "—")
        rows.append([label, _num(fig["events_per_s"]), _num(fig["records_per_s"]),
                     _num(fig.get("events_per_cpu_s")), _num(fig.get("peak_rss_mib")),
                     _done(fig), after, _check(fig)])  # fmt: skip
    return rows


def _done(fig: Figures) -> str:
    if "passes" in fig:
        state = f"{fig['passes']} pass{'es' if fig['passes'] != 1 else ''}"
    else:
        state = "all" if fig.get("complete") else "limit"
    return f"{fig['events']:,} in {fig['seconds']:.1f} s ({state})"


def produce_rows(results: Figures) -> list[Row]:
    p = results.get("produce", {})
    rows = []
    if "sdk" in p:
        s = p["sdk"]
        rows.append(["UsageRecorder (SDK, envelopes, acks=all)", _num(s["events_per_s"]),
                     _num(s["records"] / s["seconds"]), "—"])  # fmt: skip
    if "broker" in p:
        b = p["broker"]
        rows.append(["broker produce (librdkafka, acks=all)", _num(b["events_per_s"]),
                     _num(b["records_per_s"]), _num(b["mib_per_s"], 1)])  # fmt: skip
    return rows


def ratio_rows(results: Figures) -> list[Row]:
    rows = []
    for name, r in ratios(results).items():
        if isinstance(r, str):
            rows.append([name, r, ""])
        elif "note" in r:
            rows.append([name, r["note"], ""])
        else:
            cpu = r.get("events_per_cpu_s")
            rows.append([name, _ratio(r["events_per_s"]), _ratio(cpu) if cpu else "—"])
    return rows


def latency_rows(results: Figures) -> list[Row]:
    rows = []
    for f in results.get("latency", []):
        keys = ("overshoot_p50_msgs", "overshoot_p95_msgs", "overshoot_max_msgs")
        over = "/".join(_num(f[k]) for k in keys)
        rows.append([_num(f["offered_rate"]), _num(f["achieved_rate"]), _latency(f, "p50_ms"),
                     _latency(f, "p95_ms"), _latency(f, "p99_ms"), _latency(f, "max_ms"),
                     f"{f['decided']}/{f['probes']}", over,
                     f"{f['worker_cores']:.2f} ({f['worker_cores_per_10k']:.2f})",
                     _num(f["worker_rss_mib"])])  # fmt: skip
    return rows


def _latency(f: Figures, key: str) -> str:
    """A probe percentile; one that falls on a probe never decided says so."""
    if f[key] is None and f.get("decided", 0) < f.get("probes", 0):
        return f"> {f.get('probe_give_up_s', 10):g} s (undecided)"
    return _num(f[key], 1)


def _cprofile(results: Figures) -> str:
    """A note for latency figures measured on a worker under cProfile (it slows it down)."""
    if any(f.get("profiled") for f in results.get("latency", [])):
        return "; worker under cProfile, slower than without it"
    return ""


def _ratio(x: float) -> str:
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.2g}×"


def _markdown(header: Sequence[str], rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(results: Figures) -> str:
    """``summary.md``: what ran, on what, the tables, and what failed."""
    m, w = results["meta"], results["workload"]
    la0, la1 = m["load_avg_start"], m["load_avg_end"]
    parts = [
        f"# capstream benchmark — {m['timestamp']} ({m['mode']})",
        f"{m['cpus']} CPUs, load average {la0[0]:.1f} at start and {la1[0]:.1f} at end "
        f"(other work on the machine shares the CPUs: figures are indicative); "
        f"{m.get('broker', 'no broker')}; Python {m['python']}; {m['duration_s']:.0f} s in all. "
        f"Reproduce: `{m['command']}`.",
        f"Workload (seed {w['seed']}): {w['events']:,} usage events, {w['accounts']:,} accounts "
        f"× {w['bots']} bots (Zipf {w['zipf_accounts']} / {w['zipf_bots']}), "
        f"{w['partitions']} partitions, {w.get('records', 0):,} UsageBatch records "
        f"({w.get('events_per_record', 0):.0f} events/record), event time spanning "
        f"{w['span_s'] / 3600:.1f} h; peers' job: tokens per bot ≥ {w['threshold_tokens']:,} in "
        f"hopping {w['window_ms'] // 60_000}-minute windows every {w['step_ms'] // 60_000} "
        "minutes; capstream: 5 policies per account and caps in 4 categories.",
        "## Throughput (one process each, from its first event)",
        _markdown(THROUGHPUT_HEADER, throughput_rows(results)),
        "## Produce",
        _markdown(["producer", "events/s", "records/s", "MiB/s"], produce_rows(results)),
        "## Ratios (only correct runs)",
        _markdown(["ratio", "events/s", "events/CPU-s"], ratio_rows(results)),
    ]
    if results.get("latency"):
        heading = "## Event-to-decision latency and overshoot (capstream, wall clock"
        heading += f"{_cprofile(results)})"
        parts += [heading,
                  "Latency: the crossing message's `record()` → the block visible in a "
                  "gateway's control view. Overshoot: messages a probe bot sending "
                  f"{results['latency'][0]['probe_rate_msgs_per_s']:.0f}/s still got through "
                  f"after its {results['latency'][0]['probe_threshold_msgs']}-message "
                  "threshold (a probe stops after 10 s: 199 means not blocked within 10 s).",
                  _markdown(LATENCY_HEADER, latency_rows(results))]  # fmt: skip
    if m.get("profiles"):
        parts += ["## Profiles of the worker (cProfile)",
                  "Where the worker's time goes: " + ", ".join(f"`{p}`" for p in m["profiles"])
                  + " (by own and by cumulative time; a compiled (mypyc) function is one call, "
                  "the functions it calls are not seen)."]  # fmt: skip
    for name, comp in results.get("components", {}).items():
        parts += [f"## Component: {name}", f"`{comp['command']}`",
                  "```\n" + "\n".join(comp["lines"]) + "\n```"]  # fmt: skip
    if results.get("errors"):
        parts += ["## Phases that failed"]
        parts += [f"- {k}: {v}" for k, v in results["errors"].items()]
    return "\n\n".join(parts) + "\n"


def rich_tables(results: Figures) -> list[Table]:
    """The tables printed at the end of a run."""
    out = []
    specs: list[tuple[str, Sequence[str], list[Row]]] = [
        ("Throughput", THROUGHPUT_HEADER, throughput_rows(results)),
        ("Produce", ["producer", "events/s", "records/s", "MiB/s"], produce_rows(results)),
        ("Ratios (correct runs only)", ["ratio", "events/s", "events/CPU-s"], ratio_rows(results)),
    ]
    if results.get("latency"):
        title = f"Latency and overshoot{_cprofile(results)}"
        specs.append((title, LATENCY_HEADER, latency_rows(results)))
    for title, header, rows in specs:
        table = Table(title=title, title_justify="left")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            style: Any = "red" if any("INCORRECT" in c for c in r) else None
            table.add_row(*r, style=style)
        out.append(table)
    return out
