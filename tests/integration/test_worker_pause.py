"""A worker frozen past its session timeout, then resumed, while events flow (issue 25).

Two workers share the partitions. One is frozen with SIGSTOP (as a long GC pause or a stalled
VM would): the group gives its partitions to the other, which recovers them from the
changelogs and carries on. Then the frozen one resumes with its old state in memory and
records it fetched before the pause. It must not write any of that: the end result must be
exactly that of one worker processing the whole stream, in the tables' changelogs, on the
control topic, and in a third worker that recovers everything from the changelogs. The
second test freezes the worker in the middle of a flush, with changelog batches waiting to
go out.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rocksdict
from sink_helpers import committed, end_offsets
from test_worker_harness import Config, WorkerProcess, wait_for
from test_worker_kill9 import (
    committed_to_end,
    control_matches,
    oracle,
    publish_tenants,
    read_all,
    stream,
    tenants,
    totals_match,
)

from capstream.chaos.check import period_totals
from capstream.core import AccountUsage, BotUsage, EnforcementState, PolicySet, UsageEvent
from capstream.gateway import UsageRecorder
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.partitioner import partition_for
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

EVENTS = 60_000
SESSION_S = "6"
RATE = 2_000
"""Events per second while the worker is frozen and while it resumes."""
STOPPER = Path(__file__).with_name("worker_stopping_in_flush.py")


def test_worker_frozen_past_its_session_timeout_writes_nothing_stale(topics: Settings) -> None:
    with contextlib.ExitStack() as workers:
        _run(topics, workers, in_flush=False)


def test_worker_frozen_in_the_middle_of_a_flush_writes_nothing_stale(topics: Settings) -> None:
    with contextlib.ExitStack() as workers:
        _run(topics, workers, in_flush=True)


class Feeder:
    """Records events at ``RATE`` per second in a thread (the stream keeps flowing)."""

    def __init__(self, rec: UsageRecorder, events: list[UsageEvent]) -> None:
        self.rec, self.events = rec, events
        self.failed: list[UsageEvent] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        chunk = RATE // 10
        for i in range(0, len(self.events), chunk):
            for e in self.events[i : i + chunk]:
                if not self.rec.record(e):
                    self.failed.append(e)
            time.sleep(0.1)

    def join(self) -> None:
        self.thread.join(120)
        assert not self.thread.is_alive() and not self.failed


def _run(deployment: Settings, workers: contextlib.ExitStack, *, in_flush: bool) -> None:
    events = stream()[:EVENTS]
    settings_records, policy_records = tenants()
    group = f"{deployment.topic_prefix}.processors"
    env = {"CAPSTREAM_WORKER_SESSION_TIMEOUT": SESSION_S}
    stop_file = deployment.data_dir / "stop-in-flush"
    if in_flush:
        env["CAPSTREAM_TEST_STOP_FILE"] = str(stop_file)
        argv = [sys.executable, str(STOPPER)]
        first = workers.enter_context(WorkerProcess(deployment, event_time=True, argv=argv, **env))
    else:
        first = workers.enter_context(WorkerProcess(deployment, event_time=True, **env))
    publish_tenants(Config(deployment, first))
    second = workers.enter_context(
        WorkerProcess(
            deployment.model_copy(update={"data_dir": deployment.data_dir.parent / "b"}),
            event_time=True, **env,
        )
    )  # fmt: skip
    wait_for(lambda: second.metric("capstream_processor_partitions") == 2
             and first.metric("capstream_processor_partitions") == 2, 90,
             "each worker to own half the partitions")  # fmt: skip
    phases = [events[:20_000], events[20_000:40_000], events[40_000:]]
    with UsageRecorder(deployment, linger_ms=5, max_queue=EVENTS + 1) as rec:
        for e in phases[0]:
            assert rec.record(e)
        assert rec.flush(60) == 0
        wait_for(lambda: committed_to_end(deployment, group), 120, "both to take the first part")
        # Freeze the first worker while events flow; the second takes over its partitions.
        held = _lagging_partitions(first)
        assert held and len(held) < deployment.usage_partitions, held
        feeder = Feeder(rec, phases[1])
        time.sleep(1)
        if in_flush:
            stop_file.touch()
            wait_for(first.paused, 60, "the first worker to freeze itself inside a flush")
        else:
            first.pause()
        wait_for(lambda: second.metric("capstream_processor_partitions") == 4, 90,
                 "the second worker to take over every partition")  # fmt: skip
        feeder.join()
        assert rec.flush(60) == 0
        # The new owner commits what it processed, while the old one is still frozen.
        _wait_committed(deployment, 30, "the new owner's commits to reach the end", second)
        assert first.paused()
        # The frozen worker wakes up while events flow, to the partitions it did not hold:
        # a stale value it wrote to one it held would stay the last one of its key.
        n = deployment.usage_partitions
        phases[2] = [e for e in phases[2] if partition_for(e.account_id.encode(), n) not in held]
        events = phases[0] + phases[1] + phases[2]
        feeder = Feeder(rec, phases[2])
        time.sleep(1)
        first.resume()
        feeder.join()
        assert rec.flush(60) == 0
    _wait_committed(deployment, 240, "both workers to finish", first, second)
    # The frozen worker noticed: it dropped what it held and rejoined.
    assert first.metric("capstream_processor_lapses_total") >= 1
    assert first.stop() == 0, first.log()
    assert second.stop() == 0, second.log()

    ts = {a: core_settings(r) for a, r in settings_records.items()}
    ps = {a: PolicySet(core_policy(p) for p in pols) for a, pols in policy_records.items()}
    want = oracle(deployment, ts, ps)
    # 1. The tables' changelogs hold every account's and bot's exact totals.
    totals_match(deployment, group, events, settings_records)
    # 2. The control topic's last state of every bot is the core's.
    _control_matches(deployment, want)

    # 3. A third worker rebuilds everything from the changelogs alone.
    third_settings = deployment.model_copy(update={"data_dir": deployment.data_dir.parent / "c"})
    third = workers.enter_context(WorkerProcess(third_settings, event_time=True, **env))
    touched = len({e.account_id for e in events})
    wait_for(lambda: third.metric("capstream_processor_partitions") == 4
             and third.metric("capstream_processor_accounts") == touched, 120,
             "the third worker to load every account")  # fmt: skip
    assert third.stop() == 0, third.log()
    _tables_match(third_settings, events, settings_records)
    # Its republished states (from the recovered tables) change nothing.
    _control_matches(deployment, want)


def _lagging_partitions(worker: WorkerProcess) -> set[int]:
    """The usage partitions the worker has processed records of (its lag gauges)."""
    prefix = "capstream_processor_lag{"
    return {int(k.split('"')[1]) for k in worker.metrics() if k.startswith(prefix)}


def _wait_committed(
    deployment: Settings, timeout: float, what: str, *workers: WorkerProcess
) -> None:
    """Wait until the group committed the end of every usage partition; on a timeout, say
    where each partition and worker stands."""
    group = f"{deployment.topic_prefix}.processors"
    try:
        wait_for(lambda: committed_to_end(deployment, group), timeout, what)
    except AssertionError as exc:
        usage = Topics(deployment.topic_prefix).usage
        where = [f"committed {committed(deployment, group, usage)}",
                 f"ends {end_offsets(deployment, usage)}"]  # fmt: skip
        names = ("lag", "partitions", "events_total", "lapses_total", "records_total")
        shown = tuple(f"capstream_processor_{n}" for n in names)
        for w in workers:
            where.append(str({k: v for k, v in w.metrics().items() if k.startswith(shown)}))
        raise AssertionError(f"{exc}: " + "; ".join(where)) from None


def _control_matches(deployment: Settings, want: dict[tuple[str, str], EnforcementState]) -> None:
    """See ``test_worker_kill9.control_matches``: the core's decisions, versions that never go
    back (a load raises the partition's version floor; its re-decisions carry the loaded
    clock)."""
    control_matches(deployment, want)


def _control(deployment: Settings) -> dict[tuple[str, str], bytes]:
    got: dict[tuple[str, str], bytes] = {}
    for _, key, value in read_all(deployment, Topics(deployment.topic_prefix).control):
        assert key is not None
        account, _, bot = key.decode().partition("/")
        if value is None:  # the bot follows its account's "*" state
            got.pop((account, bot), None)
        else:
            got[(account, bot)] = value
    return got


def _tables_match(
    settings: Settings, events: list[UsageEvent], settings_records: dict[str, Any]
) -> None:
    """The stopped worker's RocksDB tables hold every account's and bot's exact totals."""
    expected = period_totals(events, {a: r.timezone for a, r in settings_records.items()})
    tables = settings.data_dir / "processors" / "tables"
    checked = 0
    for table in ("accounts", "bots"):
        dbs = sorted(tables.glob(f"{table}-*.db"))
        assert len(dbs) == settings.usage_partitions, dbs
        for path in dbs:
            db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
            try:
                for key, value in db.items():
                    if bytes(key).startswith((b"\xff", b"__faust")):
                        continue
                    usage: AccountUsage | BotUsage
                    if table == "bots":
                        usage = BotUsage.from_bytes(bytes(value))
                        who = usage.bot_id
                    else:
                        usage = AccountUsage.from_bytes(bytes(value))
                        who = "*"
                    periods = (("day", usage.day_key, usage.day),
                               ("month", usage.month_key, usage.month))  # fmt: skip
                    for kind, period, totals in periods:
                        want = expected.get((usage.account_id, who, kind, period), [0] * 8)
                        assert totals == want, (table, usage.account_id, who, kind, period)
                        checked += 1
            finally:
                db.close()
    touched = {(e.account_id, e.bot_id) for e in events}
    assert checked == 2 * (len(touched) + len({a for a, _ in touched}))
