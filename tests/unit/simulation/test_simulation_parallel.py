"""The draft side in a second process (``capstream.simulation.parallel``): the same report as
one process, list by list; a draft process that fails or dies fails the simulation with a
clear message; a caller that stops stops both processes; when each path is used."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_simulation import (
    ACCT,
    CURRENT,
    DRAFT_POLICY,
    FROM,
    NOW,
    TENANT,
    TO,
    history,
)

from capstream.simulation import EventSource, check_draft, configs, parse_body, simulate
from capstream.simulation.memory import MemoryEvents
from capstream.simulation.parallel import (
    MIN_EVENTS,
    SimulationFailedError,
    pack,
    unpack,
    use_two,
)
from capstream.simulation.source import Plan
from capstream.streams.records import PolicyRecord

SETTINGS_DRAFT = {
    "settings": {"caps": {"text": {"daily_micro": 500_000}}, "auto_downgrade": True,
                 "throttle": "strict"},
}  # fmt: skip
LISTS = ("alerts", "blocks", "caps", "forecasts", "downgrades", "throttles")


def setup(body: dict[str, Any], chunk: int = 40) -> tuple[EventSource, Any, Any, Any]:
    query = MemoryEvents(history(4))
    draft = check_draft(ACCT, parse_body(body), CURRENT, TENANT, NOW)
    current, drafted = configs(CURRENT, TENANT, draft)
    source = EventSource(query, ACCT, FROM, TO, chunk_rows=chunk, columns=query.columns)
    return source, current, drafted, draft


def my_children(before: frozenset[int] = frozenset()) -> set[int]:
    """This process's child processes running now, but those in ``before`` (started by
    other tests' fixtures: a broker in the full suite)."""
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                out.update(int(p) for p in f.read().split())
        except FileNotFoundError:  # a thread (of an earlier test) ended meanwhile
            continue
    return out - before


@pytest.mark.parametrize("gated", ["drop", "keep"])
@pytest.mark.parametrize("body", [{"policy": DRAFT_POLICY}, SETTINGS_DRAFT], ids=["policy", "caps"])
def test_two_processes_report_exactly_what_one_process_reports(
    body: dict[str, Any], gated: str
) -> None:
    reports = []
    for processes in (1, 2):
        source, current, drafted, draft = setup(body)
        seen: list[int] = []
        report = simulate(
            source, current, drafted, draft, gated=gated,  # type: ignore[arg-type]
            processes=processes, progress=lambda done, total, seen=seen: seen.append(done),
        )  # fmt: skip
        assert seen[0] == 0 and seen[-1] == report["events"] > 0
        assert seen == sorted(seen)  # progress never goes back
        reports.append(report)
    one, two = reports
    for side in ("current", "simulated"):
        for name in LISTS:
            assert two[side][name] == one[side][name], (side, name)
        assert two[side]["gated"] == one[side]["gated"]
        assert two[side]["usage"] == one[side]["usage"]
        assert two[side]["charts"] == one[side]["charts"]
        assert two[side]["decisions"] == one[side]["decisions"]
    assert two == one
    # the draft decides something on this history (else the comparison proves little)
    sim = one["simulated"]
    assert sim["blocks"] or sim["caps"] or sim["throttles"]
    assert sim["gated"]["total"] > 0


def test_a_draft_process_killed_mid_run_fails_the_simulation_clearly() -> None:
    source, current, drafted, draft = setup({"policy": DRAFT_POLICY}, chunk=20)
    before = frozenset(my_children())
    killed: list[int] = []
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        # The second call comes after this process replayed its first chunk, before it told
        # the draft process that the events are all sent: the draft process cannot have
        # reported yet (killing it on the first report of its progress raced with a fast
        # child that had already sent its result and exited).
        calls.append(done)
        if len(calls) == 2:
            for pid in my_children(before):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with pytest.raises(SimulationFailedError, match="draft side's process was killed by signal 9"):
        simulate(source, current, drafted, draft, processes=2, progress=progress)
    assert killed
    assert not my_children(before)


def test_an_error_in_the_draft_process_fails_the_simulation_naming_it() -> None:
    source, current, drafted, draft = setup({"policy": DRAFT_POLICY})
    assert drafted.records is not None
    policies, tenant = drafted.records
    bad = PolicyRecord.model_construct(**{**dict(policies[0]), "window_seconds": -5})
    broken = type(drafted)(drafted.policies, drafted.settings, ((bad, *policies[1:]), tenant))
    before = frozenset(my_children())
    with pytest.raises(SimulationFailedError, match=r"failed in the draft side's process \(\w+"):
        simulate(source, current, broken, draft, processes=2)
    assert not my_children(before)


def test_a_caller_that_stops_stops_the_draft_process_too() -> None:
    source, current, drafted, draft = setup({"policy": DRAFT_POLICY}, chunk=20)
    before = frozenset(my_children())
    running: set[int] = set()

    class StopError(Exception):
        pass

    def progress(done: int, total: int) -> None:
        running.update(my_children(before))
        if done:
            raise StopError

    with pytest.raises(StopError):
        simulate(source, current, drafted, draft, processes=2, progress=progress)
    assert running  # it was running when the caller stopped
    assert not my_children(before)
    assert not [p for p in running if Path(f"/proc/{p}").exists()]


def test_two_processes_only_where_they_pay_and_can_run() -> None:
    source, current, drafted, draft = setup({"policy": DRAFT_POLICY})
    big, small = Plan((), MIN_EVENTS + 1), Plan((), MIN_EVENTS)
    cpus = len(os.sched_getaffinity(0))
    assert use_two(source, drafted, {}, big) == (cpus >= 2)
    assert not use_two(source, drafted, {}, small)  # the API's synchronous ranges
    assert not use_two(source, drafted, {"draft": print}, big)  # hooks run here
    rows = EventSource(MemoryEvents(history(1)), ACCT, FROM, TO)
    assert not use_two(rows, drafted, {}, big)  # the row port: nothing to ship
    hand_built = type(drafted)(drafted.policies, drafted.settings)
    assert not use_two(source, hand_built, {}, big)  # no records to build it over there
    with pytest.raises(ValueError, match="effect hooks"):
        simulate(source, current, drafted, draft, processes=2, on_effects={"draft": print})


def test_a_chunk_travels_whole() -> None:
    cols = [["e1", "e2"], [1, 2], [True, False], [{"end_user": "u"}, {}]]
    assert unpack(pack(cols)) == cols
    odd = [[datetime(2026, 11, 2, tzinfo=UTC)], [1.5]]  # not marshal's: pickled
    assert unpack(pack(odd)) == odd
    assert unpack(pack([range(3)])) == [[0, 1, 2]]
