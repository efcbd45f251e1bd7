"""kill -9 in the middle of a 120,000-event stream, restart: nothing lost, nothing twice.

Event-time mode makes the decisions a function of the stream alone, so after the crash the
usage totals in the tables' changelogs must equal the ground truth exactly, and the last
control state of every bot must equal what the core computes walking the stream without any
crash (with the worker's clock rule).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from sink_helpers import caught_up, committed
from test_worker_harness import Config, WorkerProcess, wait_for

from capstream.bench.truth import keep_last, scan_effects
from capstream.chaos.check import period_totals, totals_diffs
from capstream.core import (
    EnforcementState,
    PolicySet,
    TenantSettings,
    UsageEvent,
)
from capstream.gateway import UsageRecorder
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.control_wire import decode_state
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.usage_decode import UsageDecoder

EVENTS = 120_000
ACCOUNTS = 60
BOTS = 5
T0 = 1_793_448_000_000  # 2026-10-31 12:00 UTC: the stream crosses midnights and a month start
STEP_MS = 1_500
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney"]


def tenants() -> tuple[dict[str, TenantSettingsRecord], dict[str, list[PolicyRecord]]]:
    settings, policies = {}, {}
    for i in range(ACCOUNTS):
        acct = f"acct-{i}"
        settings[acct] = TenantSettingsRecord(
            account_id=acct, timezone=ZONES[i % len(ZONES)], plan="pro",
            auto_downgrade=i % 2 == 0, throttle="off",
            caps={"text": {"daily_micro": 3_000_000 + 100_000 * i},
                  "vision": {"monthly_micro": 400_000}},
        )  # fmt: skip
        policies[acct] = [
            PolicyRecord(policy_id="burst", account_id=acct, metric="tokens", threshold=60_000,
                         window_seconds=3600, scope="account_each_bot",
                         block={"duration_seconds": 5 * 86_400}, alert={"recipients": []}),
            PolicyRecord(policy_id="msgs", account_id=acct, metric="messages", threshold=1_500,
                         window_seconds=86_400, scope="account_total", alert={"recipients": []}),
        ]  # fmt: skip
    return settings, policies


def stream() -> list[UsageEvent]:
    rnd = random.Random(4)
    weights = [1 / (i + 1) for i in range(ACCOUNTS)]  # Zipf
    accounts = rnd.choices(range(ACCOUNTS), weights, k=EVENTS)
    out = []
    for n, a in enumerate(accounts):
        bot = rnd.randrange(BOTS)
        out.append(
            UsageEvent(
                f"ev-{n}", f"acct-{a}", f"bot-{bot}", f"c-{rnd.randrange(50)}",
                "text" if rnd.random() < 0.85 else "vision", "m", rnd.randrange(100, 1_500),
                rnd.randrange(50, 400), 1, rnd.random() < 0.05, rnd.randrange(1_000, 9_000),
                T0 + n * STEP_MS,
            )
        )  # fmt: skip
    return out


def committed_to_end(settings: Settings, group: str) -> bool:
    return caught_up(settings, group, Topics(settings.topic_prefix).usage)


def publish_tenants(config: Config) -> None:
    """Publish every account's settings and policies; wait until the worker applied them."""
    settings_records, policy_records = tenants()
    for acct, rec in settings_records.items():
        config.admin.settings(acct, **rec.model_dump(exclude={"account_id"}))
        for p in policy_records[acct]:
            fields = p.model_dump(exclude={"account_id", "policy_id"})
            config.admin.policy(acct, p.policy_id, **fields)
    wait_for(lambda: config.applied() >= 3 * ACCOUNTS, 30, "every policy and setting")


