"""The chaos run's fault plan and its recovery measure, without a broker."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

from capstream.chaos import faults as f
from capstream.chaos.monitor import Monitor, Sample
from capstream.streams.settings import Settings


def test_the_plan_has_every_fault_asked_for_in_the_window_joins_before_leaves() -> None:
    counts = f.FaultCounts()
    plan = f.plan(counts, seed=17, duration_s=300.0)
    kinds = Counter(x.kind for x in plan)
    assert kinds == {f.WORKER_KILL: 5, f.WORKER_JOIN: 2, f.WORKER_LEAVE: 2, f.SINK_KILL: 3,
                     f.BROKER_BOUNCE: 1, f.MALFORMED: 1}  # fmt: skip
    times = [x.at_s for x in plan]
    assert times == sorted(times) and times[0] >= 0.08 * 300 and times[-1] <= 0.9 * 300
    slot = (0.9 - 0.08) * 300 / len(plan)
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.4 * slot - 0.01
    members = 0
    for x in plan:  # never a leave without a worker that joined before it
        members += {f.WORKER_JOIN: 1, f.WORKER_LEAVE: -1}.get(x.kind, 0)
        assert members >= 0
    assert f.plan(counts, 17, 300.0) == plan
    assert f.plan(counts, 18, 300.0) != plan


def test_malformed_records_are_refused_as_intended() -> None:
    """Odd: the whole record is refused (unknown schema); even: its one event is."""
    import pytest

    from capstream.streams.usage_decode import UsageDecoder

    decoder = UsageDecoder(1 << 30)
    with pytest.raises(Exception, match="schema"):
        decoder.decode(f.malformed(1, "acct-0001", 1_767_225_600_000), 1 << 62)
    batch = decoder.decode(f.malformed(0, "acct-0001", 1_767_225_600_000), 1 << 62)
    assert batch.events == [] and len(batch.bad) == 1


def _monitor(samples: list[Sample]) -> Monitor:
    m = Monitor(Settings(data_dir=Path("/tmp")), "usage", 2, {"workers": "g"}, 0.0)
    m.samples = samples
    return m


def test_recovery_is_the_time_until_every_partition_committed_what_was_there_after_the_fault() -> (
    None
):
    s = [
        Sample(9.5, [100, 100], {"workers": [100, 100]}),
        Sample(10.5, [120, 130], {"workers": [110, 100]}),  # the mark: 120 and 130
        Sample(11.0, [140, 160], {"workers": [125, 100]}),  # partition 1's owner is gone
        Sample(24.0, [300, 400], {"workers": [290, 120]}),
        Sample(25.5, [320, 420], {"workers": [310, 150]}),  # both past the mark
    ]
    m = _monitor(s)
    assert m.recovery("workers", 10.0) == 15.5
    assert m.recovery("workers", 30.0) is None  # no sample after it
    assert m.lag_series("workers") == ([9.5, 10.5, 11.0, 24.0, 25.5], [0, 40, 75, 290, 280])
