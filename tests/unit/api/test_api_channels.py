"""A tenant's notification channels through the Policy API: add, list, change, rotate,
delete, send a test, the delivery log; secrets sealed and never returned; tenants apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ADMIN, NOW_MS, MemoryLog
from fastapi.testclient import TestClient

from capstream.api.accounts import AccountStore
from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.api.publisher import Written
from capstream.notifier.secretbox import channel_key, open_box
from capstream.streams.records import ChannelRecord, DeliveryAttemptRecord, NotificationRecord
from capstream.streams.settings import Settings

SECRET = "whsec_0123456789abcdefWXYZ"
SLACK = "https://hooks.slack.com/services/T1/B2/verysecretSLK9"
B = "/v1/accounts/acme/channels"


class ChannelLog(MemoryLog):
    """The in-memory topics, plus the channels topic and the delivery log."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._channels: dict[tuple[str, str], ChannelRecord] = {}
        self.attempts: list[DeliveryAttemptRecord] = []

    async def publish(self, topic: str, key: str, value: bytes | None) -> Written:
        written = await super().publish(topic, key, value)
        if topic == self.topics.channels:
            account, _, cid = key.partition("/")
            if value is None:
                self._channels.pop((account, cid), None)
            else:
                self._channels[(account, cid)] = ChannelRecord.from_bytes(value)
        return written

    def channels(self, account_id: str) -> list[ChannelRecord]:
        return sorted((c for (a, _), c in self._channels.items() if a == account_id),
                      key=lambda c: c.channel_id)  # fmt: skip

    def channel(self, account_id: str, channel_id: str) -> ChannelRecord | None:
        return self._channels.get((account_id, channel_id))

    def deliveries(self, account_id: str, channel_id: str) -> list[DeliveryAttemptRecord]:
        return [a for a in reversed(self.attempts)
                if (a.account_id, a.channel_id) == (account_id, channel_id)]  # fmt: skip


