"""Keys and tenancy: 401 without a valid key, 403 for admin routes, 404 across tenants."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from capstream.api.keys import hash_secret, load_admin_key, verify_secret
from capstream.errors import ConfigError


def test_missing_and_unknown_keys_get_401_json(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    r = client.get("/v1/presets")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert "Bearer" in r.json()["error"]["message"]
    bad = client.get("/v1/presets", headers={"Authorization": "Bearer csk_abc_nope"})
    assert bad.status_code == 401


def test_account_key_cannot_use_admin_routes(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    a = new_account("acme")
    r = client.get("/v1/accounts", headers=a)
    assert r.status_code == 403
    assert "admin key" in r.json()["error"]["message"]
    body = {"account_id": "evil", "owner_email": "x@evil.test"}
    assert client.post("/v1/accounts", json=body, headers=a).status_code == 403


def test_other_tenant_looks_exactly_like_a_missing_account(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    a = new_account("acme")
    new_account("globex")
    theirs = client.get("/v1/accounts/globex/policies", headers=a)
    missing = client.get("/v1/accounts/nosuch/policies", headers=a)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"


def test_revoked_key_stops_working_and_a_new_key_works(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    a = new_account("acme")
    minted = client.post("/v1/accounts/acme/keys", headers=a).json()
    b = {"Authorization": f"Bearer {minted['api_key']}"}
    assert client.get("/v1/accounts/acme", headers=b).status_code == 200
    assert client.delete(f"/v1/accounts/acme/keys/{minted['key_id']}", headers=a).status_code == 204
    assert client.get("/v1/accounts/acme", headers=b).status_code == 401
    assert client.get("/v1/accounts/acme", headers=a).status_code == 200


def test_keys_are_stored_hashed(client: TestClient, tmp_path: Path, admin: dict[str, str]) -> None:
    r = client.post(
        "/v1/accounts",
        json={"account_id": "acme", "owner_email": "o@acme.test"},
        headers=admin,
    )
    secret = r.json()["api_key"].split("_", 2)[2]
    raw = (tmp_path / "accounts.sqlite3").read_bytes()
    assert secret.encode() not in raw
    assert r.json()["api_key"] not in client.get("/v1/accounts/acme", headers=admin).text


def test_duplicate_account_is_a_conflict(
    client: TestClient, new_account: Any, admin: dict[str, str]
) -> None:
    new_account("acme")
    body = {"account_id": "acme", "owner_email": "o@acme.test"}
    assert client.post("/v1/accounts", json=body, headers=admin).status_code == 409


def test_salted_hashes_differ_and_verify() -> None:
    h1, h2 = hash_secret("s3cret"), hash_secret("s3cret")
    assert h1 != h2
    assert verify_secret("s3cret", h1)
    assert not verify_secret("s3creT", h1)
    assert not verify_secret("s3cret", "garbage")


def test_generated_admin_key_is_shown_once_and_stored_0600(tmp_path: Path) -> None:
    first = load_admin_key(None, tmp_path)
    assert first.shown_once is not None
    assert first.matches(first.shown_once)
    path = tmp_path / "api" / "admin_key.sha256"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.shown_once not in path.read_text()
    again = load_admin_key(None, tmp_path)
    assert again.shown_once is None
    assert again.matches(first.shown_once)
    assert not again.matches("csa_" + "x" * 40)


def test_configured_admin_key_must_look_like_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="csa_"):
        load_admin_key("short", tmp_path)
    key = "csa_" + "k" * 30
    assert load_admin_key(key, tmp_path).matches(key)
    assert not (tmp_path / "api").exists()


def test_account_creation_is_undone_when_kafka_is_down(
    client: TestClient, memlog: Any, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from capstream.api.errors import UnavailableError

    async def down(topic: str, key: str, value: bytes | None) -> Any:
        raise UnavailableError("could not write to Kafka topic unit.tenants: timed out")

    body = {"account_id": "acme", "owner_email": "o@acme.test"}
    with monkeypatch.context() as m:
        m.setattr(memlog, "publish", down)
        r = client.post("/v1/accounts", json=body, headers=admin)
    assert r.status_code == 503
    assert "retry" in r.json()["error"]["message"] or "Kafka" in r.json()["error"]["message"]
    assert client.get("/v1/accounts", headers=admin).json() == []
    assert client.post("/v1/accounts", json=body, headers=admin).status_code == 201
