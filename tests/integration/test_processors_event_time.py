"""Event-time mode on the real broker: recorded streams replay into the decisions they made live.

Each test owns one usage partition (accounts are picked by Kafka's partitioner), because the
event clock is per partition.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_worker_harness import Config, ControlLog, WorkerProcess, account_on, wait_for

from capstream.bench.truth import scan_effects
from capstream.core import (
    AccountState,
    EnforcementState,
    PolicySet,
    UsageEvent,
    evaluate,
    expire,
)
from capstream.gateway import UsageRecorder
from capstream.processors.catalog import core_policy, core_settings
from capstream.streams.control_wire import encode_state
from capstream.streams.records import PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics

PARTITIONS = 4


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("worker-et")),
        usage_partitions=PARTITIONS,
        control_partitions=4,
    )
    create_topics(settings)
    return settings


@pytest.fixture(scope="module")
def worker(deployment: Settings) -> Iterator[WorkerProcess]:
    w = WorkerProcess(deployment, event_time=True)
    yield w
    assert w.stop() == 0, w.log()


@pytest.fixture(scope="module")
def control(deployment: Settings) -> Iterator[ControlLog]:
    log = ControlLog(deployment)
    yield log
    log.close()


@pytest.fixture
def config(deployment: Settings, worker: WorkerProcess) -> Config:
    return Config(deployment, worker)


def ms(tz: str, *parts: int, fold: int = 0) -> int:
    return int(datetime(*parts, tzinfo=ZoneInfo(tz), fold=fold).timestamp() * 1000)  # type: ignore[misc]


def send(settings: Settings, events: list[UsageEvent]) -> None:
    with UsageRecorder(settings, linger_ms=1) as rec:
        for e in events:
            assert rec.record(e)
            assert rec.flush(10) == 0  # one event per record: the order is the stream's


def test_downgrade_at_80_percent_and_back_at_local_midnight(
    deployment: Settings, config: Config, control: ControlLog
) -> None:
    tz = "America/New_York"
    acct = account_on(0, PARTITIONS, f"down-{uuid.uuid4().hex[:6]}")
    other = account_on(0, PARTITIONS, f"other-{uuid.uuid4().hex[:6]}")
    config.settings(acct, plan="pro", timezone=tz, auto_downgrade=True,
                    caps={"text": {"daily_micro": 10_000}})  # fmt: skip
    late = ms(tz, 2026, 11, 10, 22, 0)
    after_midnight = ms(tz, 2026, 11, 11, 0, 0, 5)

    def ev(account: str, t: int, credits: int) -> UsageEvent:
        return UsageEvent(uuid.uuid4().hex, account, "bot-1", "c", "text", "m", 10, 10, 1,
                          False, credits, t)  # fmt: skip

    send(deployment, [ev(acct, late, 7_000), ev(acct, late + 60_000, 1_000)])
    down = control.wait(acct, "bot-1", lambda s: s.downgraded_until_ms is not None)
    assert down.model == "claude-haiku"
    assert down.downgraded_until_ms == ms(tz, 2026, 11, 11, 0, 0)
    assert down.updated_at_ms == late + 60_000  # event time, not the wall clock
    # Another account's event moves the partition's clock past midnight: the timer fires.
    send(deployment, [ev(other, after_midnight, 1)])
    back = control.wait(acct, "bot-1", lambda s: s.version > down.version)
    assert (back.model, back.downgraded_until_ms) == ("claude-sonnet-4-6", None)
    assert back.updated_at_ms == after_midnight


def _dst_stream(acct: str, tz: str) -> list[UsageEvent]:
    """21:00 CEST on 24 Oct 2026 to 05:00 CET on the 25th: midnight, then 03:00 -> 02:00."""
    start, end = ms(tz, 2026, 10, 24, 21, 0), ms(tz, 2026, 10, 25, 5, 0)
    events, t, i = [], start, 0
    while t < end:
        burst = 6 if i % 17 == 0 else 1  # now and then a burst trips the hourly policy
        for b in range(burst):
            events.append(
                UsageEvent(
                    f"e{i}-{b}",
                    acct,
                    f"bot-{i % 3}",
                    f"c{i % 5}",
                    "text" if i % 4 else "vision",
                    "m",
                    300 + 50 * (i % 7),
                    100,
                    1,
                    i % 9 == 0,
                    1_200 + 100 * (i % 5),
                    t + b,
                )
            )
        t += 4 * 60_000 + (i % 3) * 17_000
        i += 1
    return events


def _expected(
    events: list[UsageEvent], policies: list[PolicyRecord], settings: TenantSettingsRecord
) -> list[EnforcementState]:
    """What the core decides walking the stream with an explicit clock (the worker's rule:
    ``now`` is the newest occurred_at; a clock step past a deadline expires first)."""
    ps = PolicySet(core_policy(p) for p in policies)
    ts = core_settings(settings)
    state = AccountState(settings.account_id)
    out: list[EnforcementState] = []
    now = 0
    for e in events:
        if e.occurred_at_ms > now:
            now = e.occurred_at_ms
            if state.view is not None and state.deadline_ms <= now:
                out.extend(expire(state, now)[1].enforcement)
        out.extend(evaluate(state, e, ps, ts, now)[1].enforcement)
    return out


def test_a_replay_across_midnight_and_a_dst_change_publishes_what_the_core_computes(
    deployment: Settings, config: Config, control: ControlLog
) -> None:
    tz = "Europe/Berlin"
    acct = account_on(1, PARTITIONS, f"dst-{uuid.uuid4().hex[:6]}")
    settings = TenantSettingsRecord(
        account_id=acct, plan="pro", timezone=tz, auto_downgrade=True, throttle="smart",
        caps={"text": {"daily_micro": 60_000, "monthly_micro": 10_000_000},
              "vision": {"daily_micro": 9_000}},
    )  # fmt: skip
    policies = [
        PolicyRecord(policy_id="hourly", account_id=acct, metric="tokens", threshold=3_000,
                     window_seconds=3600, scope="account_each_bot",
                     block={"duration_seconds": 1200}, alert={"recipients": []}),
        PolicyRecord(policy_id="total", account_id=acct, metric="messages", threshold=40,
                     window_seconds=7200, scope="account_total", alert={"recipients": []}),
    ]  # fmt: skip
    config.settings(acct, **settings.model_dump(exclude={"account_id"}))
    for p in policies:
        config.policy(acct, p.policy_id, **p.model_dump(exclude={"account_id", "policy_id"}))
    events = _dst_stream(acct, tz)
    expected = _expected(events, policies, settings)
    assert len(expected) >= 10
    assert any(s.caps for s in expected) and any(s.downgraded_until_ms for s in expected)
    assert {s.blocked_until_ms is not None for s in expected} == {True, False}

    send(deployment, events)
    bots = sorted({s.bot_id for s in expected})
    for bot in bots:
        want = [encode_state(s) for s in expected if s.bot_id == bot]

        def got(bot: str = bot, n: int = len(want)) -> list[bytes] | None:
            states = control.states(acct, bot)
            return [encode_state(s) for s in states] if len(states) >= n else None

        assert wait_for(got, 30, f"{len(want)} states of {bot}") == want, bot


def test_a_restart_between_a_block_and_the_next_event_decides_as_the_core(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A bot's block ends (the clock passes it) with its window still over the threshold;
    the worker restarts; the bot's next event comes. The core blocks it again at that event:
    the restarted worker used to block it at once when it loaded the partition (at the
    restored clock), so the block ended early and every later block of the bot moved with
    it (the full chaos run's one wrong final state)."""
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=tmp_path, usage_partitions=PARTITIONS, control_partitions=4,
    )  # fmt: skip
    create_topics(settings)
    acct = account_on(2, PARTITIONS, f"reload-{uuid.uuid4().hex[:6]}")
    other = account_on(2, PARTITIONS, f"clock-{uuid.uuid4().hex[:6]}")
    tenant = TenantSettingsRecord(account_id=acct, plan="pro")
    policy = PolicyRecord(
        policy_id="p", account_id=acct, metric="tokens", threshold=1_000, window_seconds=3600,
        scope="bot", bot_id="bot-1", block={"duration_seconds": 60},
    )  # fmt: skip
    t0 = ms("UTC", 2026, 11, 10, 12, 0)

    def ev(account: str, t: int, tokens: int) -> UsageEvent:
        return UsageEvent(uuid.uuid4().hex, account, "bot-1", "c", "text", "m", tokens, 0, 1,
                          False, 10, t)  # fmt: skip

    before = [ev(acct, t0, 600), ev(acct, t0 + 60_000, 600), ev(other, t0 + 120_001, 1)]
    after = [ev(acct, t0 + 150_000, 1)]  # blocked again here, until t0 + 210 s
    want = _expected_states(acct, before + after, policy, tenant)
    assert [s.blocked_until_ms for s in want] == [None, t0 + 120_000, None, t0 + 210_000]

    control = ControlLog(settings)
    try:
        with WorkerProcess(settings, event_time=True) as first:
            config = Config(settings, first)
            config.settings(acct, plan="pro")
            config.policy(acct, "p", **policy.model_dump(exclude={"account_id", "policy_id"}))
            send(settings, before)
            # the block's end: bot-1's last own state (then it follows the account's)
            control.wait(acct, "bot-1", lambda s: s.updated_at_ms == t0 + 120_001, own=True)
            assert first.stop() == 0  # flushed and committed
        with WorkerProcess(settings, event_time=True) as second:
            wait_for(lambda: second.metric("capstream_processor_accounts") >= 2, 60,
                     "the restarted worker to load the partition")  # fmt: skip
            send(settings, after)
            wait_for(lambda: second.metric("capstream_processor_events_total") >= 1, 30,
                     "the restarted worker to apply the event")  # fmt: skip
            assert second.stop() == 0  # its decisions are out
        expected = [_content(s) for s in want]
        with contextlib.suppress(AssertionError):  # the reader catching up
            wait_for(lambda: _distinct(control.states(acct, "bot-1")) == expected, 10)
        got = _distinct(control.states(acct, "bot-1"))
    finally:
        control.close()
    assert got == expected


def _expected_states(
    acct: str, events: list[UsageEvent], policy: PolicyRecord, tenant: TenantSettingsRecord
) -> list[EnforcementState]:
    """Each state of ``acct``'s bot-1 the core publishes walking the partition's events with
    the worker's clock rule (other accounts' events move the clock too), its states going
    back to following the account included."""
    policies = {e.account_id: PolicySet([]) for e in events}
    settings = {e.account_id: core_settings(TenantSettingsRecord(account_id=e.account_id))
                for e in events}  # fmt: skip
    policies[acct], settings[acct] = PolicySet([core_policy(policy)]), core_settings(tenant)
    return [
        s
        for effects in scan_effects(events, policies, settings)
        for s in effects.enforcement
        if (s.account_id, s.bot_id) == (acct, "bot-1")
    ]


def _content(s: EnforcementState) -> tuple[object, ...]:
    """A state but for its version (a new owner republishes the same under a higher one)."""
    return tuple(getattr(s, f.name) for f in fields(s) if f.name not in
                 ("version", "follows_account") and not f.name.startswith("_"))  # fmt: skip


def _distinct(states: list[EnforcementState]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for s in states:
        c = _content(s)
        if not out or out[-1] != c:
            out.append(c)
    return out
