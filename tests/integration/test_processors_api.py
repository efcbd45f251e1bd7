"""Policy API -> compacted topics -> processors -> control topic, on the real broker."""

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

ADMIN = "csa_" + "processors-api-admin-key-" * 2


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("worker-api")),
    )
    create_topics(settings)
    return settings


@pytest.fixture(scope="module")
def worker(deployment: Settings) -> Iterator[WorkerProcess]:
    w = WorkerProcess(deployment)
    yield w
    assert w.stop() == 0, w.log()


def test_policy_and_settings_changes_over_http_change_the_decisions(
    deployment: Settings, worker: WorkerProcess
) -> None:
    control = ControlLog(deployment)
    app = create_app(deployment, admin=AdminKey(hash_secret(ADMIN)))
    with TestClient(app) as api, UsageRecorder(deployment, linger_ms=1) as rec:
        r = api.post("/v1/accounts", json={"account_id": "acme", "plan": "starter",
                                           "owner_email": "o@acme.test"},
                     headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
        assert api.put("/v1/accounts/acme/bots/bot-1", json={}, headers=auth).status_code == 201

        def applied() -> float:
            return worker.metric("capstream_processor_catalog_records_total")

        def use(**amounts: int) -> None:
            assert rec.record(event_id=uuid.uuid4().hex, account_id="acme", bot_id="bot-1",
                              conversation_id="c", category="text", model="m", messages=1,
                              **amounts)  # fmt: skip
            assert rec.flush(10) == 0

        # A policy created over HTTP reaches the worker before the usage it watches...
        block = {"duration_seconds": 900}
        policy = {"metric": "tokens", "threshold": 10_000, "window_seconds": 3600,
                  "scope": "bot", "bot_id": "bot-1", "block": block}  # fmt: skip
        r = api.post("/v1/accounts/acme/policies", json={**policy, "policy_id": "p1"},
                     headers=auth)  # fmt: skip
        assert r.status_code == 201, r.text
        wait_for(lambda: applied() >= 2, 20, "the settings and the policy at the worker")
        use(tokens_in=700)
        first = control.wait("acme", "bot-1", lambda s: True)
        assert first.blocked_until_ms is None

        # ...and lowering its threshold below the usage counted blocks at once, no new event.
        before = applied()
        r = api.patch("/v1/accounts/acme/policies/p1", json={"threshold": 500},
                    headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
        blocked = control.wait("acme", "bot-1", lambda s: s.blocked_until_ms is not None)
        assert blocked.block_policy_id == "p1"
        assert applied() > before

        # Cap behaviour changed over HTTP takes effect on the next event.
        r = api.patch("/v1/accounts/acme/settings",
                    json={"caps": {"text": {"daily_micro": 1_000}}}, headers=auth)  # fmt: skip
        assert r.status_code == 200, r.text
        wait_for(lambda: applied() >= before + 2, 20, "the settings at the worker")
        use(credits_micro=1_000)
        capped = control.wait("acme", "bot-1", lambda s: "text" in s.caps)
        assert capped.caps["text"].period == "daily"
    control.close()
