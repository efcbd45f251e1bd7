"""Credit grants through the real pipeline (issue 24 item 1): a grant over HTTP resumes a
capped category at the worker (published on the control topic); after a restart onto two
workers, with the grant record written twice, the cap is raised once. Strict input is
checked on the same running API. Real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

from admin_api import ADMIN
from fastapi.testclient import TestClient
from test_worker_harness import Admin, ControlLog, TopicLog, WorkerProcess, wait_for

from capstream.gateway import UsageRecorder
from capstream.streams.records import CapGrantRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

CATALOG = "capstream_processor_catalog_records_total"


def use(rec: UsageRecorder, credits: int) -> None:
    assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id="bot-1",
                      conversation_id="c", category="text", model="m", tokens_in=1,
                      messages=1, credits_micro=credits)  # fmt: skip
    assert rec.flush(10) == 0


def test_a_grant_resumes_the_capped_category_and_counts_once_across_restarts(
    deployment: Settings, api: TestClient, tmp_path: Path
) -> None:
    control = ControlLog(deployment)
    workers = [WorkerProcess(deployment)]
    try:
        r = api.post("/v1/accounts", json={"account_id": "acme", "plan": "starter",
                                           "owner_email": "o@acme.test"},
                     headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
        assert api.put("/v1/accounts/acme/bots/bot-1", json={}, headers=auth).is_success
        # strict input on the real API: nothing coerced, nothing published
        bad = {"metric": "tokens", "threshold": "100", "window_seconds": 3600,
               "block": {"duration_seconds": 60}}  # fmt: skip
        r = api.post("/v1/accounts/acme/policies", json=bad, headers=auth)
        assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "threshold"
        assert api.get("/v1/accounts/acme/policies?botid=x", headers=auth).status_code == 422
        r = api.patch("/v1/accounts/acme/settings",
                      json={"caps": {"text": {"daily_micro": 10_000}}}, headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
        topics = Topics(deployment.topic_prefix)
        tenants = TopicLog(deployment, topics.tenants)
        wait_for(lambda: len(tenants.of(topics.tenants)) >= 2, 30, "the settings on the topic")
        tenants.close()
        wait_for(lambda: workers[0].metric(CATALOG) >= 2, 30, "the settings at the worker")

        with UsageRecorder(deployment, linger_ms=1) as rec:
            use(rec, 10_000)
            capped = control.wait("acme", "bot-1", lambda s: "text" in s.caps)
            r = api.post("/v1/accounts/acme/grants", headers=auth, json={
                "grant_id": "launch", "category": "text", "period": "daily",
                "amount_micro": 5_000, "granted_by": "Dana"})  # fmt: skip
            assert r.status_code == 201, r.text
            resumed = control.wait("acme", "bot-1", lambda s: "text" not in s.caps)
            assert resumed.version > capped.version
            # a retried POST: the same grant, nothing added
            r = api.post("/v1/accounts/acme/grants", headers=auth, json={
                "grant_id": "launch", "category": "text", "period": "daily",
                "amount_micro": 5_000, "granted_by": "Dana"})  # fmt: skip
            assert r.status_code == 200, r.text

        assert workers[0].stop() == 0, workers[0].log()
        # the grant record written again (a producer retry after a lost ack)
        g = api.get("/v1/accounts/acme/grants/launch", headers=auth).json()
        record = CapGrantRecord.model_validate({k: g[k] for k in CapGrantRecord.model_fields})
        Admin(deployment).raw(topics.grants, b"acme/launch", record.to_bytes())
        second = deployment.model_copy(update={"data_dir": tmp_path / "w2"})
        workers = [WorkerProcess(deployment), WorkerProcess(second)]
        for w in workers:
            wait_for(lambda w=w: w.metric(CATALOG) >= 3, 60, "the catalog at each worker")
        with UsageRecorder(deployment, linger_ms=1) as rec:
            use(rec, 4_999)  # 14,999 of 15,000: still allowed
            wait_for(lambda: sum(w.metric("capstream_processor_events_total") for w in workers)
                     >= 1, 60, "the event at a worker")  # fmt: skip
            assert "text" not in control.latest("acme", "bot-1").caps  # type: ignore[union-attr]
            use(rec, 1)  # 15,000: the cap raised once (twice would be 20,000)
            again = control.wait("acme", "bot-1", lambda s: "text" in s.caps, timeout=60)
            assert again.caps["text"].period == "daily"
        listed = api.get("/v1/accounts/acme/grants", headers=auth).json()
        assert [(g["grant_id"], g["cap_micro"]) for g in listed] == [("launch", 15_000)]
    finally:
        for w in workers:
            w.stop()
        control.close()
