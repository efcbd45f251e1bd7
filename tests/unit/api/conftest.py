"""Unit fixtures for the Policy API: an in-memory topic log and an in-memory ClickHouse fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api.accounts import AccountStore
from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.api.publisher import Written
from capstream.streams.price_records import PriceTableRecord
from capstream.streams.records import CapGrantRecord, PolicyRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

ADMIN = "csa_" + "unit-test-admin-key-" * 2
NOW_MS = 1_780_000_000_000  # 2026-05-28


class MemoryLog:
    """Topics as in-memory logs; also the read view (applies records as they are written)."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.log: dict[str, list[tuple[str, bytes | None]]] = {}
        self._policies: dict[str, dict[str, PolicyRecord]] = {}
        self._tenants: dict[str, TenantSettingsRecord] = {}
        self._grants: dict[str, dict[str, CapGrantRecord]] = {}
        self._prices: dict[str, PriceTableRecord] = {}

    async def publish(self, topic: str, key: str, value: bytes | None) -> Written:
        entries = self.log.setdefault(topic, [])
        entries.append((key, value))
        if topic == self.topics.policies:
            account_id, _, pid = key.partition("/")
            if value is None:
                self._policies.get(account_id, {}).pop(pid, None)
            else:
                rec = PolicyRecord.from_bytes(value)
                self._policies.setdefault(account_id, {})[pid] = rec
        elif topic == self.topics.tenants and value is not None:
            self._tenants[key] = TenantSettingsRecord.from_bytes(value)
        elif topic == self.topics.prices:
            if value is None:
                self._prices.pop(key, None)
            else:
                self._prices[key] = PriceTableRecord.from_bytes(value)
        elif topic == self.topics.grants and value is not None:
            g = CapGrantRecord.from_bytes(value)
            self._grants.setdefault(g.account_id, {})[g.grant_id] = g
        return Written(topic, 0, len(entries) - 1)

    def wait_for(self, topic: str, partition: int, offset: int, timeout_s: float = 10.0) -> None:
        assert len(self.log[topic]) > offset

    def policies(self, account_id: str) -> list[PolicyRecord]:
        return sorted(self._policies.get(account_id, {}).values(), key=lambda p: p.policy_id)

    def policy(self, account_id: str, policy_id: str) -> PolicyRecord | None:
        return self._policies.get(account_id, {}).get(policy_id)

    def tenant(self, account_id: str) -> TenantSettingsRecord | None:
        return self._tenants.get(account_id)

    def prices(self, account_id: str) -> PriceTableRecord | None:
        return self._prices.get(account_id)

    def tenant_ids(self) -> list[str]:
        return sorted(self._tenants)

    def grants(self, account_id: str) -> list[CapGrantRecord]:
        held = self._grants.get(account_id, {}).values()
        return sorted(held, key=lambda g: (g.granted_at_ms, g.grant_id))


class FakeClickHouse:
    """Answers the read queries over in-memory usage events, honouring the same filters."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.feed: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append((sql, params))
        acct = params["account_id"]
        if "FROM feed_rows" in sql:
            rows = [
                r for r in self.feed if r["account_id"] == acct and r["local_day"] == params["day"]
            ]
            return rows[: params["limit"]]
        if "FROM decisions" in sql:
            rows = [r for r in self.decisions if r["account_id"] == acct]
            return sorted(rows, key=lambda r: -r["updated_at"])[: params["limit"]]
        rows = [
            e
            for e in self.events
            if e["account_id"] == acct
            and e["occurred_at_ms"] >= params.get("since", params.get("start", 0))
            and e["occurred_at_ms"] < params.get("end", 1 << 62)
            and e["bot_id"] == params.get("bot_id", e["bot_id"])
            and e["category"] == params.get("category", e["category"])
        ]

        def amount(e: dict[str, Any]) -> int:
            if "tokens_in + tokens_out" in sql:
                return int(e["tokens_in"] + e["tokens_out"])
            if "sum(messages)" in sql:
                return int(e["messages"])
            if "conversation_started" in sql:
                return int(e["conversation_started"])
            return int(e["credits_micro"])

        if "AS value" in sql:  # a per-attribute policy: the busiest (bot, value)

            def value(e: dict[str, Any]) -> str:
                if params["per"] == "model":
                    return str(e.get("model", ""))
                return str(dict(e.get("attributes", {})).get(params["per"], ""))

            per_value: dict[tuple[str, str], int] = {}
            for e in rows:
                v = value(e)
                if v and params.get("per_value", v) == v:
                    k = (e["bot_id"] if "bot_id, value" in sql else "", v)
                    per_value[k] = per_value.get(k, 0) + amount(e)
            if not per_value:
                return []
            k = max(per_value, key=lambda x: per_value[x])
            return [{"value": k[1], "used": per_value[k]}]
        if "GROUP BY bot_id" in sql:
            per_bot: dict[str, int] = {}
            for e in rows:
                per_bot[e["bot_id"]] = per_bot.get(e["bot_id"], 0) + amount(e)
            return [{"used": max(per_bot.values())}] if per_bot else []
        return [{"used": sum(amount(e) for e in rows) if rows else None}]


@pytest.fixture
def memlog() -> MemoryLog:
    return MemoryLog(Topics("unit"))


@pytest.fixture
def clickhouse() -> FakeClickHouse:
    return FakeClickHouse()


@pytest.fixture
def client(tmp_path: Path, memlog: MemoryLog, clickhouse: FakeClickHouse) -> Iterator[TestClient]:
    settings = Settings(topic_prefix="unit", data_dir=tmp_path / "data")
    store = AccountStore(tmp_path / "accounts.sqlite3")
    app = create_app(
        settings,
        store=store,
        view=memlog,
        publisher=memlog,
        query=clickhouse,
        admin=AdminKey(hash_secret(ADMIN)),
        clock=lambda: NOW_MS,
    )
    with TestClient(app) as c:
        yield c
    store.close()


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers of the admin key."""
    return {"Authorization": f"Bearer {ADMIN}"}


class Accounts:
    """Creates accounts (and bots) with the admin key; returns the account key's headers."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self, account_id: str, plan: str = "free", bots: tuple[str, ...] = ()
    ) -> dict[str, str]:
        r = self.client.post(
            "/v1/accounts",
            json={
                "account_id": account_id,
                "owner_email": f"owner@{account_id}.test",
                "plan": plan,
            },
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['api_key']}"}
        for bot in bots:
            r = self.client.put(f"/v1/accounts/{account_id}/bots/{bot}", json={}, headers=headers)
            assert r.status_code == 201, r.text
        return headers


@pytest.fixture
def new_account(client: TestClient) -> Accounts:
    return Accounts(client)
