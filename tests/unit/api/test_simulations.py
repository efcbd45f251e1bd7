"""POST/GET /v1/accounts/{a}/simulations: results, jobs for long ranges, tenancy, refusals."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api import routes_simulations
from capstream.core import UsageEvent
from capstream.simulation import parallel
from capstream.simulation.memory import MemoryEvents

NOW_MS = 1_780_000_000_000  # the unit app's clock (conftest)
S = "/v1/accounts/acme/simulations"
POLICY = {"metric": "messages", "threshold": 5, "window_seconds": 600,
          "scope": "account_each_bot", "block": {"duration_seconds": 300}}  # fmt: skip


def _events(account: str = "acme", n: int = 60) -> list[UsageEvent]:
    t0 = NOW_MS - 2 * 86_400_000
    out = []
    for i in range(n):
        ev = UsageEvent(f"{account}-{i}", account, "bot-1", f"c{i % 3}", "text", "m", 10, 5, 1,
                        False, 1_000, t0 + i * 30_000)  # fmt: skip
        out.append(ev)
    return out


@pytest.fixture
def clickhouse() -> MemoryEvents:  # replaces the conftest's fake for these routes
    return MemoryEvents(_events() + _events("other"))


def test_a_short_range_answers_with_the_result(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    r = client.post(S, json={"policy": POLICY}, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "done" and out["progress"] == {"events_done": 60, "events_total": 60}
    result = out["result"]
    assert result["events"] == 60  # the other account's events are not read
    assert result["simulated"]["blocks"] and not result["current"]["blocks"]
    assert result["simulated"]["gated"]["paused"] > 0
    # the job stays readable by its account
    again = client.get(out["poll"], headers=h)
    assert again.status_code == 200 and again.json()["result"] == result


def test_a_long_range_answers_202_with_a_job_to_poll(
    client: TestClient, new_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_simulations, "SYNC_EVENTS", 10)
    h = new_account("acme")
    r = client.post(S, json={"policy": POLICY, "from": "2026-05-01T00:00:00Z"}, headers=h)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == job["poll"] == f"{S}/{job['job_id']}"
    assert job["progress"]["events_total"] == 60
    deadline = time.monotonic() + 30
    while job["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get(r.headers["location"], headers=h).json()
    assert job["status"] == "done" and job["result"]["simulated"]["blocks"]
    # another tenant cannot see it, nor tell it from a missing job
    other = new_account("other")
    mine = client.get(f"/v1/accounts/other/simulations/{job['job_id']}", headers=other)
    theirs = client.get(job["poll"], headers=other)
    assert mine.status_code == theirs.status_code == 404


def _poll(client: TestClient, job: dict[str, Any], h: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while job["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get(job["poll"], headers=h).json()
    return job


def test_a_job_with_the_draft_side_in_a_second_process_gives_the_same_result(
    client: TestClient, new_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = new_account("acme")
    body = {"policy": POLICY, "from": "2026-05-01T00:00:00Z"}
    one = client.post(S, json=body, headers=h).json()  # within the request: one process
    assert one["status"] == "done"
    monkeypatch.setattr(routes_simulations, "SYNC_EVENTS", 10)
    monkeypatch.setattr(parallel, "MIN_EVENTS", 10)  # 60 events: two processes
    r = client.post(S, json=body, headers=h)
    assert r.status_code == 202, r.text
    two = _poll(client, r.json(), h)
    assert two["status"] == "done", two
    assert two["progress"] == {"events_done": 60, "events_total": 60}
    assert two["result"] == one["result"]


def test_a_job_whose_second_process_dies_fails_with_the_reason(
    client: TestClient, new_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_simulations, "SYNC_EVENTS", 10)
    monkeypatch.setattr(parallel, "MIN_EVENTS", 10)
    monkeypatch.setattr(parallel, "_BOOT", "import sys; sys.exit(3)")  # dies as it starts
    h = new_account("acme")
    r = client.post(S, json={"policy": POLICY, "from": "2026-05-01T00:00:00Z"}, headers=h)
    assert r.status_code == 202, r.text
    job = _poll(client, r.json(), h)
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"]["code"] == "failed"
    assert "draft side's process exited with code 3" in job["error"]["message"]
    # the API goes on: the next simulation is answered
    monkeypatch.undo()
    again = client.post(S, json={"policy": POLICY}, headers=h)
    assert again.status_code == 200 and again.json()["status"] == "done"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "policy", "needs a draft"),
        ({"policy": {**POLICY, "block": None}}, "policy.alert", "no action"),
        ({"policy": POLICY, "from": "2026-01-01"}, "from", "at most 93 days"),
        ({"policy": POLICY, "from": "soon"}, "from", "not a date or time"),
        ({"policy": POLICY, "replaces": "missing"}, "replaces", "no policy 'missing'"),
        ({"policy": {**POLICY, "window_seconds": 5}}, "policy.window_seconds", "greater than"),
        ({"settings": {"throttle": "sometimes"}}, "settings.throttle", "'off', 'smart'"),
    ],
)
def test_bad_drafts_and_ranges_are_422_naming_the_field(
    client: TestClient, new_account: Any, body: Any, field: str, words: str
) -> None:
    h = new_account("acme")
    r = client.post(S, json=body, headers=h)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["fields"][0]["field"] == field
    assert words in err["message"] or words in err["fields"][0]["message"]


def test_unknown_or_foreign_accounts_and_missing_keys(client: TestClient, new_account: Any) -> None:
    h = new_account("acme")
    new_account("other")
    assert client.post("/v1/accounts/ghost/simulations", json={"policy": POLICY},
                       headers=h).status_code == 404  # fmt: skip
    foreign = client.post("/v1/accounts/other/simulations", json={"policy": POLICY}, headers=h)
    assert foreign.status_code == 404
    assert client.post(S, json={"policy": POLICY}).status_code == 401
    assert client.get(f"{S}/{'0' * 32}", headers=h).status_code == 404


def test_clickhouse_down_is_503(client: TestClient, new_account: Any, clickhouse: Any) -> None:
    h = new_account("acme")

    def down(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        raise ConnectionError("refused")

    client.app.state.capstream.query = down  # type: ignore[attr-defined]
    r = client.post(S, json={"policy": POLICY}, headers=h)
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
