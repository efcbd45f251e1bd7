"""Resume over HTTP lifts a running block at the worker; disabling or deleting the blocking
policy lifts its block; a worker restart keeps it lifted (issue 18 item 5). Real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_worker_harness import ControlLog, WorkerProcess, wait_for

from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.gateway import UsageRecorder
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics

ADMIN = "csa_" + "processors-resume-admin-key-" * 2


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}",
                        data_dir=tmp_path)  # fmt: skip
    create_topics(settings)
    return settings


@pytest.fixture
def api(deployment: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(deployment, admin=AdminKey(hash_secret(ADMIN)))) as client:
        yield client


def test_resume_and_disable_lift_blocks_and_a_restart_keeps_them_lifted(
    deployment: Settings, api: TestClient
) -> None:
    control = ControlLog(deployment)
    worker = WorkerProcess(deployment)
    try:
        r = api.post("/v1/accounts", json={"account_id": "acme", "plan": "starter",
                                           "owner_email": "o@acme.test"},
                     headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
        for bot in ("bot-1", "bot-2"):
            assert api.put(f"/v1/accounts/acme/bots/{bot}", json={}, headers=auth).is_success
            r = api.post("/v1/accounts/acme/policies", headers=auth, json={
                "policy_id": f"p-{bot}", "metric": "tokens", "threshold": 1_000,
                "window_seconds": 3600, "scope": "bot", "bot_id": bot,
                "block": {"duration_seconds": 3600}})  # fmt: skip
            assert r.status_code == 201, r.text
        wait_for(lambda: worker.metric("capstream_processor_catalog_records_total") >= 3, 30,
                 "the settings and policies at the worker")  # fmt: skip

        with UsageRecorder(deployment, linger_ms=1) as rec:

            def use(bot: str, tokens: int) -> None:
                assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id=bot,
                                  conversation_id="c", category="text", model="m",
                                  tokens_in=tokens, messages=1)  # fmt: skip
                assert rec.flush(10) == 0

            for bot in ("bot-1", "bot-2"):
                use(bot, 1_500)
                control.wait("acme", bot, lambda s: s.blocked_until_ms is not None)

            # bot-1: a person resumes it; the block lifts at once, and the next event (usage
            # still above the threshold) does not pause it again
            r = api.post("/v1/accounts/acme/bots/bot-1/resume", json={"requested_by": "Dana"},
                         headers=auth)  # fmt: skip
            assert r.status_code == 202, r.text
            lifted = control.wait(
                "acme", "bot-1", lambda s: s.blocked_until_ms is None, own=True
            )  # its last own state: it follows its account's from then on
            use("bot-1", 100)
            # bot-2: its policy is disabled
            r = api.post("/v1/accounts/acme/policies/p-bot-2/disable", headers=auth)
            assert r.status_code == 200, r.text
            control.wait("acme", "bot-2", lambda s: s.blocked_until_ms is None)

        assert worker.stop() == 0, worker.log()
        worker = WorkerProcess(deployment)  # restarted: reloads, re-reads the resume
        wait_for(lambda: worker.metric("capstream_processor_catalog_records_total") >= 5, 30,
                 "the catalog at the restarted worker")  # fmt: skip
        with UsageRecorder(deployment, linger_ms=1) as rec:  # more usage after the restart
            for bot in ("bot-1", "bot-2"):
                assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id=bot,
                                  conversation_id="c", category="text", model="m",
                                  tokens_in=100, messages=1)  # fmt: skip
            assert rec.flush(10) == 0
        wait_for(lambda: worker.metric("capstream_processor_events_total") >= 2, 30,
                 "the new events at the restarted worker")  # fmt: skip
        own = control.own_latest("acme", "bot-1")
        assert own is not None and own.version >= lifted.version
        latest = control.latest("acme", "bot-1")  # what gateways hold
        assert latest is not None and latest.blocked_until_ms is None
        assert control.latest("acme", "bot-2").blocked_until_ms is None  # type: ignore[union-attr]
    finally:
        assert worker.stop() == 0, worker.log()
        control.close()
