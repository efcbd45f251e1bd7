"""Per-tenant channels on the real broker: the notifier reads the channels topic, sends each
tenant's notifications to that tenant's webhook only, retries a failing endpoint and
publishes every attempt to the deliveries topic."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka import Consumer
from test_notifier import Running, publish, wait_until

from capstream.notifier.secretbox import channel_key, seal
from capstream.notifier.webhook import SIGNATURE_HEADER, verify
from capstream.streams.records import ChannelRecord, DeliveryAttemptRecord, NotificationRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

NOW = int(time.time() * 1000)


class Endpoints:
    """Webhook receivers by path; ``/acme`` answers 503 to its first two requests."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen = outer.got.setdefault(self.path, [])
                seen.append((dict(self.headers), body))
                self.send_response(503 if self.path == "/acme" and len(seen) <= 2 else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    e = Endpoints()
    yield e
    e.close()


def note(nid: str, account: str) -> NotificationRecord:
    return NotificationRecord(
        notification_id=nid, account_id=account, kind="cap_warning",
        subject=f"warning for {account}", body="80%", created_at_ms=NOW,
    )  # fmt: skip


def attempts(settings: Settings, want: int) -> list[DeliveryAttemptRecord]:
    c = Consumer({**settings.librdkafka_config(), "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    c.subscribe([Topics(settings.topic_prefix).deliveries])
    out: list[DeliveryAttemptRecord] = []
    deadline = time.monotonic() + 30
    try:
        while len(out) < want and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(DeliveryAttemptRecord.from_bytes(msg.value()))
    finally:
        c.close()
    return out


async def test_each_tenant_gets_only_its_own_events_and_every_attempt_is_logged(
    topics: Settings, endpoints: Endpoints
) -> None:
    settings = topics.model_copy(update={"notify_max_backoff_s": 0.5})
    key = channel_key(settings)
    t = Topics(settings.topic_prefix)
    secrets = {"acme": "whsec_acme_0123456789abcd", "zeta": "whsec_zeta_0123456789abcd"}
    for account, secret in secrets.items():
        ch = ChannelRecord(account_id=account, channel_id="hook", type="webhook",
                           url=f"{endpoints.base}/{account}", secret_box=seal(key, secret),
                           secret_hint=secret[-4:])  # fmt: skip
        publish(settings, t.channels, f"{account}/hook", ch.to_bytes())
    running = Running(settings)
    await asyncio.sleep(0.5)
    for nid, account in (("a1", "acme"), ("z1", "zeta"), ("z2", "zeta")):
        publish(settings, t.notifications, nid, note(nid, account).to_bytes())
    await wait_until(lambda: running.stats.delivered == 3, 60)
    await asyncio.sleep(0.5)
    await running.stop()

    ids = {
        p: sorted(h["X-Capstream-Notification-Id"] for h, _ in got)
        for p, got in endpoints.got.items()
    }
    assert ids == {"/acme": ["a1", "a1", "a1"], "/zeta": ["z1", "z2"]}  # acme: 503, 503, 200
    for path, got in endpoints.got.items():
        account = path.strip("/")
        for headers, body in got:
            assert verify(secrets[account].encode(), headers[SIGNATURE_HEADER], body)
            other = secrets["zeta" if account == "acme" else "acme"]
            assert not verify(other.encode(), headers[SIGNATURE_HEADER], body)
    log = attempts(settings, 5)
    acme = [(a.attempt, a.outcome, a.status_code) for a in log if a.account_id == "acme"]
    assert acme == [(1, "retry", 503), (2, "retry", 503), (3, "delivered", 200)]
    assert sorted(a.notification_id for a in log if a.account_id == "zeta") == ["z1", "z2"]
