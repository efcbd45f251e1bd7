"""PNG charts of a chaos run (matplotlib, Agg): lag with the faults marked, and the time each
fault took to recover from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from capstream.chaos.report import Outcome

COLORS = {
    "worker_kill": "#d62728",
    "worker_join": "#2ca02c",
    "worker_leave": "#9467bd",
    "sink_kill": "#ff7f0e",
    "broker_bounce": "#000000",
    "malformed_burst": "#8c564b",
}


def charts(outcome: Outcome, lags: dict[str, tuple[list[float], list[int]]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(12, 4.8))
    for label, (t, lag) in lags.items():
        ax.plot(t, lag, label=f"records not yet committed: {label}", linewidth=1.2)
    seen: set[str] = set()
    for x in outcome.faults:
        ax.axvline(x.at_s, color=COLORS.get(x.kind, "grey"), linestyle="--", linewidth=1,
                   label=x.kind if x.kind not in seen else None)  # fmt: skip
        seen.add(x.kind)
    ax.set_xlabel("seconds since the first event was published")
    ax.set_ylabel("usage records behind")
    verdict = "PASS" if outcome.ok else "FAIL"
    ax.set_title(f"Chaos run ({verdict}): consumer lag with the faults injected")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "lag.png", dpi=110)
    plt.close(fig)

    rows = [(f"{x.at_s:.0f}s {x.kind}", label, v) for x in outcome.faults
            for label, v in x.recovery.items()]  # fmt: skip
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 1.5))
    y = list(range(len(rows)))[::-1]
    values = [v if v is not None else 0.0 for _, _, v in rows]
    colors = ["#1f6feb" if label == "workers" else "#e07b39" for _, label, _ in rows]
    bars = ax.barh(y, values, color=colors)
    for bar, (_, _, v) in zip(bars, rows, strict=True):
        ax.annotate("never" if v is None else f"{v:.1f} s",
                    (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, [f"{name} ({label})" for name, label, _ in rows], fontsize=8)
    ax.set_xlabel("seconds until every waiting partition committed again")
    ax.set_title("Time to recover after each fault (blue: workers' group, orange: sink)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "recovery.png", dpi=110)
    plt.close(fig)
