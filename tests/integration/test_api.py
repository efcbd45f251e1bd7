"""The Policy API on the real broker: writes land on the compacted topics, reads are
consistent right after writes, the view rebuilds from the topics, reads run on chDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.streams.records import NotificationRecord, PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

ADMIN = "csa_" + "integration-admin-key-" * 2
AUTH = {"Authorization": f"Bearer {ADMIN}"}
POLICY = {
    "metric": "tokens", "threshold": 1000, "window_seconds": 3600, "scope": "bot",
    "bot_id": "bot-1", "alert": {"recipients": ["ops@acme.test"]},
    "name": "", "category": None, "block": None, "enabled": True,
}  # fmt: skip


def read_topic(settings: Settings, topic: str) -> list[tuple[str, bytes | None]]:
    """Every (key, value) of ``topic`` from the beginning, with a throwaway consumer."""
    from confluent_kafka import Consumer

    c = Consumer({**settings.librdkafka_config(), "group.id": f"r-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})  # fmt: skip
    c.subscribe([topic])
    out: list[tuple[str, bytes | None]] = []
    try:
        while True:
            msg = c.poll(10)
            assert msg is not None, f"no end of {topic} in 10 s"
            if msg.error() is not None:
                break  # partition EOF (the test topics have one partition for policies/tenants)
            out.append((msg.key().decode(), msg.value()))
    finally:
        c.close()
    return out


def app_client(settings: Settings, **kw: Any) -> TestClient:
    return TestClient(create_app(settings, admin=AdminKey(hash_secret(ADMIN)), **kw))


@pytest.fixture
def api(topics: Settings) -> Iterator[TestClient]:
    with app_client(topics) as client:
        yield client


def account(client: TestClient, account_id: str, plan: str = "starter") -> dict[str, str]:
    body = {"account_id": account_id, "owner_email": f"owner@{account_id}.test", "plan": plan}
    r = client.post("/v1/accounts", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    h = {"Authorization": f"Bearer {r.json()['api_key']}"}
    assert (
        client.put(f"/v1/accounts/{account_id}/bots/bot-1", json={}, headers=h).status_code == 201
    )
    return h


def test_policy_crud_reaches_the_policies_topic(api: TestClient, topics: Settings) -> None:
    h = account(api, "acme")
    base = "/v1/accounts/acme/policies"
    assert api.post(base, json={**POLICY, "policy_id": "p1"}, headers=h).status_code == 201
    put = api.put(f"{base}/p1", json={**POLICY, "threshold": 5000}, headers=h)
    assert put.status_code == 200
    assert api.get(f"{base}/p1", headers=h).json()["threshold"] == 5000  # read-your-write
    assert api.post(f"{base}/p1/disable", headers=h).json()["enabled"] is False
    assert api.delete(f"{base}/p1", headers=h).status_code == 204
    assert api.get(f"{base}/p1", headers=h).status_code == 404
    log = read_topic(topics, Topics(topics.topic_prefix).policies)
    assert [k for k, _ in log] == ["acme/p1"] * 4
    versions = [PolicyRecord.from_bytes(v) for _, v in log[:3]]
    assert [(p.threshold, p.version, p.enabled) for p in versions] == [
        (1000, 1, True), (5000, 2, True), (5000, 3, False)
    ]  # fmt: skip
    assert log[3][1] is None  # the tombstone


def test_settings_and_new_accounts_reach_the_tenants_topic(
    api: TestClient, topics: Settings
) -> None:
    h = account(api, "acme", plan="pro")
    r = api.patch("/v1/accounts/acme/settings",
                json={"timezone": "Europe/Berlin", "auto_downgrade": True}, headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    log = read_topic(topics, Topics(topics.topic_prefix).tenants)
    latest = TenantSettingsRecord.from_bytes(log[-1][1])
    assert (log[-1][0], latest.timezone, latest.auto_downgrade, latest.plan) == (
        "acme", "Europe/Berlin", True, "pro"
    )  # fmt: skip
    assert api.get("/v1/accounts/acme/settings", headers=h).json()["timezone"] == "Europe/Berlin"


def test_a_restarted_api_rebuilds_its_view_from_the_topics(topics: Settings) -> None:
    with app_client(topics) as first:
        h = account(first, "acme")
        first.put("/v1/accounts/acme/policies/keep", json=POLICY, headers=h)
        first.put("/v1/accounts/acme/policies/gone", json=POLICY, headers=h)
        first.delete("/v1/accounts/acme/policies/gone", headers=h)
    with app_client(topics) as second:
        ids = [p["policy_id"] for p in second.get("/v1/accounts/acme/policies", headers=h).json()]
        assert ids == ["keep"]
        assert second.get("/v1/accounts/acme/settings", headers=h).json()["plan"] == "starter"


def test_bad_payloads_get_422_with_field_messages(api: TestClient) -> None:
    h = account(api, "acme")
    r = api.post("/v1/accounts/acme/policies",
                 json={**POLICY, "threshold": -5, "window_seconds": 10, "scope": "galaxy"},
                 headers=h)  # fmt: skip
    assert r.status_code == 422
    fields = {f["field"] for f in r.json()["error"]["fields"]}
    assert fields == {"threshold", "window_seconds", "scope"}
    r = api.patch("/v1/accounts/acme/settings", json={"auto_downgrade": True}, headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "auto_downgrade"


def test_topup_request_is_published_for_the_notifier(api: TestClient, topics: Settings) -> None:
    h = account(api, "acme", plan="pro")
    r = api.post("/v1/accounts/acme/topup-requests", json={"requested_by": "kim"}, headers=h)
    assert r.status_code == 202, r.text
    from confluent_kafka import Consumer

    c = Consumer({**topics.librdkafka_config(), "group.id": "t", "auto.offset.reset": "earliest"})
    c.subscribe([Topics(topics.topic_prefix).notifications])
    try:
        msg = None
        for _ in range(50):
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        n = NotificationRecord.from_bytes(msg.value())
    finally:
        c.close()
    assert (n.kind, n.recipients) == ("topup_request", ["owner@acme.test"])
    assert n.notification_id == r.json()["notification_id"]


@pytest.fixture
def chdb_query(tmp_path: Path) -> Iterator[Any]:
    """A chDB store with the sink's schema; closed after the test (one chDB per process)."""
    from capstream.sinks.migrations import migrate
    from capstream.sinks.store import open_client

    client = open_client(Settings(data_dir=tmp_path / "ch"))
    migrate(client)

    def query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        res = client.query(sql, parameters=params)
        return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]

    yield client, query
    client.close()