@pytest.fixture
def log() -> ChannelLog:
    from capstream.streams.topics import Topics

    return ChannelLog(Topics("unit"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(topic_prefix="unit", data_dir=tmp_path / "data")


@pytest.fixture
def client(tmp_path: Path, log: ChannelLog, settings: Settings) -> Iterator[TestClient]:
    store = AccountStore(tmp_path / "accounts.sqlite3")
    app = create_app(settings, store=store, view=log, publisher=log,
                     admin=AdminKey(hash_secret(ADMIN)), clock=lambda: NOW_MS)  # fmt: skip
    with TestClient(app) as c:
        yield c
    store.close()


def account(client: TestClient, name: str) -> dict[str, str]:
    r = client.post("/v1/accounts", json={"account_id": name, "owner_email": f"o@{name}.test"},
                    headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def test_add_a_webhook_send_a_test_and_read_its_delivery_log(
    client: TestClient, log: ChannelLog, settings: Settings
) -> None:
    h = account(client, "acme")
    body = {
        "channel_id": "ops-hook", "type": "webhook", "name": "Ops", "secret": SECRET,
        "url": "https://ops.acme.test/hook", "kinds": ["cap_warning", "policy_alert"],
    }  # fmt: skip
    r = client.post(B, json=body, headers=h)
    assert r.status_code == 201, r.text
    view = r.json()
    assert (view["secret_hint"], view["kinds"]) == ("…WXYZ", ["cap_warning", "policy_alert"])
    # the secret is sealed on the topic and never in a response
    key, value = log.log["unit.channels"][-1]
    assert key == "acme/ops-hook" and value is not None
    assert SECRET.encode() not in value
    rec = ChannelRecord.from_bytes(value)
    assert open_box(channel_key(settings), rec.secret_box) == SECRET
    listed = client.get(B, headers=h)
    assert SECRET not in listed.text and "whsec_" not in listed.text
    # send a test: a notification for this channel only
    r = client.post(f"{B}/ops-hook/test", headers=h)
    assert r.status_code == 202, r.text
    nid = r.json()["notification_id"]
    note = NotificationRecord.from_bytes(log.log["unit.notifications"][-1][1])
    assert (note.notification_id, note.channel_id, note.kind) == (nid, "ops-hook", "channel_test")
    # the notifier's attempts show in the delivery log, newest first
    for n, (outcome, code) in enumerate([("retry", 503), ("delivered", 200)], start=1):
        log.attempts.append(DeliveryAttemptRecord(
            account_id="acme", channel_id="ops-hook", notification_id=nid, kind="channel_test",
            attempt=n, at_ms=NOW_MS + n, outcome=outcome, status_code=code,
        ))  # fmt: skip
    got = client.get(f"{B}/ops-hook/deliveries", headers=h).json()
    assert [(d["attempt"], d["outcome"], d["status_code"]) for d in got] == [
        (2, "delivered", 200), (1, "retry", 503),
    ]  # fmt: skip


def test_rotate_patch_delete_and_what_is_refused(
    client: TestClient, log: ChannelLog, settings: Settings
) -> None:
    h = account(client, "acme")
    client.post(B, json={"channel_id": "w", "type": "webhook", "secret": SECRET,
                         "url": "https://x.test/h"}, headers=h)  # fmt: skip
    r = client.post(f"{B}/w/rotate", json={"secret": "whsec_new_secret_value_NEW1"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["secret_hint"] == "…NEW1"
    assert r.json()["previous_secret_valid_until_ms"] == NOW_MS + 86_400_000
    rec = ChannelRecord.from_bytes(log.log["unit.channels"][-1][1])
    key = channel_key(settings)
    assert open_box(key, rec.previous_secret_box) == SECRET
    r = client.patch(f"{B}/w", json={"kinds": ["throttle_engaged"], "enabled": False}, headers=h)
    assert (r.json()["kinds"], r.json()["enabled"], r.json()["version"]) == (
        ["throttle_engaged"], False, 3,
    )  # fmt: skip
    assert r.json()["secret_hint"] == "…NEW1"  # a PATCH keeps the secret
    # Slack: the URL is the secret
    r = client.post(B, json={"channel_id": "s", "type": "slack", "slack_url": SLACK}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "https://hooks.slack.com/…SLK9" and "verysecret" not in r.text
    assert b"verysecret" not in (log.log["unit.channels"][-1][1] or b"")
    # refusals: 422 naming the field
    for bad, field in (
        ({"type": "webhook", "url": "https://x.test/h"}, "secret"),
        ({"type": "webhook", "url": "https://x.test/h", "secret": "whsec_short"}, "secret"),
        ({"type": "email", "emails": []}, "emails"),
        ({"type": "email", "emails": ["not-an-email"]}, "emails"),
        ({"type": "slack", "slack_url": "http://hooks.slack.com/x"}, "slack_url"),
        ({"type": "email", "emails": ["a@b.test"], "kinds": ["nope"]}, "kinds"),
    ):
        r = client.post(B, json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["fields"][0]["field"].startswith(field), (bad, r.text)
        assert "whsec_short" not in r.text and "hooks.slack.com/x" not in r.text  # no echo
    r = client.post(f"{B}/s/rotate", json={"secret": "x" * 20}, headers=h)
    assert r.status_code == 422
    assert client.post(B, json={"channel_id": "s", "type": "slack", "slack_url": SLACK},
                       headers=h).status_code == 409  # fmt: skip
    assert client.delete(f"{B}/w", headers=h).status_code == 204
    assert log.log["unit.channels"][-1] == ("acme/w", None)
    assert client.get(f"{B}/w", headers=h).status_code == 404


def test_a_tenant_sees_and_tests_only_its_own_channels(client: TestClient, log: ChannelLog) -> None:
    a = account(client, "acme")
    z = account(client, "zeta")
    zc = {"channel_id": "zc", "type": "email", "emails": ["z@zeta.test"]}
    r = client.post("/v1/accounts/zeta/channels", json=zc, headers=z)
    assert r.status_code == 201
    assert client.get("/v1/accounts/zeta/channels", headers=a).status_code in (403, 404)
    assert client.post("/v1/accounts/zeta/channels/zc/test", headers=a).status_code in (403, 404)
    assert client.get(f"{B}/zc", headers=a).status_code == 404  # not acme's
    assert client.post(f"{B}/zc/test", headers=a).status_code == 404
    assert client.get(f"{B}/zc/deliveries", headers=a).status_code == 404
    assert client.get(B, headers=a).json() == []
