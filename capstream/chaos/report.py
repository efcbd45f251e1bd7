"""What a chaos run found, and how it is written: results.json, summary.md, the charts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from capstream.chaos.check import Row, table
from capstream.chaos.monitor import Monitor

PROCESSORS = "workers"
SINK = "sink"
"""The consumer groups' labels in the lag series and the recovery figures."""


@dataclass(slots=True)
class FaultRecord:
    at_s: float
    kind: str
    target: str
    took_s: float
    """How long the injection itself took (a restart until ready, a bounce until up)."""
    recovery: dict[str, float | None] = field(default_factory=dict)
    """Per consumer group: seconds until every partition with records waiting committed past
    where it stood at the fault (the time to recover a moved partition)."""


@dataclass(slots=True)
class Outcome:
    """What a run found: the table, the faults and their recovery, the figures."""

    rows: list[Row]
    faults: list[FaultRecord]
    notes: list[str]
    figures: dict[str, Any]
    out: Path

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)


def write_results(outcome: Outcome, mon: Monitor) -> None:
    """results.json, summary.md and the charts (matplotlib, if installed) under ``out``."""
    out = outcome.out
    lags = {label: mon.lag_series(label) for label in (PROCESSORS, SINK)}
    data = {"ok": outcome.ok, "rows": [r.as_dict() for r in outcome.rows],
            "faults": [asdict(x) for x in outcome.faults], "notes": outcome.notes,
            "figures": outcome.figures,
            "lag": {k: {"t": t, "lag": v} for k, (t, v) in lags.items()}}  # fmt: skip
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "summary.md").write_text(summary(outcome))
    try:
        from capstream.chaos.charts import charts
    except ImportError:  # matplotlib is in the dev extra
        return
    charts(outcome, lags, out)


def fault_table(faults: list[FaultRecord]) -> str:
    lines = ["| at (s) | fault | target | injection took (s) | recovery: workers (s) | "
             "recovery: sink (s) |", "|---|---|---|---|---|---|"]  # fmt: skip

    def fmt(v: float | str | None) -> str:
        return "-" if v == "-" else ("never" if v is None else f"{v:.1f}")

    for x in faults:
        lines.append(f"| {x.at_s:.1f} | {x.kind} | {x.target} | {x.took_s:.1f} | "
                     f"{fmt(x.recovery.get(PROCESSORS, '-'))} | "
                     f"{fmt(x.recovery.get(SINK, '-'))} |")  # fmt: skip
    return "\n".join(lines)


def summary(outcome: Outcome) -> str:
    fig = outcome.figures
    verdict = "PASS" if outcome.ok else "FAIL"
    return "\n".join([
        f"# Chaos run: {verdict}", "",
        f"seed {fig['seed']}, {fig['events']:,} events ({fig['published']:,} published), "
        f"{fig['accounts']:,} accounts, {fig['partitions']} partitions, {fig['workers']} "
        f"workers at start; published in {fig['publish_s']} s, drained {fig['drain_s']} s "
        f"later; load average {fig['load_avg_start'][0]:.1f} -> {fig['load_avg_end'][0]:.1f}",
        "", table(outcome.rows), "", *(f"- {n}" for n in outcome.notes[:40]), "",
        "## Faults", "", fault_table(outcome.faults), "",
        "Recovery: seconds from the fault until every partition that had records waiting "
        "had its group's commit move again (sampled every 0.5 s).", "",
        f"Processes that exited on their own (restarted): {fig['unexpected_exits'] or 'none'}",
        "", f"Worker CPU: {fig['worker_cpu_s']} s for {fig['events']:,} events "
        f"({fig['events_per_worker_cpu_s']} events per worker CPU-second, replays included)",
        "",
    ])  # fmt: skip
