"""Two workers share the partitions, then one is killed: its partitions move with their state.

The second worker has its own data directory, so what it takes over it can only get from the
tables' changelogs and the last commit: either by reading them when the partitions move (no
standby replicas, the default), or, as a standby replica, by having kept its copy of the
killed worker's partitions up to date from those changelogs all along, then reading only
their tail. The end result must be the same as one worker processing the whole stream:
exact totals, and the core's final control states, decided after the move by the survivor.
"""

from __future__ import annotations

import contextlib

import pytest
from test_worker_harness import Config, WorkerProcess, wait_for
from test_worker_kill9 import (
    committed_to_end,
    control_matches,
    oracle,
    publish_tenants,
    stream,
    tenants,
    totals_match,
)

from capstream.core import PolicySet, UsageEvent
from capstream.gateway import UsageRecorder
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.settings import Settings

EVENTS = 60_000


@pytest.mark.parametrize("standbys", [0, 1])
def test_partitions_move_between_workers_with_their_state(topics: Settings, standbys: int) -> None:
    events = stream()[:EVENTS]
    with contextlib.ExitStack() as workers:
        _run(topics, events, workers, standbys)


def _run(
    deployment: Settings, events: list[UsageEvent], workers: contextlib.ExitStack, standbys: int
) -> None:
    settings_records, policy_records = tenants()
    env = {"CAPSTREAM_WORKER_STANDBY": str(standbys), "CAPSTREAM_WORKER_LOGLEVEL": "info"}
    first = workers.enter_context(WorkerProcess(deployment, event_time=True, **env))
    publish_tenants(Config(deployment, first))
    second_settings = deployment.model_copy(update={"data_dir": deployment.data_dir.parent / "b"})
    thirds = [events[: EVENTS // 3], events[EVENTS // 3 : 2 * EVENTS // 3],
              events[2 * EVENTS // 3 :]]  # fmt: skip
    with UsageRecorder(deployment, linger_ms=5, max_queue=EVENTS + 1) as rec:
        for e in thirds[0]:
            assert rec.record(e)
        assert rec.flush(60) == 0
        wait_for(lambda: first.metric("capstream_processor_events_total") >= len(thirds[0]), 60,
                 "the first worker to take the first third")  # fmt: skip
        # The group rebalances: each worker gets half the partitions.
        second = workers.enter_context(WorkerProcess(second_settings, event_time=True, **env))
        wait_for(lambda: second.metric("capstream_processor_partitions") == 2, 90,
                 "the second worker to own half the partitions")  # fmt: skip
        assert first.metric("capstream_processor_partitions") == 2
        for e in thirds[1]:
            assert rec.record(e)
        assert rec.flush(60) == 0
        done = len(thirds[0]) + len(thirds[1])
        wait_for(lambda: first.metric("capstream_processor_events_total")
                 + second.metric("capstream_processor_events_total") >= done, 90,
                 "both workers to take the second third")  # fmt: skip
        # With a standby replica the second worker reads the first one's changelog
        # partitions as they are written (Faust logs it when it starts them).
        standby_log = second.log_path.read_text(errors="replace")
        assert ("Starting standby partitions" in standby_log) == (standbys > 0)
        decided = second.metric("capstream_processor_events_total")
        first.kill()  # its partitions go to the second worker after the session timeout
        for e in thirds[2]:
            assert rec.record(e)
        assert rec.flush(60) == 0
    group = f"{deployment.topic_prefix}.processors"
    wait_for(lambda: committed_to_end(deployment, group), 240, "the survivor to finish")
    # The survivor decided the killed worker's partitions' remaining events itself.
    assert second.metric("capstream_processor_events_total") - decided >= len(thirds[2])
    assert second.stop() == 0, second.log()

    totals_match(deployment, group, events, settings_records)
    ts = {a: core_settings(r) for a, r in settings_records.items()}
    ps = {a: PolicySet(core_policy(p) for p in pols) for a, pols in policy_records.items()}
    control_matches(deployment, oracle(deployment, ts, ps))
