"""The seeded generator: same seed, same stream and catalog; Zipf skew; a valid catalog."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from capstream.bench.load import PROBE_THRESHOLD, Workload, WorkloadError, WorkloadSpec
from capstream.core import PolicySet
from capstream.errors import CapstreamError
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.partitioner import partition_for

SPEC = WorkloadSpec(events=20_000, accounts=100, bots=5)


def fingerprint(w: Workload, n: int = 20_000) -> list[tuple[object, ...]]:
    return [
        (e.event_id, e.account_id, e.bot_id, e.conversation_id, e.category, e.tokens_in,
         e.tokens_out, e.conversation_started, e.credits_micro, e.occurred_at_ms)
        for e in itertools.islice(w.events(), n)
    ]  # fmt: skip


def test_the_same_seed_gives_the_same_stream_and_catalog() -> None:
    a, b = Workload(SPEC), Workload(SPEC)
    assert fingerprint(a) == fingerprint(b)
    assert [t.to_bytes() for t in a.tenants()] == [t.to_bytes() for t in b.tenants()]
    assert [p.to_bytes() for p in a.policies()] == [p.to_bytes() for p in b.policies()]
    live_a = [d["event_id"] + d["account_id"] for d in itertools.islice(a.live(), 500)]
    live_b = [d["event_id"] + d["account_id"] for d in itertools.islice(b.live(), 500)]
    assert live_a == live_b


def test_another_seed_gives_another_stream() -> None:
    other = Workload(WorkloadSpec(seed=8, events=20_000, accounts=100, bots=5))
    assert fingerprint(other, 2_000) != fingerprint(Workload(SPEC), 2_000)


def test_activity_is_zipf_skewed_across_accounts_and_bots() -> None:
    events = list(Workload(SPEC).events())
    assert len(events) == SPEC.events
    per_account = Counter(e.account_id for e in events)
    ranked = [a for a, _ in per_account.most_common()]
    assert ranked[0] == "acct-0000"
    # rank 1 gets about 1 / 2^1.1 of rank 0's events, rank 10 about 1 / 11^1.1
    assert 0.35 < per_account["acct-0001"] / per_account["acct-0000"] < 0.6
    assert per_account["acct-0010"] / per_account["acct-0000"] < 0.12
    per_bot = Counter(e.bot_id for e in events)
    assert per_bot["bot-0"] > 2 * per_bot["bot-4"]
    assert {e.category for e in events} == {"text", "vision", "audio", "documents"}
    assert sum(e.conversation_started for e in events) > 0


def test_event_time_advances_at_the_simulated_rate() -> None:
    events = list(Workload(SPEC).events())
    times = [e.occurred_at_ms for e in events]
    assert times == sorted(times)
    assert times[0] == SPEC.start_ms
    assert times[-1] - times[0] == pytest.approx(SPEC.events / SPEC.sim_rate * 1000, rel=0.01)
    assert len({e.event_id for e in events}) == len(events)


def test_partitions_are_kafkas_default_partitioner_of_the_account() -> None:
    w = Workload(SPEC)
    for account, p in w.partition_of.items():
        assert p == partition_for(account.encode(), SPEC.partitions)
    assert len(set(w.partition_of.values())) == SPEC.partitions


def test_the_catalog_is_valid_for_the_core_and_busy_bots_cross_the_threshold() -> None:
    w = Workload(SPEC)
    tenants = {t.account_id: core_settings(t) for t in w.tenants()}
    assert set(tenants) == set(w.account_ids)
    by_account: dict[str, list[object]] = {}
    for p in w.policies():
        by_account.setdefault(p.account_id, []).append(core_policy(p))
    assert all(len(ps) == 5 for ps in by_account.values())
    PolicySet(by_account["acct-0000"])  # type: ignore[arg-type]
    # The busiest bot of the busiest account outruns the tokens threshold in an hour; the
    # busiest bot of an account far down the tail does not.
    assert w.per_hour(0, 0) * 900 > w.threshold_tokens > w.per_hour(50, 0) * 900
    assert core_policy(w.probe_policy()).threshold == PROBE_THRESHOLD


@pytest.mark.parametrize(
    "bad",
    [{"events": 0}, {"window_ms": 3_600_000, "step_ms": 700_000}, {"cross_rank": 100}],
)
def test_an_impossible_spec_is_refused_with_a_capstream_error(bad: dict[str, int]) -> None:
    with pytest.raises(WorkloadError) as err:
        WorkloadSpec(**{"accounts": 100, **bad})  # type: ignore[arg-type]
    assert isinstance(err.value, CapstreamError)