def read_all(settings: Settings, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(partition, key, value) of every record, in each partition's order."""
    c = Consumer({**settings.librdkafka_config(), "group.id": uuid.uuid4().hex,
                  "enable.partition.eof": True})  # fmt: skip
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out, eof = [], set()
    while len(eof) < len(parts):
        msg = c.poll(10)
        assert msg is not None, f"no end of {topic}"
        if msg.error() is not None:
            eof.add(msg.partition())
            continue
        out.append((msg.partition(), msg.key(), msg.value()))
    c.close()
    return out


def oracle(
    settings: Settings, ts: dict[str, TenantSettings], ps: dict[str, PolicySet]
) -> dict[tuple[str, str], EnforcementState]:
    """The last state per (account, bot) the core computes walking each partition in order
    (none for a bot that follows its account's ``*`` state: its key's last record is a
    tombstone)."""
    decoder = UsageDecoder(1 << 30)
    last: dict[tuple[str, str], EnforcementState] = {}
    by_partition: dict[int, list[UsageEvent]] = defaultdict(list)
    for p, _, value in read_all(settings, Topics(settings.topic_prefix).usage):
        by_partition[p].extend(decoder.decode(value, 1 << 62).events)
    for events in by_partition.values():
        for effects in scan_effects(events, ps, ts):
            keep_last(last, effects.enforcement)
    return last


def totals_match(
    settings: Settings,
    group: str,
    events: list[UsageEvent],
    settings_records: dict[str, TenantSettingsRecord],
) -> None:
    """Every day and month total of every account and bot in the tables' changelogs equals
    the sum of the events of that period (``capstream.chaos.check``, shared with the chaos
    run)."""
    tz = {a: r.timezone for a, r in settings_records.items()}
    touched = {(e.account_id, e.bot_id) for e in events}
    checked, wrong = totals_diffs(settings, group, period_totals(events, tz), touched)
    assert not wrong, wrong[:10]
    assert checked == 2 * (len(touched) + len({a for a, _ in touched}))


def control_matches(settings: Settings, want: dict[tuple[str, str], EnforcementState]) -> None:
    """Every bot's last control state decides what the core decided walking the stream
    without a crash (every field but ``version`` and ``updated_at_ms``; a bot that follows its
    account has a tombstone last, and no state in ``want``), and no key's version ever goes
    back on the topic, across its tombstones too.

    A restart or a move raises the partition's version floor (``PartitionState.epoch``): the
    new owner publishes above every version an earlier owner may have published, so its
    versions are not the core's count; and a state re-decided at a load is stamped with the
    loaded clock."""
    last: dict[tuple[str, str], bytes] = {}
    backwards = []
    versions: dict[tuple[str, str], int] = {}
    for _, key, value in read_all(settings, Topics(settings.topic_prefix).control):
        assert key is not None
        account, _, bot = key.decode().partition("/")
        k = (account, bot)
        if value is None:  # the bot follows its account's "*" state (after its last state)
            assert k in last, f"a tombstone of {k} before any state of it"
            del last[k]
            continue
        last[k] = value
        v = decode_state(value).version
        if v < versions.get(k, 0):
            backwards.append((k, versions[k], v))
        versions[k] = max(v, versions.get(k, 0))
    assert not backwards, f"versions that went back (key, newest seen, then): {backwards[:5]}"
    assert set(last) == set(want)
    wrong = {}
    for k, state in want.items():
        g, w = decode_state(last[k]), state
        diff = {
            f: (getattr(g, f), getattr(w, f))
            for f in g.__dataclass_fields__
            if f not in ("version", "updated_at_ms") and getattr(g, f) != getattr(w, f)
        }
        if diff:
            wrong[k] = diff
    assert not wrong, f"control states (got, want): {dict(list(wrong.items())[:5])}"


def test_kill_9_mid_stream_then_restart_loses_nothing_and_counts_nothing_twice(
    topics: Settings,
) -> None:
    with contextlib.ExitStack() as workers:
        _run(topics, workers)


def _run(deployment: Settings, workers: contextlib.ExitStack) -> None:
    produced = stream()
    settings_records, policy_records = tenants()
    first = workers.enter_context(WorkerProcess(deployment, event_time=True))
    publish_tenants(Config(deployment, first))
    with UsageRecorder(deployment, linger_ms=5, max_queue=EVENTS + 1) as rec:
        for e in produced:
            assert rec.record(e)
        # Kill the worker while it is part-way through the stream, after its first commit, so
        # the restart has both a committed position and uncommitted work to read again.
        group = f"{deployment.topic_prefix}.processors"
        wait_for(lambda: first.metric("capstream_processor_events_total") >= EVENTS // 3, 120,
                 "a third of the stream")  # fmt: skip
        usage = Topics(deployment.topic_prefix).usage
        wait_for(lambda: any(o > 0 for o in committed(deployment, group, usage).values()), 60,
                 "the first worker's first commit")  # fmt: skip
        first.kill()
        assert rec.flush(60) == 0
    second = workers.enter_context(WorkerProcess(deployment, event_time=True))
    wait_for(lambda: committed_to_end(deployment, group), 240, "the restarted worker to finish")
    resumed = second.metric("capstream_processor_events_total")
    assert second.stop() == 0, second.log()
    # The restart resumed from the last commit, not from the start; records it read again
    # (applied and flushed before the kill, not yet committed) were dropped as replays: the
    # exact totals below show it.
    assert resumed < EVENTS

    # 1. Usage totals in the tables (their changelogs) equal the ground truth exactly.
    totals_match(deployment, group, produced, settings_records)

    # 2. The last control state of every bot equals the core's, computed without a crash.
    ts = {a: core_settings(r) for a, r in settings_records.items()}
    ps = {a: PolicySet(core_policy(p) for p in pols) for a, pols in policy_records.items()}
    want_states = oracle(deployment, ts, ps)
    control_matches(deployment, want_states)
    assert any(s.blocked_until_ms for s in want_states.values())
    assert any(s.caps for s in want_states.values())