def test_usage_reads_run_on_chdb_with_the_sinks_schema(topics: Settings, chdb_query: Any) -> None:
    import time

    client, query = chdb_query
    now = time.time_ns() // 1_000_000
    events = [
        ("e1", "acme", "bot-1", 700, 40, 2_000_000),
        ("e2", "acme", "bot-1", 500, 10, 1_000_000),
        ("e3", "globex", "bot-1", 99_999, 999, 9_000_000),
    ]
    rows = [[f"b{i}", "test", now, [(eid, acct, bot, "c1", "text", "m", tin, 0, msgs, True, cr,
                                      now - 60_000, {})]]
            for i, (eid, acct, bot, tin, msgs, cr) in enumerate(events)]  # fmt: skip
    client.insert(
        "usage_batches_inbox", rows, column_names=["batch_id", "producer", "sent_at_ms", "events"]
    )
    client.insert(
        "decisions_inbox",
        [["acme", "bot-1", 3, now, now + 60_000, "p1", "m", None, 3, None, None, {}, "pro", "", ""],
         ["globex", "bot-1", 9, now, None, None, "m", None, 3, None, None, {}, "free", "", ""]],
        column_names=["account_id", "bot_id", "version", "updated_at_ms", "blocked_until_ms",
                      "block_policy_id", "model", "downgraded_until_ms", "batching_interval_s",
                      "throttled_until_ms", "throttle_reason", "caps", "plan",
                      "fallback_text_daily", "fallback_text_monthly"],
    )  # fmt: skip
    with app_client(topics, query=query) as api:
        h = account(api, "acme", plan="pro")
        api.patch("/v1/accounts/acme/settings",
                json={"caps": {"text": {"daily_micro": 2_500_000}}}, headers=h)  # fmt: skip
        api.put("/v1/accounts/acme/policies/tok", json=POLICY, headers=h)
        r = api.get("/v1/accounts/acme/usage", headers=h)
        assert r.status_code == 200, r.text
        (p,) = r.json()["policies"]
        assert (p["used"], p["breached"]) == (1200, True)
        (cap,) = r.json()["caps"]
        assert (cap["used_micro"], cap["reached"], cap["cta"]) == (3_000_000, True, None)
        dec = api.get("/v1/accounts/acme/decisions", headers=h).json()
        assert [(d["account_id"], d["version"], d["block_policy_id"]) for d in dec] == [
            ("acme", 3, "p1")
        ]
        cols = ["account_id", "bot_id", "conversation_id", "local_day", "category", "period",
                "attempts", "message", "cta"]  # fmt: skip
        for attempts in (1, 3):
            row = ["acme", "bot-1", "c1", "2026-05-28", "text", "daily", attempts, "paused", None]
            client.insert("feed_rows_inbox", [row], column_names=cols)
        client.insert("feed_rows_inbox", [["globex", *row[1:]]], column_names=cols)
        feed = api.get("/v1/accounts/acme/feed", params={"day": "2026-05-28"}, headers=h).json()
        assert [(f["account_id"], f["attempts"], f["local_day"]) for f in feed] == [
            ("acme", 3, "2026-05-28")
        ]
        assert (
            api.get("/v1/accounts/acme/feed", params={"day": "2026-05-27"}, headers=h).json() == []
        )
