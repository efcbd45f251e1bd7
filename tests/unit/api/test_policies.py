"""Policy CRUD over HTTP: records on the policies topic, versions, tombstones, 422s, presets."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from capstream.streams.records import PolicyRecord

BASE = "/v1/accounts/acme/policies"
BODY = {
    "name": "hourly",
    "metric": "messages",
    "threshold": 100,
    "window_seconds": 3600,
    "scope": "bot",
    "bot_id": "bot-1",
    "alert": {"recipients": ["ops@acme.test"]},
    "block": {"duration_seconds": 600},
    "category": None,
    "enabled": True,
}


def fields(r: Any) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {f["field"]: f["message"] for f in r.json()["error"]["fields"]}


def test_create_publishes_the_record_keyed_by_account_and_policy(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    r = client.post(BASE, json={**BODY, "policy_id": "p1"}, headers=h)
    assert r.status_code == 201, r.text
    key, value = memlog.log["unit.policies"][-1]
    assert key == "acme/p1"
    rec = PolicyRecord.from_bytes(value)
    assert (rec.account_id, rec.threshold, rec.bot_id, rec.version) == ("acme", 100, "bot-1", 1)
    assert rec.block is not None and rec.block.duration_seconds == 600
    assert client.get(f"{BASE}/p1", headers=h).json()["threshold"] == 100
    assert [p["policy_id"] for p in client.get(BASE, headers=h).json()] == ["p1"]


def test_generated_id_replace_disable_enable_delete(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    pid = client.post(BASE, json=BODY, headers=h).json()["policy_id"]
    assert pid
    r = client.put(f"{BASE}/{pid}", json={**BODY, "threshold": 250}, headers=h)
    assert r.status_code == 200
    assert (r.json()["threshold"], r.json()["version"]) == (250, 2)
    off = client.post(f"{BASE}/{pid}/disable", headers=h).json()
    assert (off["enabled"], off["version"]) == (False, 3)
    on = client.post(f"{BASE}/{pid}/enable", headers=h).json()
    assert (on["enabled"], on["version"]) == (True, 4)
    assert client.delete(f"{BASE}/{pid}", headers=h).status_code == 204
    assert memlog.log["unit.policies"][-1] == (f"acme/{pid}", None)
    assert client.get(f"{BASE}/{pid}", headers=h).status_code == 404
    assert client.delete(f"{BASE}/{pid}", headers=h).status_code == 404


def test_put_creates_under_a_chosen_id_and_post_refuses_duplicates(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme", bots=("bot-1",))
    assert client.put(f"{BASE}/cap", json=BODY, headers=h).status_code == 201
    assert client.post(BASE, json={**BODY, "policy_id": "cap"}, headers=h).status_code == 409


def test_bad_payloads_get_field_level_messages(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1",))
    bad = {**BODY, "threshold": 0, "window_seconds": 30, "metric": "dollars"}
    got = fields(client.post(BASE, json=bad, headers=h))
    assert {"threshold", "window_seconds", "metric"} <= got.keys()
    assert "greater than 0" in got["threshold"]
    long = fields(client.post(BASE, json={**BODY, "window_seconds": 32 * 86_400}, headers=h))
    assert "window_seconds" in long
    email = fields(client.post(BASE, json={**BODY, "alert": {"recipients": ["nope"]}}, headers=h))
    assert "alert.recipients.0" in email


def test_core_rules_name_their_field(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1",))
    no_action = {k: v for k, v in BODY.items() if k not in ("alert", "block")}
    got = fields(client.post(BASE, json=no_action, headers=h))
    assert "at least one action" in got["alert"]
    stray = fields(client.post(BASE, json={**BODY, "scope": "account_total"}, headers=h))
    assert "bot_id" in stray
    category = fields(client.post(BASE, json={**BODY, "category": "text"}, headers=h))
    assert "credits" in category["category"]


def test_bot_scope_needs_one_of_the_accounts_bots(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1",))
    new_account("globex", bots=("their-bot",))
    got = fields(client.post(BASE, json={**BODY, "bot_id": "their-bot"}, headers=h))
    assert "not one of this account's bots" in got["bot_id"]
    missing = fields(client.post(BASE, json={**BODY, "bot_id": None}, headers=h))
    assert "bot_id" in missing


def test_a_bot_in_use_cannot_be_unregistered(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1", "bot-2"))
    client.post(BASE, json={**BODY, "policy_id": "p1"}, headers=h)
    assert client.delete("/v1/accounts/acme/bots/bot-1", headers=h).status_code == 409
    assert client.delete("/v1/accounts/acme/bots/bot-2", headers=h).status_code == 204
    assert [b["bot_id"] for b in client.get("/v1/accounts/acme/bots", headers=h).json()] == [
        "bot-1"
    ]


def test_presets_are_ready_to_post(client: TestClient, new_account: Any) -> None:
    h = new_account("acme", bots=("bot-1",))
    got = client.get("/v1/presets", params={"bot_id": "bot-1"}, headers=h).json()
    assert {p["preset"] for p in got} == {"monthly_ceiling", "hourly_cap", "notify_only"}
    for p in got:
        r = client.post(BASE, json=p["policy"], headers=h)
        assert r.status_code == 201, r.text
    notify = next(p for p in got if p["preset"] == "notify_only")["policy"]
    assert notify["block"] is None and notify["alert"] is not None
    hourly = next(p for p in got if p["preset"] == "hourly_cap")["policy"]
    assert hourly["window_seconds"] == 3600
    bad = client.get("/v1/presets", params={"recipient": "x"}, headers=h)
    assert "recipient" in fields(bad)


def test_a_partial_put_is_refused_and_patch_changes_only_what_it_names(
    client: TestClient, new_account: Any
) -> None:
    """Issue 18 item 2: a PUT without the alert no longer silently drops it."""
    h = new_account("acme", bots=("bot-1",))
    assert client.post(BASE, json={**BODY, "policy_id": "p1"}, headers=h).status_code == 201
    r = client.put(f"{BASE}/p1", json={"metric": "messages", "threshold": 250,
                                       "window_seconds": 3600}, headers=h)  # fmt: skip
    missing = fields(r)
    assert set(missing) == {"name", "scope", "bot_id", "category", "alert", "block", "enabled"}
    assert "PATCH" in r.json()["error"]["message"]
    assert client.get(f"{BASE}/p1", headers=h).json()["version"] == 1
    r = client.patch(f"{BASE}/p1", json={"threshold": 250}, headers=h)
    assert r.status_code == 200, r.text
    p = r.json()
    assert (p["threshold"], p["version"], p["name"], p["bot_id"]) == (250, 2, "hourly", "bot-1")
    assert p["alert"] == {"recipients": ["ops@acme.test"]}
    assert p["block"] == {"duration_seconds": 600}
    r = client.patch(f"{BASE}/p1", json={"block": None}, headers=h)
    assert (r.json()["block"], r.json()["alert"]) == (None, {"recipients": ["ops@acme.test"]})
    # the merged policy is checked like a whole one: no alert and no block is refused
    assert "alert" in fields(client.patch(f"{BASE}/p1", json={"alert": None}, headers=h))
    assert client.patch(f"{BASE}/nope", json={"threshold": 1}, headers=h).status_code == 404


def test_resume_publishes_who_and_when_for_the_processors_and_the_sink(
    client: TestClient, new_account: Any, memlog: Any, admin: dict[str, str]
) -> None:
    """Issue 18 item 5: POST .../bots/{bot}/resume, keyed account/bot on the resumes topic."""
    from capstream.streams.records import BotResumeRecord

    h = new_account("acme", bots=("bot-1",))
    key_id = h["Authorization"].removeprefix("Bearer csk_").split("_")[0]
    r = client.post("/v1/accounts/acme/bots/bot-1/resume", json={"requested_by": "Dana"},
                    headers=h)  # fmt: skip
    assert r.status_code == 202, r.text
    out = r.json()
    key, value = memlog.log["unit.resumes"][-1]
    rec = BotResumeRecord.from_bytes(value)
    assert key == "acme/bot-1"
    assert (rec.account_id, rec.bot_id, rec.resumed_at_ms) == (
        "acme",
        "bot-1",
        out["resumed_at_ms"],
    )
    assert rec.resumed_by == out["resumed_by"] == f"Dana (key:{key_id})"
    # no body: the key is who; the admin key is "admin"
    assert client.post("/v1/accounts/acme/bots/bot-1/resume", headers=h).json()["resumed_by"] == (
        f"key:{key_id}"
    )
    r = client.post("/v1/accounts/acme/bots/bot-1/resume", headers=admin)
    assert r.json()["resumed_by"] == "admin"
    # another tenant's bot: the same 404 as a missing account
    other = new_account("globex")
    assert client.post("/v1/accounts/acme/bots/bot-1/resume", headers=other).status_code == 404
    assert len(memlog.log["unit.resumes"]) == 3


def test_the_answer_says_what_a_new_or_changed_policys_window_counts(
    client: TestClient, new_account: Any
) -> None:
    """Issue 18.8: a policy created at 15:00 with a 1-hour window counts 14:00-15:00 where the
    processors keep a window of the same metric; where not, the answer says so."""
    h = new_account("acme", bots=("bot-1",))
    first = client.post(BASE, json={**BODY, "policy_id": "day", "window_seconds": 86_400},
                        headers=h)  # fmt: skip
    assert first.status_code == 201, first.text
    assert first.json()["window_seeding"]["kind"] == "none"
    assert "not counted" in first.json()["window_seeding"]["message"]
    hourly = client.post(BASE, json={**BODY, "policy_id": "hour"}, headers=h).json()
    seeding = hourly["window_seeding"]
    assert (seeding["kind"], seeding["source_window_seconds"]) == ("wider_buckets", 86_400)
    assert "at once" in seeding["message"]
    same = client.patch(f"{BASE}/hour", json={"threshold": 7}, headers=h).json()
    assert same["window_seeding"]["kind"] == "shared"  # the same window: it keeps its counts
    other_metric = client.put(f"{BASE}/hour", json={**BODY, "metric": "tokens"}, headers=h)
    assert other_metric.json()["window_seeding"]["kind"] == "none"
