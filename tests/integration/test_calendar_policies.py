"""Calendar policies through the real pipeline (issue 24 item 4): a policy on the tenant's
local day, created over HTTP, blocks the bot and alerts once with the local day's start as its
window; after a worker restart (state restored from the changelog) more usage the same day
sends no second alert. Real broker, real worker process."""

from __future__ import annotations

import time
import uuid

from admin_api import tenant
from fastapi.testclient import TestClient
from test_worker_harness import ControlLog, TopicLog, WorkerProcess, wait_for

from capstream.core.periods import day_period
from capstream.gateway import UsageRecorder
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

CATALOG = "capstream_processor_catalog_records_total"
EVENTS = "capstream_processor_events_total"
TZ = "Asia/Karachi"


def use(rec: UsageRecorder) -> None:
    assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id="bot-1",
                      conversation_id="c", category="text", model="m", tokens_in=1,
                      messages=1, credits_micro=1)  # fmt: skip
    assert rec.flush(10) == 0


def test_a_daily_calendar_policy_blocks_and_alerts_once_per_local_day_across_a_restart(
    deployment: Settings, api: TestClient
) -> None:
    topics = Topics(deployment.topic_prefix)
    control = ControlLog(deployment)
    notes = TopicLog(deployment, topics.notifications)
    worker = WorkerProcess(deployment)
    try:
        auth = tenant(api, "acme", "bot-1")
        assert api.patch("/v1/accounts/acme/settings", json={"timezone": TZ},
                         headers=auth).status_code == 200  # fmt: skip
        r = api.post("/v1/accounts/acme/policies", headers=auth, json={
            "policy_id": "daily-msgs", "name": "daily messages", "metric": "messages",
            "threshold": 3, "period": "day", "scope": "account_each_bot",
            "alert": {}, "block": {"duration_seconds": 600}, "warn_percents": []})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["window_seeding"]["kind"] == "calendar"
        wait_for(lambda: worker.metric(CATALOG) >= 2, 30, "the policy and settings at the worker")

        def alerts() -> list[NotificationRecord]:
            found = [NotificationRecord.from_bytes(v) for _, v in notes.of(topics.notifications)
                     if v is not None]  # fmt: skip
            return [n for n in found if n.kind == "policy_alert"]

        with UsageRecorder(deployment, linger_ms=1) as rec:
            for _ in range(3):
                use(rec)
            blocked = control.wait("acme", "bot-1", lambda s: s.blocked_until_ms is not None)
            assert blocked.block_policy_id == "daily-msgs"
            wait_for(lambda: len(alerts()) == 1, 30, "the policy alert")
        (alert,) = alerts()
        day = day_period(alert.created_at_ms, TZ)
        assert alert.window_start_ms == day.start_ms  # the local day, not a rolling window
        assert "this day" in alert.body and alert.bot_id == "bot-1"

        # Restart: the worker restores the usage state (with its calendar totals and the
        # alert's time) from the changelog; more usage the same local day sends no new alert.
        assert worker.stop() == 0, worker.log()
        worker = WorkerProcess(deployment)
        wait_for(lambda: worker.metric(CATALOG) >= 2, 60, "the catalog after the restart")
        with UsageRecorder(deployment, linger_ms=1) as rec:
            for _ in range(2):
                use(rec)
            wait_for(lambda: worker.metric(EVENTS) >= 2, 60, "the events after the restart")
        time.sleep(2)  # a second alert, were one to go out, would be published by now
        if day_period(int(time.time() * 1000), TZ).key == day.key:  # not across midnight
            assert len(alerts()) == 1, [a.body for a in alerts()]
    finally:
        worker.stop()
        control.close()
        notes.close()
