"""Per-attribute policies (issue 24.3) through the Policy API: create, refuse, patch, read."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
from fastapi.testclient import TestClient

from capstream.streams.codecs import SCHEMA_DIR, Codec, _named_schemas
from capstream.streams.records import PolicyRecord

BASE = "/v1/accounts/acme/policies"
NOW_MS = 1_780_000_000_000  # the unit app's clock
PER_USER = {
    "name": "heavy end users", "metric": "tokens", "threshold": 20_000, "window_seconds": 3600,
    "scope": "account_each_bot", "alert": {"recipients": []},
    "block": {"duration_seconds": 600}, "per": "end_user",
}  # fmt: skip


def _event(at: int, tokens: int, user: str | None, bot: str = "b1") -> dict[str, Any]:
    return {"account_id": "acme", "bot_id": bot, "occurred_at_ms": at, "category": "text",
            "model": "gpt-4o", "tokens_in": tokens, "tokens_out": 0, "messages": 1,
            "conversation_started": 0, "credits_micro": 0,
            "attributes": {"end_user": user} if user else {}}  # fmt: skip


def test_a_per_end_user_policy_is_created_and_published_with_its_attribute(
    client: TestClient, new_account: Any, memlog: Any
) -> None:
    h = new_account("acme")
    r = client.post(BASE, json={**PER_USER, "policy_id": "pu"}, headers=h)
    assert r.status_code == 201, r.text
    assert (r.json()["per"], r.json()["per_value"]) == ("end_user", None)
    # no window of the bot can seed one end user's: each counts from its first usage
    assert r.json()["window_seeding"]["kind"] == "none"
    assert "counts each end_user from its first usage" in r.json()["window_seeding"]["message"]
    rec = PolicyRecord.from_bytes(memlog.log["unit.policies"][-1][1])
    assert (rec.per, rec.per_value) == ("end_user", None)
    one = {**PER_USER, "policy_id": "pm", "per": "model", "per_value": "gpt-4o"}
    r = client.post(BASE, json=one, headers=h)
    assert r.status_code == 201, r.text
    assert client.get(f"{BASE}/pm", headers=h).json()["per_value"] == "gpt-4o"


def test_bad_per_attribute_policies_are_refused_naming_the_field(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme")
    for bad in ("country", "End_User", 1, True, ""):
        r = client.post(BASE, json={**PER_USER, "per": bad}, headers=h)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["fields"][0]["field"].endswith("per")
    cases = [
        ({"per": None, "per_value": "gpt-4o"}, "per_value", "needs per"),
        ({"per_value": ""}, "per_value", ""),
        ({"alert": None}, "alert", "add an alert action"),
        ({"window_seconds": None, "period": "day"}, "per", "rolling window"),
    ]
    for change, field, words in cases:
        r = client.post(BASE, json={**PER_USER, **change}, headers=h)
        assert r.status_code == 422, (change, r.text)
        err = r.json()["error"]
        assert err["fields"][0]["field"].endswith(field), (change, err)
        assert words in err["message"] or words in json.dumps(err), (change, err)


def test_patch_sets_and_clears_the_attribute_and_put_without_it_counts_the_whole_bot(
    client: TestClient, new_account: Any
) -> None:
    h = new_account("acme")
    whole = {k: v for k, v in PER_USER.items() if k != "per"}
    assert client.post(BASE, json={**whole, "policy_id": "p"}, headers=h).status_code == 201
    r = client.patch(f"{BASE}/p", json={"per": "team", "per_value": "red"}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["per"], r.json()["per_value"]) == ("team", "red")
    r = client.patch(f"{BASE}/p", json={"threshold": 5}, headers=h)  # stays per team
    assert (r.json()["per"], r.json()["threshold"]) == ("team", 5)
    r = client.patch(f"{BASE}/p", json={"per": None}, headers=h)  # its per_value goes too
    assert r.status_code == 200, r.text
    assert (r.json()["per"], r.json()["per_value"]) == (None, None)
    client.patch(f"{BASE}/p", json={"per": "api_key"}, headers=h)
    put = {**whole, "bot_id": None, "category": None, "enabled": True}
    r = client.put(f"{BASE}/p", json=put, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["per"] is None


def test_usage_of_a_per_user_policy_is_its_busiest_end_users(
    client: TestClient, new_account: Any, clickhouse: Any
) -> None:
    h = new_account("acme")
    client.post(BASE, json={**PER_USER, "policy_id": "pu"}, headers=h)
    clickhouse.events += [
        _event(NOW_MS - 60_000, 15_000, "alice"),
        _event(NOW_MS - 50_000, 8_000, "alice"),
        _event(NOW_MS - 40_000, 19_000, "bob"),
        _event(NOW_MS - 30_000, 90_000, None),  # no end user: not counted
    ]
    (p,) = client.get("/v1/accounts/acme/usage", headers=h).json()["policies"]
    assert (p["per"], p["busiest_value"], p["used"], p["breached"]) == (
        "end_user", "alice", 23_000, True,
    )  # fmt: skip


def test_policy_records_written_before_the_per_field_still_read() -> None:
    old_schema = json.loads((SCHEMA_DIR / "history" / "Policy.3.avsc").read_text())
    assert "per" not in {f["name"] for f in old_schema["fields"]}
    fp = Codec("Policy").register_writer(old_schema)
    _, named = _named_schemas()
    parsed = fastavro.parse_schema(old_schema, named_schemas=dict(named))
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + fp)
    fastavro.schemaless_writer(buf, parsed, {
        "policy_id": "p", "account_id": "acme", "name": "n", "metric": "tokens",
        "threshold": 10, "window_seconds": 3600, "scope": "account_total", "bot_id": None,
        "category": None, "alert": None, "block": {"duration_seconds": 60}, "enabled": True,
        "version": 1, "updated_at_ms": 5, "warn_percents": [50], "period": None,
    })  # fmt: skip
    rec = PolicyRecord.from_bytes(buf.getvalue())
    assert (rec.per, rec.per_value) == (None, None)
    new = rec.model_copy(update={"per": "end_user", "per_value": "u1"})
    assert PolicyRecord.from_bytes(new.to_bytes()).per_value == "u1"


def test_the_openapi_schema_documents_per_and_per_value(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    for body in ("NewPolicyBody", "PolicyPatchBody", "PolicyReplaceBody"):
        props = spec[body]["properties"]
        assert {"end_user", "api_key", "team", "model"} <= set(_enum_values(props["per"]))
        assert "per_value" in props
        assert "end user" in json.dumps(spec[body]).lower()


def _enum_values(node: Any) -> list[str]:
    if isinstance(node, dict):
        return list(node.get("enum", [])) + [v for x in node.values() for v in _enum_values(x)]
    if isinstance(node, list):
        return [v for x in node for v in _enum_values(x)]
    return []
