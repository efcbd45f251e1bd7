"""Forecast alerts through the real worker (event-time mode, a real broker): a steady pace
that reaches the daily text cap within the lead time publishes one ``cap_forecast``, and
none again after a restart of the worker the same day; the simulation of the same events
with that lead as a settings draft shows the same notification (same id, same time)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_worker_harness import Config, TopicLog, WorkerProcess, account_on, wait_for

from capstream.core import UsageEvent
from capstream.gateway import UsageRecorder
from capstream.simulation import EventSource, check_draft, configs, parse_body, simulate
from capstream.simulation.memory import MemoryEvents
from capstream.streams.records import NotificationRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

PARTITIONS = 2
CR = 1_000_000
MIN = 60_000
DAY0 = int(datetime(2026, 11, 18, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=tmp_path / "data",
        usage_partitions=PARTITIONS,
        control_partitions=2,
    )
    create_topics(settings)
    return settings


def _events(acct: str, first: int, minutes: int) -> list[UsageEvent]:
    """One text call a minute from ``DAY0 + first`` minutes, half a credit each (30 an hour)."""
    return [
        UsageEvent(f"e{i:04d}", acct, f"bot-{i % 2}", f"c{i % 3}", "text", "m", 200, 80, 1,
                   i % 10 == 0, CR // 2, DAY0 + i * MIN)
        for i in range(first, first + minutes)
    ]  # fmt: skip


def _send(settings: Settings, events: list[UsageEvent]) -> None:
    with UsageRecorder(settings, linger_ms=1) as rec:
        for e in events:
            assert rec.record(e)
            assert rec.flush(10) == 0  # one event per record: the stream's order is time


def test_one_forecast_is_published_before_the_cap_and_none_again_after_a_restart(
    deployment: Settings,
) -> None:
    acct = account_on(1, PARTITIONS, f"fc-{uuid.uuid4().hex[:6]}")
    caps = {"text": {"daily_micro": 100 * CR}}
    tenant = TenantSettingsRecord(
        account_id=acct, plan="pro", owner_email="owner@fc.test", throttle="off", caps=caps
    )
    lead = {"caps": {"text": {"daily_forecast_lead_s": 7200}}}  # two hours ahead
    topics = Topics(deployment.topic_prefix)
    log = TopicLog(deployment, topics.notifications)

    def notes(kind: str) -> list[NotificationRecord]:
        got = [NotificationRecord.from_bytes(v) for _, v in log.of(topics.notifications) if v]
        return [n for n in got if n.account_id == acct and n.kind == kind]

    try:
        worker = WorkerProcess(deployment, event_time=True)
        try:
            Config(deployment, worker).settings(
                acct, **{**tenant.model_dump(exclude={"account_id"}), "caps": {
                    "text": {"daily_micro": 100 * CR, "daily_forecast_lead_s": 7200}}},
            )  # fmt: skip
            # 30 credits an hour: the cap of 100 is two hours away once 40 are spent (~1 h 18)
            first = _events(acct, 0, 150)
            _send(deployment, first)
            (forecast,) = wait_for(lambda: notes("cap_forecast") or None, 60, "the forecast")
        finally:
            assert worker.stop() == 0, worker.log()
        assert DAY0 + 75 * MIN <= forecast.created_at_ms <= DAY0 + 80 * MIN
        assert forecast.recipients == ["owner@fc.test"]
        assert "in reach" in forecast.subject

        # A new worker (the state restored from its store and changelogs) carries the day on
        # to the cap: no second forecast; the cap itself is published.
        worker = WorkerProcess(deployment, event_time=True)
        try:
            _send(deployment, _events(acct, 150, 60))
            wait_for(lambda: notes("cap_reached") or None, 60, "the cap reached")
        finally:
            assert worker.stop() == 0, worker.log()
        assert [n.notification_id for n in notes("cap_forecast")] == [forecast.notification_id]
    finally:
        log.close()

    # The simulation of the same events, with the lead as a settings draft over the tenant
    # without it: the draft side shows the forecast the worker published, the current none.
    events = _events(acct, 0, 210)
    query = MemoryEvents(events)
    draft = check_draft(acct, parse_body({"settings": lead}), [], tenant, DAY0 + 86_400_000)
    current, drafted = configs([], tenant, draft)
    source = EventSource(query, acct, DAY0, DAY0 + 86_400_000, columns=query.columns)
    result = simulate(source, current, drafted, draft, gated="keep")
    assert result["current"]["forecasts"] == []
    (shown,) = result["simulated"]["forecasts"]
    assert shown["notification_id"] == forecast.notification_id
    assert shown["at_ms"] == forecast.window_start_ms
    assert (shown["category"], shown["period"]) == ("text", "daily")
    assert shown["recipients"] == ["owner@fc.test"]
