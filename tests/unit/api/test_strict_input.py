"""Issue 24 item 6: bodies are taken as typed (no coercion), filters are applied or refused,
addresses are listed once, and errors name only ids the caller knows."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

BASE = "/v1/accounts/acme/policies"
BODY: dict[str, Any] = {
    "name": "hourly",
    "metric": "messages",
    "threshold": 100,
    "window_seconds": 3600,
    "scope": "bot",
    "bot_id": "bot-1",
    "alert": {"recipients": ["ops@acme.test"]},
    "block": {"duration_seconds": 600},
}


def fields(r: Any) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {f["field"]: f["message"] for f in r.json()["error"]["fields"]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", "100"),
        ("threshold", True),
        ("threshold", 100.0),
        ("window_seconds", "3600"),
        ("enabled", "yes"),
        ("enabled", 1),
        ("name", 7),
    ],
)
def test_a_policy_field_of_the_wrong_json_type_is_refused_not_coerced(
    client: TestClient, new_account: Any, memlog: Any, field: str, value: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    for r in (
        client.post(BASE, json={**BODY, field: value}, headers=h),
        client.put(
            f"{BASE}/p1", json={**BODY, "category": None, "enabled": True, field: value}, headers=h
        ),
    ):
        assert field in fields(r)
    assert "unit.policies" not in memlog.log  # nothing was written
    assert client.post(BASE, json={**BODY, "policy_id": "p1"}, headers=h).status_code == 201
    assert field in fields(client.patch(f"{BASE}/p1", json={field: value}, headers=h))
    assert client.get(f"{BASE}/p1", headers=h).json()["version"] == 1


def test_threshold_true_is_not_stored_as_one(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1",))
    got = fields(client.post(BASE, json={**BODY, "threshold": True}, headers=h))
    assert "integer" in got["threshold"]
    assert client.get(BASE, headers=h).json() == []


def test_settings_channels_and_simulations_are_strict_too(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme", plan="pro", bots=("bot-1",))
    s = "/v1/accounts/acme/settings"
    assert "auto_downgrade" in fields(client.patch(s, json={"auto_downgrade": "yes"}, headers=h))
    got = fields(client.patch(s, json={"caps": {"text": {"daily_micro": "1000"}}}, headers=h))
    assert "caps.text.daily_micro" in got
    assert "language" in fields(client.patch(s, json={"language": 1}, headers=h))
    ch = client.post("/v1/accounts/acme/channels",
                     json={"type": "email", "emails": ["a@acme.test"], "enabled": "true"},
                     headers=h)  # fmt: skip
    assert "enabled" in fields(ch)
    sim = client.post("/v1/accounts/acme/simulations",
                      json={"policy": {**BODY, "threshold": "5"}}, headers=h)  # fmt: skip
    assert "policy.threshold" in fields(sim)
    sim = client.post("/v1/accounts/acme/simulations",
                      json={"policy": BODY, "from": True}, headers=h)  # fmt: skip
    assert any(f.startswith("from") for f in fields(sim))


def test_list_filters_by_bot_and_scope(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1", "bot-2"))
    for pid, extra in (
        ("own-1", {"bot_id": "bot-1"}),
        ("own-2", {"bot_id": "bot-2"}),
        ("each", {"scope": "account_each_bot", "bot_id": None}),
        ("total", {"scope": "account_total", "bot_id": None}),
    ):
        r = client.post(BASE, json={**BODY, **extra, "policy_id": pid}, headers=h)
        assert r.status_code == 201, r.text

    def ids(**params: str) -> list[str]:
        r = client.get(BASE, params=params, headers=h)
        assert r.status_code == 200, r.text
        return [p["policy_id"] for p in r.json()]

    assert ids() == ["each", "own-1", "own-2", "total"]
    assert ids(bot_id="bot-1") == ["each", "own-1", "total"]  # what watches bot-1
    assert ids(bot_id="bot-2", scope="bot") == ["own-2"]  # bot-2's own
    assert ids(scope="account_total") == ["total"]
    assert "bot_id" in fields(client.get(BASE, params={"bot_id": "ghost"}, headers=h))
    assert "scope" in fields(client.get(BASE, params={"scope": "everything"}, headers=h))


def test_an_unknown_query_parameter_is_refused_on_every_route(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    for url in (
        f"{BASE}?botid=bot-1",
        "/v1/accounts/acme/settings?verbose=1",
        "/v1/accounts/acme/channels?type=email",
        "/v1/accounts/acme/decisions?limit=5&bot=bot-1",
    ):
        got = fields(client.get(url, headers=h))
        name = url.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
        assert set(got) == {name}, (url, got)
        assert "unknown query parameter" in got[name]
    # the parameters a route does take still work
    assert client.get("/v1/accounts/acme/decisions?limit=5", headers=h).status_code == 200


def test_duplicate_recipients_are_refused_naming_the_field(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    twice = {**BODY, "alert": {"recipients": ["ops@acme.test", "OPS@acme.test"]}}
    got = fields(client.post(BASE, json=twice, headers=h))
    assert "OPS@acme.test is listed twice" in got["alert.recipients"]
    assert client.post(BASE, json={**BODY, "policy_id": "p1"}, headers=h).status_code == 201
    got = fields(client.patch(f"{BASE}/p1", json={"alert": twice["alert"]}, headers=h))
    assert "alert.recipients" in got
    ch = client.post("/v1/accounts/acme/channels",
                     json={"type": "email", "emails": ["a@acme.test", "a@acme.test"]},
                     headers=h)  # fmt: skip
    assert "listed twice" in fields(ch)["emails"]
    twice_q = [("recipient", "a@acme.test"), ("recipient", "A@acme.test")]
    presets = client.get("/v1/presets", params=twice_q, headers=h)
    assert "listed twice" in fields(presets)["recipient"]


def test_errors_do_not_name_an_id_the_caller_never_saw(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    r = client.post(BASE, json={**BODY, "scope": "account_total"}, headers=h)
    err = r.json()["error"]
    assert r.status_code == 422 and "bot_id" in {f["field"] for f in err["fields"]}
    assert "policy '" not in err["message"], err["message"]
    assert err["message"].startswith("bot_id is only allowed with scope 'bot'")
    # a created policy's id is in the answer; still the message is about the body
    no_action = {k: v for k, v in BODY.items() if k not in ("alert", "block")}
    r = client.post(BASE, json={**no_action, "policy_id": "mine"}, headers=h)
    assert "policy '" not in r.json()["error"]["message"]
    assert "unit.policies" not in memlog.log
