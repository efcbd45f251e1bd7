"""PNG charts of a run (matplotlib, Agg backend): throughput bars and latency percentiles."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from capstream.bench.options import Figures
from capstream.bench.report import correct

COLORS = {"ceiling": "#9aa5b1", "capstream": "#1f6feb", "peer": "#e07b39", "bad": "#d0d0d0"}


def _bars(results: Figures) -> list[tuple[str, float, float | None, str]]:
    """(label, events/s, events per CPU-second, kind) per bar, top to bottom."""
    bars: list[tuple[str, float, float | None, str]] = []
    names = {"aiokafka_raw": "aiokafka consume\n(no decoding)",
             "aiokafka_decode": "aiokafka consume\n+ decode"}  # fmt: skip
    for name, fig in results.get("ceilings", {}).items():
        bars.append((names.get(name, name), fig["events_per_s"], fig.get("events_per_cpu_s"),
                     "ceiling"))  # fmt: skip
    for name, fig in results.get("systems", {}).items():
        label = {"capstream": "capstream worker", "faust": "Faust (naive)",
                 "quix": "Quix Streams"}.get(name, name)  # fmt: skip
        kind = "capstream" if name == "capstream" else "peer"
        if not correct(fig):
            label += "\n(INCORRECT)" if "check" in fig else "\n(unchecked)"
            kind = "bad"
        bars.append((label, fig["events_per_s"], fig.get("events_per_cpu_s"), kind))
    return bars


def throughput_chart(results: Figures, path: Path) -> None:
    """Events/s (wall clock) and events per CPU-second, one bar per system."""
    bars = _bars(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.7 * len(bars) + 2.2), sharey=True)
    y = list(range(len(bars)))[::-1]
    for ax, idx, title in ((ax1, 1, "events/s (wall clock)"), (ax2, 2, "events per CPU-second")):
        values = [float(b[idx] or 0) for b in bars]
        colors = [COLORS[b[3]] for b in bars]
        hatch = ["//" if b[3] == "bad" else "" for b in bars]
        rects = ax.barh(y, values, color=colors, edgecolor="#555555")
        for rect, h, v in zip(rects, hatch, values, strict=True):
            rect.set_hatch(h)
            ax.annotate(
                f"{v:,.0f}" if v else "n/a",
                (v, rect.get_y() + rect.get_height() / 2),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
        ax.set_title(title)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.set_xlim(
            max(1.0, min(v for v in values if v) / 3) if any(values) else 1, max([*values, 10]) * 4
        )
        ax.grid(axis="x", alpha=0.3)
    ax1.set_yticks(y, [b[0] for b in bars])
    m = results["meta"]
    fig.suptitle(
        f"Throughput on one stream ({results['workload']['events']:,} events), "
        f"{m['cpus']} CPUs, load average {m['load_avg_start'][0]:.1f}→{m['load_avg_end'][0]:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_chart(results: Figures, path: Path) -> None:
    """p50/p95/p99 event-to-decision latency and overshoot per offered rate."""
    rows = results.get("latency", [])
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    x = list(range(len(rows)))
    width = 0.26
    for i, (key, color) in enumerate((("p50_ms", "#8cb4f5"), ("p95_ms", "#3f7fe0"),
                                      ("p99_ms", "#173f8a"))):  # fmt: skip
        values = [r[key] or 0 for r in rows]
        rects = ax1.bar([v + (i - 1) * width for v in x], values, width, color=color,
                        label=key.replace("_ms", ""))  # fmt: skip
        ax1.bar_label(rects, [f"{v:,.0f}" for v in values], fontsize=8, padding=2)
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax1.set_ylabel("ms (record() → block visible to a gateway)")
    ax1.set_xticks(
        x, [f"{r['offered_rate']:,} ev/s\n(got {r['achieved_rate']:,.0f})" for r in rows]
    )
    ax1.set_title("Event-to-decision latency")
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    for i, (key, color) in enumerate((("overshoot_p50_msgs", "#f2b48a"),
                                      ("overshoot_p95_msgs", "#e07b39"),
                                      ("overshoot_max_msgs", "#9c4a16"))):  # fmt: skip
        values = [r[key] or 0 for r in rows]
        rects = ax2.bar([v + (i - 1) * width for v in x], values, width, color=color,
                        label=key.replace("overshoot_", "").replace("_msgs", ""))  # fmt: skip
        ax2.bar_label(rects, [f"{v:,.0f}" for v in values], fontsize=8, padding=2)
    r0 = rows[0]
    ax2.set_ylabel(f"messages past a {r0['probe_threshold_msgs']}-message threshold")
    ax2.set_xticks(x, [f"{r['offered_rate']:,} ev/s" for r in rows])
    ax2.set_title(f"Overshoot of a bot sending {r0['probe_rate_msgs_per_s']:.0f} messages/s")
    ax2.legend()
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
