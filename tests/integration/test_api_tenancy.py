"""Cross-tenant refusal, one test per route: account A's key never reaches account B.

Every attempt answers 404 exactly like an account that does not exist, and B's data is
unchanged afterwards (checked with B's own key against the topics' read view).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics

ADMIN = "csa_" + "tenancy-admin-key-" * 3
POLICY = {"metric": "messages", "threshold": 50, "window_seconds": 600, "scope": "bot",
          "bot_id": "bot-b", "block": {"duration_seconds": 60}, "name": "", "category": None,
          "alert": None, "enabled": True}  # fmt: skip


GRANT = {"category": "text", "period": "daily", "amount_micro": 500}
PRICES = {"currency": "USD", "credits_per_unit_micro": 1_000_000,
          "models": {"m": {"input_per_mtok_micro": 1, "output_per_mtok_micro": 2}}}  # fmt: skip
CHANNEL = {"channel_id": "cb", "type": "webhook", "url": "https://hooks.b.test/in",
           "secret": "b-signing-secret-0123456789"}  # fmt: skip


class World:
    """Two tenants on one deployment: A (the intruder) and B (the victim, with data)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.a = self._account("tenant-a", "bot-a")
        self.b = self._account("tenant-b", "bot-b")
        r = client.put("/v1/accounts/tenant-b/policies/pb", json=POLICY, headers=self.b)
        assert r.status_code == 201, r.text
        r = client.post("/v1/accounts/tenant-b/channels", json=CHANNEL, headers=self.b)
        assert r.status_code == 201, r.text
        caps = {"caps": {"text": {"daily_micro": 1_000}}}
        assert client.patch("/v1/accounts/tenant-b/settings", json=caps, headers=self.b).is_success
        r = client.post("/v1/accounts/tenant-b/grants", json={**GRANT, "grant_id": "gb"},
                        headers=self.b)  # fmt: skip
        assert r.status_code == 201, r.text
        r = client.put("/v1/accounts/tenant-b/prices", json=PRICES, headers=self.b)
        assert r.status_code == 200, r.text
        self.b_key_id = client.get("/v1/accounts/tenant-b", headers=self.b).json()["keys"][0][
            "key_id"
        ]

    def _account(self, account_id: str, bot: str) -> dict[str, str]:
        r = self.client.post(
            "/v1/accounts",
            json={"account_id": account_id, "owner_email": f"o@{account_id}.test", "plan": "pro"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201, r.text
        h = {"Authorization": f"Bearer {r.json()['api_key']}"}
        assert self.client.put(
            f"/v1/accounts/{account_id}/bots/{bot}", json={}, headers=h
        ).is_success
        return h

    def b_snapshot(self) -> dict[str, Any]:
        get = lambda path: self.client.get(f"/v1/accounts/tenant-b{path}", headers=self.b).json()  # noqa: E731
        return {"account": get(""), "policies": get("/policies"), "settings": get("/settings"),
                "channels": get("/channels"), "grants": get("/grants"),
                "prices": get("/prices")}  # fmt: skip


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("tenancy")),
    )
    create_topics(settings)

    def no_clickhouse(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        # Reads of B must be refused before any query runs; a query for B would be a leak.
        assert params["account_id"] != "tenant-b", "a query ran for another tenant"
        return []

    app = create_app(settings, admin=AdminKey(hash_secret(ADMIN)), query=no_clickhouse)
    with TestClient(app) as client:
        yield World(client)


ROUTES = [
    ("GET", "/v1/accounts/tenant-b", None),
    ("PUT", "/v1/accounts/tenant-b/plan", {"plan": "free"}),
    ("POST", "/v1/accounts/tenant-b/keys", None),
    ("DELETE", "/v1/accounts/tenant-b/keys/{b_key}", None),
    ("GET", "/v1/accounts/tenant-b/bots", None),
    ("PUT", "/v1/accounts/tenant-b/bots/intruder", {"name": "x"}),
    ("DELETE", "/v1/accounts/tenant-b/bots/bot-b", None),
    ("GET", "/v1/accounts/tenant-b/policies", None),
    ("POST", "/v1/accounts/tenant-b/policies", {**POLICY, "policy_id": "evil"}),
    ("GET", "/v1/accounts/tenant-b/policies/pb", None),
    ("PUT", "/v1/accounts/tenant-b/policies/pb", {**POLICY, "threshold": 1}),
    ("DELETE", "/v1/accounts/tenant-b/policies/pb", None),
    ("POST", "/v1/accounts/tenant-b/policies/pb/enable", None),
    ("POST", "/v1/accounts/tenant-b/policies/pb/disable", None),
    ("GET", "/v1/accounts/tenant-b/settings", None),
    (
        "PUT",
        "/v1/accounts/tenant-b/settings",
        {
            "timezone": "Asia/Tokyo",
            "language": "en",
            "caps": {},
            "fallback_message": "",
            "auto_downgrade": False,
            "premium_model": "m",
            "downgrade_model": "m",
            "throttle": "off",
        },
    ),
    ("PATCH", "/v1/accounts/tenant-b/settings", {"timezone": "Asia/Tokyo"}),
    ("PATCH", "/v1/accounts/tenant-b/policies/pb", {"threshold": 1}),
    ("POST", "/v1/accounts/tenant-b/bots/bot-b/resume", {}),
    ("POST", "/v1/accounts/tenant-b/topup-requests", {}),
    ("GET", "/v1/accounts/tenant-b/usage", None),
    ("GET", "/v1/accounts/tenant-b/feed", None),
    ("GET", "/v1/accounts/tenant-b/decisions", None),
    ("GET", "/v1/accounts/tenant-b/fallback-preview", None),
    ("GET", "/v1/accounts/tenant-b/live", None),
    ("GET", "/v1/accounts/tenant-b/usage/series", None),
    ("GET", "/v1/accounts/tenant-b/mailbox", None),
    ("POST", "/v1/accounts/tenant-b/simulations", {"policy": POLICY}),
    ("GET", "/v1/accounts/tenant-b/simulations/" + "0" * 32, None),
    ("GET", "/v1/accounts/tenant-b/channels", None),
    ("POST", "/v1/accounts/tenant-b/channels", {**CHANNEL, "channel_id": "evil"}),
    ("GET", "/v1/accounts/tenant-b/channels/cb", None),
    ("PATCH", "/v1/accounts/tenant-b/channels/cb", {"url": "https://evil.test/x"}),
    ("DELETE", "/v1/accounts/tenant-b/channels/cb", None),
    ("POST", "/v1/accounts/tenant-b/channels/cb/rotate", {"secret": "e" * 20}),
    ("POST", "/v1/accounts/tenant-b/channels/cb/test", None),
    ("GET", "/v1/accounts/tenant-b/channels/cb/deliveries", None),
    ("GET", "/v1/accounts/tenant-b/grants", None),
    ("POST", "/v1/accounts/tenant-b/grants", {**GRANT, "grant_id": "evil"}),
    ("POST", "/v1/accounts/tenant-b/grants", {**GRANT, "grant_id": "gb"}),  # a replay of B's
    ("GET", "/v1/accounts/tenant-b/grants/gb", None),
    ("GET", "/v1/accounts/tenant-b/history", None),
    ("GET", "/v1/accounts/tenant-b/prices", None),
    ("PUT", "/v1/accounts/tenant-b/prices", {**PRICES, "currency": "EUR"}),
    ("PATCH", "/v1/accounts/tenant-b/prices", {"models": {"m": None}}),
    ("DELETE", "/v1/accounts/tenant-b/prices", None),
    # B's ids through A's own account: ids never resolve across tenants.
    ("GET", "/v1/accounts/tenant-a/policies/pb", None),
    ("POST", "/v1/accounts/tenant-a/policies/pb/disable", None),
    ("DELETE", "/v1/accounts/tenant-a/keys/{b_key}", None),
    ("GET", "/v1/accounts/tenant-a/channels/cb", None),
    ("POST", "/v1/accounts/tenant-a/channels/cb/test", None),
    ("GET", "/v1/accounts/tenant-a/grants/gb", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_other_tenants_resources_answer_404(
    world: World, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = world.b_snapshot()
    url = path.format(b_key=world.b_key_id)
    r = world.client.request(method, url, json=body, headers=world.a)
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    missing = world.client.request(
        method, url.replace("tenant-b", "no-such-tenant"), json=body, headers=world.a
    )
    assert missing.status_code == 404
    # Word for word the answer about an account that does not exist: nothing is revealed.
    said = r.json()["error"]["message"].replace("tenant-b", "?")
    assert said == missing.json()["error"]["message"].replace("no-such-tenant", "?")
    assert world.b_snapshot() == before


def test_every_route_of_an_account_has_its_cross_tenant_case() -> None:
    schema = create_app(Settings()).openapi()
    scoped = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops
              if "{account_id}" in p}  # fmt: skip

    def template(path: str) -> str | None:
        return next((p for _, p in scoped
                     if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), path)), None)  # fmt: skip

    covered = {(m, template(p)) for m, p, _ in ROUTES if p.startswith("/v1/accounts/tenant-b")}
    assert scoped - covered == set(), "routes without a cross-tenant test"


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/accounts"), ("POST", "/v1/accounts")])
def test_admin_routes_refuse_account_keys(world: World, method: str, path: str) -> None:
    body = {"account_id": "tenant-c", "owner_email": "o@c.test"} if method == "POST" else None
    r = world.client.request(method, path, json=body, headers=world.a)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert "tenant-b" not in r.text
