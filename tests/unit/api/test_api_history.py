"""GET /v1/accounts/{a}/history over a fake ClickHouse (issue 24 item 5): blocks and cap
periods rebuilt from state rows, who lifted a block, parameterised SQL per tenant, filters."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import NOW_MS
from fastapi.testclient import TestClient

MIN = 60_000
T = NOW_MS - 60 * MIN


def state(bot: str, version: int, at: int, blocked: int | None = None, policy: str | None = None,
          caps: dict[str, tuple[str, str, int]] | None = None) -> dict[str, Any]:  # fmt: skip
    caps = caps or {}
    return {
        "bot_id": bot, "version": version, "at_ms": at, "blocked_until_ms": blocked,
        "block_policy_id": policy, "cap_categories": list(caps),
        "cap_periods": [c[0] for c in caps.values()], "cap_keys": [c[1] for c in caps.values()],
        "cap_resumes": [c[2] for c in caps.values()], "resumed_at_ms": None, "resumed_by": None,
        "account_id": "acme",
    }  # fmt: skip


class Store:
    """Answers the history's two queries from rows, honouring the account parameter."""

    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append((sql, params))
        rows = self.states if "FROM decisions" in sql else self.notes
        return [r for r in rows if r["account_id"] == params["account_id"]
                and ("bot_id" not in params or r["bot_id"] in (params["bot_id"], "*"))]  # fmt: skip


@pytest.fixture
def clickhouse() -> Store:  # replaces the conftest's fake for these routes
    return Store()


def test_blocks_caps_and_alerts_come_back_newest_first_with_who_lifted_them(
    client: TestClient, new_account: Any, clickhouse: Store
) -> None:
    h = new_account("acme", plan="starter", bots=("bot-1", "bot-2"))
    cap = ("daily", "2026-05-28", T + 600 * MIN)
    clickhouse.states += [
        state("bot-1", 1, T, T + 10 * MIN, "p1"),  # a block that runs its course
        state("bot-1", 2, T + 10 * MIN),
        state("bot-1", 3, T + 20 * MIN, T + 80 * MIN, "p1"),  # lifted by a resume
        state("bot-1", 4, T + 25 * MIN),
        {
            **state("bot-1", 1 << 63, T + 25 * MIN),
            "resumed_at_ms": T + 25 * MIN,
            "resumed_by": "Dana (key:abc)",
        },
        state("bot-2", 1, T + 30 * MIN, caps={"text": cap}),  # a cap period, still running
        state("bot-1", 5, T + 30 * MIN, caps={"text": cap}),
    ]
    clickhouse.notes.append({
        "account_id": "acme", "notification_id": "n1", "kind": "policy_alert", "policy_id": "p1",
        "subject": "Usage policy 'p1' triggered", "recipients": [], "at_ms": T, "bot_id": "bot-1",
    })  # fmt: skip
    r = client.get("/v1/accounts/acme/history", headers=h)
    assert r.status_code == 200, r.text
    got = [(e["kind"], e["at_ms"] - T, e["until_ms"] and e["until_ms"] - T, e["lifted_by"],
            e["ongoing"]) for e in r.json()["entries"]]  # fmt: skip
    assert got == [
        ("cap", 30 * MIN, 600 * MIN, None, True),  # one entry for the account, not one per bot
        ("block", 20 * MIN, 25 * MIN, "Dana (key:abc)", False),
        ("alert", 0, None, None, False),
        ("block", 0, 10 * MIN, None, False),
    ]
    # every statement is parameterised and filtered by the caller's account
    for sql, params in clickhouse.calls:
        assert "{account_id:String}" in sql and "acme" not in sql
        assert params["account_id"] == "acme"


def test_filters_ranges_and_tenancy(
    client: TestClient, new_account: Any, clickhouse: Store
) -> None:
    h = new_account("acme", plan="starter", bots=("bot-1", "bot-2"))
    other = new_account("globex", plan="starter", bots=("bot-1",))
    clickhouse.states += [state("bot-1", 1, T, T + 10 * MIN, "p1"), state("bot-1", 2, T + MIN)]
    base = "/v1/accounts/acme/history"
    assert [e["bot_id"] for e in client.get(base, headers=h).json()["entries"]] == ["bot-1"]
    assert client.get(base, params={"bot_id": "bot-2"}, headers=h).json()["entries"] == []
    assert client.get(base, params={"kind": "alert"}, headers=h).json()["entries"] == []
    early = {"from_ms": T - 120 * MIN, "to_ms": T - 60 * MIN}
    assert client.get(base, params=early, headers=h).json()["entries"] == []
    assert client.get("/v1/accounts/globex/history", headers=other).json()["entries"] == []
    assert client.get(base, headers=other).status_code == 404
    for bad in ({"from_ms": T, "to_ms": T}, {"from_ms": 0, "to_ms": T}, {"kind": "everything"},
                {"bot_id": "ghost"}, {"bot": "bot-1"}):  # fmt: skip
        assert client.get(base, params=bad, headers=h).status_code == 422, bad


def test_account_blocks_and_caps_come_from_the_account_state_bots_follow(
    client: TestClient, new_account: Any, clickhouse: Store
) -> None:
    """Bots with nothing of their own follow the account's ``*`` state: an account block and
    a cap lifted early by a grant are in ``*``'s rows only; a bot's last own row (its loop
    throttle ended while the account was blocked) still shows the account's block and cap
    as they were, and is not a second block nor an unfinished cap."""
    h = new_account("acme", plan="starter", bots=("bot-1", "bot-2"))
    cap = ("daily", "2026-05-28", T + 600 * MIN)
    clickhouse.states += [
        state("*", 1, T, T + 30 * MIN, "p-acct", caps={"text": cap}),
        state("bot-1", 7, T + 5 * MIN, T + 30 * MIN, "p-acct", caps={"text": cap}),
        state("*", 2, T + 30 * MIN, caps={"text": cap}),
        state("*", 3, T + 40 * MIN),  # a grant lifted the cap
    ]
    for params in ({}, {"bot_id": "bot-1"}, {"bot_id": "bot-2"}):
        r = client.get("/v1/accounts/acme/history", headers=h, params=params)
        assert r.status_code == 200, r.text
        got = [(e["kind"], e["bot_id"], e["at_ms"] - T, e["until_ms"] - T, e["ongoing"])
               for e in r.json()["entries"]]  # fmt: skip
        assert sorted(got) == [
            ("block", "*", 0, 30 * MIN, False),
            ("cap", None, 0, 40 * MIN, False),
        ], params
