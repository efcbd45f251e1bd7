"""Ground truth: hopping-window crossings for the peers, the core's last states for capstream."""

from __future__ import annotations

from collections.abc import Sequence

from capstream.bench.load import Workload, WorkloadSpec
from capstream.bench.truth import (
    capstream_truth,
    compare,
    crossings,
    keep_last,
    peer_truth,
    scan_effects,
    split_by_partition,
)
from capstream.core import (
    EnforcementState,
    PolicySet,
    TenantSettings,
    UsageEvent,
)
from capstream.processors.catalog import core_policy, core_settings

HOUR, HALF = 3_600_000, 1_800_000


def ev(i: int, at_ms: int, tokens: int, bot: str = "b", account: str = "a") -> UsageEvent:
    return UsageEvent(f"e{i}", account, bot, "c", "text", "m", tokens, 0, 1, False, 0, at_ms)


def test_a_crossing_is_reported_once_per_window_at_the_event_that_reaches_the_threshold() -> None:
    stream = [
        ev(1, 10 * 60_000, 60),  # windows [-30m, 30m) and [0, 60m)
        ev(2, 20 * 60_000, 40),  # both reach 100
        ev(3, 25 * 60_000, 500),  # already over: nothing new
        ev(4, 40 * 60_000, 100),  # [0, 60m) is over; [30m, 90m) reaches 100 now
        ev(5, 95 * 60_000, 99),  # [60m, 120m) and [90m, 150m): 99, below
    ]
    got = crossings(stream, 100, HOUR, HALF)
    assert got == [("a/b", -HALF, "e2"), ("a/b", 0, "e2"), ("a/b", HALF, "e4")]


def test_bots_are_summed_separately_and_window_edges_are_half_open() -> None:
    stream = [ev(1, HOUR - 1, 100, bot="x"), ev(2, HOUR, 100, bot="y")]
    got = crossings(stream, 100, HOUR, HALF)
    assert got == [("a/x", 0, "e1"), ("a/x", HALF, "e1"), ("a/y", HALF, "e2"), ("a/y", HOUR, "e2")]


def test_the_truth_of_a_prefix_counts_only_the_events_processed() -> None:
    p0 = [ev(1, 0, 50), ev(2, 1, 50)]
    p1 = [ev(3, 0, 100, account="z")]
    assert peer_truth([p0, p1], [2, 1], 100, HOUR, HALF) == {
        ("a/b", -HALF, "e2"), ("a/b", 0, "e2"), ("z/b", -HALF, "e3"), ("z/b", 0, "e3"),
    }  # fmt: skip
    assert peer_truth([p0, p1], [1, 0], 100, HOUR, HALF) == set()


def test_compare_counts_missing_and_extra_decisions() -> None:
    want = {("a/b", 0, "e1"), ("a/b", HALF, "e1")}
    assert compare(want, [("a/b", 0, "e1"), ("a/b", HALF, "e1")]).correct
    wrong = compare(want, [("a/b", 0, "e1"), ("a/b", 0, "e1"), ("a/b", HALF, "e9")])
    assert (wrong.expected, wrong.got, wrong.missing, wrong.extra) == (2, 2, 1, 1)
    assert not wrong.correct
    assert wrong.as_dict()["correct"] is False


def scanning_oracle(
    by_partition: Sequence[Sequence[UsageEvent]],
    policies: dict[str, PolicySet],
    settings: dict[str, TenantSettings],
) -> dict[tuple[str, str], EnforcementState]:
    """The worker's clock rule written plainly: expire every due account on each clock move."""
    last: dict[tuple[str, str], EnforcementState] = {}
    for events in by_partition:
        for effects in scan_effects(events, policies, settings):
            keep_last(last, effects.enforcement)
    return last


def test_capstream_truth_equals_the_plain_scan_of_the_worker_clock_rule() -> None:
    w = Workload(WorkloadSpec(events=6_000, accounts=20, bots=3, sim_rate=2, cross_rank=4))
    events = list(w.events())
    by_partition = split_by_partition(events, w.partition_of, w.spec.partitions)
    ps: dict[str, list[object]] = {}
    for p in w.policies():
        ps.setdefault(p.account_id, []).append(core_policy(p))

    def catalog() -> tuple[dict[str, PolicySet], dict[str, TenantSettings]]:
        return (
            {a: PolicySet(sorted(v, key=lambda p: p.policy_id)) for a, v in ps.items()},  # type: ignore[attr-defined]
            {t.account_id: core_settings(t) for t in w.tenants()},
        )

    want = scanning_oracle(by_partition, *catalog())
    got = capstream_truth(by_partition, [len(p) for p in by_partition], *catalog())
    assert got == want
    # The stream exercises what the comparison is about: blocks, and blocks that ended.
    assert any(s.blocked_until_ms for s in want.values())
    assert any(s.block_policy_id is None and s.version > 2 for s in want.values())
    assert any(s.caps for s in want.values())
    # A prefix is a different, smaller truth.
    half = capstream_truth(by_partition, [len(p) // 2 for p in by_partition], *catalog())
    assert half != got
