"""Per-attribute policies through the real pipeline (issue 24 item 3): a per-end-user policy
created over HTTP; two end users of one bot, only the one over the threshold gets the alert
(naming it, with its block) and the bot itself is not paused; after a worker restart (the
per-user windows restored from the changelog) the other user's earlier usage still counts.
Real broker, real worker process."""

from __future__ import annotations

import time
import uuid

from admin_api import tenant
from fastapi.testclient import TestClient
from test_worker_harness import ControlLog, TopicLog, WorkerProcess, wait_for

from capstream.gateway import UsageRecorder
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

CATALOG = "capstream_processor_catalog_records_total"
EVENTS = "capstream_processor_events_total"


HEAVY_USERS = {
    "policy_id": "heavy-users", "name": "heavy end users", "metric": "tokens",
    "threshold": 1_000, "window_seconds": 3600, "scope": "account_each_bot",
    "per": "end_user", "alert": {}, "block": {"duration_seconds": 600}, "warn_percents": [],
}  # fmt: skip
"""A per-end-user policy: 1,000 tokens an hour per end user of each bot, then a 10-minute
block of that end user (``test_value_blocks`` uses it too)."""


def use(rec: UsageRecorder, user: str, tokens: int) -> None:
    assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id="bot-1",
                      conversation_id=f"c-{user}", category="text", model="gpt-4o",
                      tokens_in=tokens, messages=1, credits_micro=1,
                      attributes={"end_user": user})  # fmt: skip
    assert rec.flush(10) == 0


def test_only_the_end_user_over_the_threshold_is_alerted_and_blocked_across_a_restart(
    deployment: Settings, api: TestClient
) -> None:
    topics = Topics(deployment.topic_prefix)
    control = ControlLog(deployment)
    notes = TopicLog(deployment, topics.notifications)
    worker = WorkerProcess(deployment)
    try:
        auth = tenant(api, "acme", "bot-1")
        r = api.post("/v1/accounts/acme/policies", headers=auth, json=HEAVY_USERS)
        assert r.status_code == 201, r.text
        wait_for(lambda: worker.metric(CATALOG) >= 1, 30, "the policy at the worker")

        def alerts() -> list[NotificationRecord]:
            found = [NotificationRecord.from_bytes(v) for _, v in notes.of(topics.notifications)
                     if v is not None]  # fmt: skip
            return [n for n in found if n.kind == "policy_alert"]

        with UsageRecorder(deployment, linger_ms=1) as rec:
            for _ in range(2):
                use(rec, "bob", 400)  # bob: 800
            for _ in range(3):
                use(rec, "alice", 400)  # alice: 1,200, over at her third
            wait_for(lambda: len(alerts()) == 1, 30, "alice's alert")
            wait_for(lambda: worker.metric(EVENTS) >= 5, 30, "the five events")
        time.sleep(2)  # a second alert (bob's), were one to go out, would be published by now
        (alert,) = alerts()
        assert (alert.attribute, alert.attribute_value, alert.bot_id) == (
            "end_user", "alice", "bot-1",
        )  # fmt: skip
        assert "end_user alice is blocked until" in alert.body
        # The bot itself is not paused: no control state of bot-1 carries a block.
        assert all(s.blocked_until_ms is None for s in control.states("acme", "bot-1"))

        # Restart: the per-user windows come back from the changelog; bob's 800 still count.
        assert worker.stop() == 0, worker.log()
        worker = WorkerProcess(deployment)
        wait_for(lambda: worker.metric(CATALOG) >= 1, 60, "the catalog after the restart")
        with UsageRecorder(deployment, linger_ms=1) as rec:
            use(rec, "alice", 400)  # alerted less than a window ago: no second alert
            use(rec, "bob", 200)  # 800 + 200 = 1,000: bob's own alert
            wait_for(lambda: len(alerts()) == 2, 60, "bob's alert after the restart")
        time.sleep(2)
        assert [a.attribute_value for a in alerts()] == ["alice", "bob"]
        assert "1000" in alerts()[1].body
    finally:
        worker.stop()
        control.close()
        notes.close()
