"""Schemathesis against the OpenAPI schema on a real server (uvicorn, Kafka, chDB): no 5xx,
and every 4xx carries the documented JSON error."""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.streams.local_kafka import free_port
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics

ADMIN = "csa_" + "schemathesis-admin-key-" * 2
AUTH = {"Authorization": f"Bearer {ADMIN}"}
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API under uvicorn on a free port, with one account "acme" (bot "bot-1")."""
    import httpx
    import uvicorn

    from capstream.sinks.migrations import migrate
    from capstream.sinks.store import open_client

    root = Path(tmp_path_factory.mktemp("schemathesis"))
    st = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}",
                  data_dir=root)  # fmt: skip
    create_topics(st)
    ch = open_client(st)
    migrate(ch)
    lock = threading.Lock()

    def query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with lock:
            res = ch.query(sql, parameters=params)
        return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]

    port = free_port()
    app = create_app(st, admin=AdminKey(hash_secret(ADMIN)), query=query)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    body = {"account_id": "acme", "owner_email": "o@acme.test", "plan": "pro"}
    assert httpx.post(f"{url}/v1/accounts", json=body, headers=AUTH).status_code == 201
    assert httpx.put(f"{url}/v1/accounts/acme/bots/bot-1", json={}, headers=AUTH).is_success
    try:
        yield url
    finally:
        srv.should_exit = True
        thread.join(30)
        ch.close()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, server: str) -> None:
    params = case.path_parameters or {}
    # Half the cases aim at the real account (and its bot), so bodies reach validation and
    # Kafka instead of stopping at 404.
    if "account_id" in params and zlib.crc32(repr(case.body).encode()) % 2 == 0:
        params["account_id"] = "acme"
        if "bot_id" in params:
            params["bot_id"] = "bot-1"
    response = case.call(base_url=server, headers=AUTH)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert error["code"] and error["message"]
