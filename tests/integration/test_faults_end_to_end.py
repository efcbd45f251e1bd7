"""The whole pipeline under faults: worker, sink and notifier run as processes while usage
flows with SDK resends and poison; the worker and the sink are killed with SIGKILL mid-stream
and restarted. At the end (issue 21):

- worker totals (the tables' changelogs) = the events published, each once;
- ClickHouse holds each published event once (rows = distinct event ids = events published);
- every poison record or event is in the DLQ, and nothing else is;
- every alert the core computes is mailed once, to its own tenant only (tenants share a
  policy id, as when they start from the same preset).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Producer
from sink_helpers import caught_up, committed
from test_notifier import Smtp
from test_worker_harness import Config, WorkerProcess, wait_for
from test_worker_kill9 import read_all, totals_match

from capstream.bench.truth import scan_effects
from capstream.chaos.faults import malformed as poison
from capstream.core import PolicySet, UsageEvent
from capstream.gateway import UsageRecorder
from capstream.processors.catalog import core_policy, core_settings
from capstream.sinks.endpoint import endpoint_file
from capstream.sinks.sql import run_sql
from capstream.sinks.store import chdb_path
from capstream.streams.partitioner import partition_for
from capstream.streams.records import DeadLetterRecord, PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

EVENTS = 24_000
ACCOUNTS = 24
STEP_MS = 2_000
T0 = (int(time.time() * 1000) // 3_600_000 - 20) * 3_600_000  # 20 hours ago, on the hour


def tenants() -> tuple[dict[str, TenantSettingsRecord], dict[str, list[PolicyRecord]]]:
    settings, policies = {}, {}
    for i in range(ACCOUNTS):
        acct = f"acct-{i}"
        settings[acct] = TenantSettingsRecord(
            account_id=acct, timezone="UTC", plan="pro", throttle="off",
            owner_email=f"owner@{acct}.test",
            caps={"text": {"daily_micro": 2_000_000 + 200_000 * i}},
        )  # fmt: skip
        policies[acct] = [  # the same policy id in every tenant
            PolicyRecord(policy_id="p-hour", account_id=acct, metric="messages", threshold=60,
                         window_seconds=3600, scope="account_each_bot",
                         alert={"recipients": [f"ops@{acct}.test"]}),
        ]  # fmt: skip
    return settings, policies


def stream() -> list[UsageEvent]:
    rnd = random.Random(21)
    weights = [1 / (i + 1) for i in range(ACCOUNTS)]
    out = []
    for n, a in enumerate(rnd.choices(range(ACCOUNTS), weights, k=EVENTS)):
        out.append(
            UsageEvent(
                f"ev-{n}", f"acct-{a}", f"bot-{rnd.randrange(3)}", f"c-{rnd.randrange(40)}",
                "text", "m", rnd.randrange(100, 900), rnd.randrange(10, 90), 1,
                rnd.random() < 0.05, rnd.randrange(1_000, 9_000), T0 + n * STEP_MS,
            )
        )  # fmt: skip
    return out


def alerts_expected(events: list[UsageEvent]) -> Counter[tuple[str, str]]:
    """(account, notification id) of every alert the core computes walking the stream."""
    settings_records, policy_records = tenants()
    ts = {a: core_settings(r) for a, r in settings_records.items()}
    ps = {a: PolicySet(core_policy(p) for p in pols) for a, pols in policy_records.items()}
    by_partition: dict[int, list[UsageEvent]] = {}  # the SDK's partitioning: the worker's order
    for e in events:
        by_partition.setdefault(partition_for(e.account_id.encode(), 4), []).append(e)
    out: Counter[tuple[str, str]] = Counter()
    for part in by_partition.values():
        for effects in scan_effects(part, ps, ts):
            for note in effects.notifications:
                out[(note.account_id, note.notification_id)] += 1
    return out


class Processes:
    """The sink and the notifier as subprocesses (the worker has its own harness)."""

    def __init__(self, settings: Settings, smtp_port: int) -> None:
        self.settings = settings
        self.dir = Path(settings.data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
            "CAPSTREAM_DATA_DIR": str(settings.data_dir),
            "CAPSTREAM_SINK_FLUSH_INTERVAL": "0.1",
            "CAPSTREAM_SINK_BATCH_MIB": "0.05",  # many batches: a kill lands mid-stream
            "CAPSTREAM_SINK_SESSION_TIMEOUT": "6",
            "CAPSTREAM_SMTP_HOST": "127.0.0.1",
            "CAPSTREAM_SMTP_PORT": str(smtp_port),
            "CAPSTREAM_NOTIFY_EXPIRE_S": "100000000",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: str) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{command}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "capstream.cli", command], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.procs.append(proc)
        if command == "sink":
            store = chdb_path(self.settings.clickhouse_dsn)

            def serving() -> bool:
                assert proc.poll() is None, self.log("sink")
                return endpoint_file(store).exists()

            wait_for(serving, 90, "the sink to serve SQL")
        return proc

    def log(self, command: str) -> str:
        return (self.dir / f"{command}.log").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def running(settings: Settings, smtp_port: int) -> Iterator[Processes]:
    procs = Processes(settings, smtp_port)
    try:
        yield procs
    finally:
        procs.close()


def test_kills_poison_and_resends_leave_every_count_exact_and_every_alert_mailed_once(
    topics: Settings,
) -> None:
    events = stream()
    settings_records, policy_records = tenants()
    names = Topics(topics.topic_prefix)
    smtp = Smtp()
    smtp.up()
    with contextlib.ExitStack() as stack:
        stack.callback(smtp.down)
        procs = stack.enter_context(running(topics, smtp.port))
        worker = stack.enter_context(WorkerProcess(topics, event_time=True))
        config = Config(topics, worker)
        for acct, rec in settings_records.items():
            config.admin.settings(acct, **rec.model_dump(exclude={"account_id"}))
            for p in policy_records[acct]:
                fields = p.model_dump(exclude={"account_id", "policy_id"})
                config.admin.policy(acct, p.policy_id, **fields)
        wait_for(lambda: config.applied() >= 2 * ACCOUNTS, 30, "every policy and setting")
        sink = procs.start("sink")
        procs.start("notifier")
        raw = Producer({**topics.librdkafka_config(), "partitioner": "murmur2_random"})
        poisoned = 0
        group = f"{topics.topic_prefix}.processors"
        with UsageRecorder(topics, linger_ms=5, max_queue=2 * EVENTS) as rec:
            for n, e in enumerate(events):
                assert rec.record(e)
                if n % 40 == 0:
                    assert rec.record(e)  # an SDK resend: the same event again
                if n % 1_000 == 500:
                    raw.produce(names.usage, poison(poisoned, e.account_id, e.occurred_at_ms),
                                e.account_id.encode())  # fmt: skip
                    poisoned += 1
                if n == EVENTS // 3:
                    assert rec.flush(60) == 0
                    wait_for(lambda: any(o > 0 for o in committed(topics, group, names.usage)
                                         .values()), 90, "the worker's first commit")  # fmt: skip
                    worker.kill()
                    worker = stack.enter_context(WorkerProcess(topics, event_time=True))
                if n == EVENTS // 2:
                    assert rec.flush(60) == 0
                    sink.kill()
                    sink.wait(10)
                    sink = procs.start("sink")
            assert rec.flush(60) == 0
        assert raw.flush(20) == 0
        for group_name in (group, f"{topics.topic_prefix}.sink"):
            wait_for(lambda g=group_name: caught_up(topics, g, names.usage), 240,
                     f"{group_name} to read every usage record")  # fmt: skip
        wait_for(lambda: caught_up(topics, f"{topics.topic_prefix}.notifier",
                                   names.notifications), 120, "the notifier")  # fmt: skip

        # 1. Worker totals = the events published, each counted once.
        totals_match(topics, group, events, settings_records)

        # 2. ClickHouse: each event once, the same totals.
        rows, distinct, credits = run_sql(
            topics, "SELECT count(), uniqExact(event_id), sum(credits_micro) FROM usage_events"
        ).rows[0]
        assert (rows, distinct, credits) == (EVENTS, EVENTS, sum(e.credits_micro for e in events))

        # 3. Every poison record or event is dead-lettered (by the worker and by the sink:
        #    each names its source offset), and nothing good is.
        letters = [DeadLetterRecord.from_bytes(v) for _, _, v in
                   read_all(topics, Topics.dlq(names.usage)) if v]  # fmt: skip
        assert len({(d.partition, d.offset) for d in letters}) == poisoned

        # 4. Each alert mailed once, to its own tenant only.
        expected = alerts_expected(events)
        assert expected and all(n == 1 for n in expected.values())
        wait_for(lambda: len(smtp.inbox.messages) >= len(expected), 60, "every alert email")
        time.sleep(1.0)
        # policy alerts go to the policy's recipients, cap notices to the tenant's owner: each
        # tenant's mail goes to its own addresses only, as many as the core computed
        mailed = Counter(r.split("@")[1].removesuffix(".test") for rs in smtp.inbox.rcpts
                         for r in rs)  # fmt: skip
        per_tenant = Counter(a for a, _ in expected)
        assert mailed == per_tenant
        assert len(smtp.inbox.messages) == len(expected)
        assert worker.proc.poll() is None and sink.poll() is None
        print(f"faults: {EVENTS} events, {EVENTS // 40 + 1} resends, {poisoned} poison records, "
              f"worker and sink killed once each: rows {rows}, distinct {distinct}, "
              f"{len(expected)} alerts mailed once across {len(per_tenant)} tenants")  # fmt: skip
