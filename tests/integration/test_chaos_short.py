"""The chaos harness, short (issue 17): 50,000 events across 500 accounts while two workers
are SIGKILLed, one joins and one leaves, and a burst of malformed records arrives; then the
whole table (ClickHouse rows and ids, every bot's final control state against the core's
event-time replay, each alert mailed once, the DLQ) must pass. And the negative control: the
same checker on a run that silently drops one event must fail. ``make chaos`` is the long one.
"""

from __future__ import annotations

from pathlib import Path

from capstream.chaos.check import table
from capstream.chaos.faults import FaultCounts
from capstream.chaos.report import fault_table
from capstream.chaos.run import ChaosSpec, run


def test_short_chaos_run_loses_nothing_counts_nothing_twice_and_mails_each_alert_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    spec = ChaosSpec(
        out=tmp_path / "chaos", seed=5, events=50_000, accounts=500, partitions=8, workers=2,
        rate=1_000.0, bootstrap=kafka_bootstrap,
        counts=FaultCounts(worker_kills=2, rebalances=1, sink_kills=1, broker_bounces=0,
                           malformed_bursts=1, burst_records=30),
    )  # fmt: skip
    outcome = run(spec)
    report = f"{table(outcome.rows)}\n{fault_table(outcome.faults)}\n" + "\n".join(outcome.notes)
    print(report)
    assert [f.kind for f in outcome.faults].count("worker_kill") == 2
    assert outcome.figures["alerts"] > 0
    assert outcome.ok, report


def test_the_checker_fails_a_run_that_lost_one_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    spec = ChaosSpec(
        out=tmp_path / "control", seed=6, events=5_000, accounts=100, partitions=4, workers=1,
        rate=5_000.0, bootstrap=kafka_bootstrap, drop_event=2_345,
        counts=FaultCounts(0, 0, 0, 0, 0),
    )  # fmt: skip
    outcome = run(spec)
    rows = {r.check: r for r in outcome.rows}
    assert not outcome.ok
    lost = rows["ClickHouse rows = events published"]
    assert (lost.expected, lost.got, lost.ok) == ("5,000", "4,999", False)
    assert not rows["ClickHouse credits = credits published"].ok
