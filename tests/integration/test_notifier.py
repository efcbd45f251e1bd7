"""The notifier on the real broker with a real SMTP server (aiosmtpd): each alert once."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from confluent_kafka import Consumer, Producer

from capstream.core.models import AlertAction, Policy, TenantSettings
from capstream.core.notifications import policy_alert
from capstream.notifier.service import Notifier
from capstream.streams.records import DeadLetterRecord, NotificationRecord, TenantSettingsRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

NOW = int(time.time() * 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.rcpts: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        self.rcpts.append(list(envelope.rcpt_tos))
        return "250 OK"


class Smtp:
    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._c: Controller | None = None

    def up(self) -> None:
        self._c = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._c.start()

    def down(self) -> None:
        if self._c is not None:
            self._c.stop()
            self._c = None


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    s = Smtp()
    yield s
    s.down()


def alert() -> NotificationRecord:
    """The alert the processors publish for a breached window (built by the core)."""
    policy = Policy("p-hourly", "acme", "Hourly messages", "messages", 100, 3600, "bot", "bot-1",
                    AlertAction(()), None)  # fmt: skip
    n = policy_alert(policy, "bot-1", 140, NOW - 600_000, NOW,
                     TenantSettings("acme", owner_email="owner@acme.test"), None)  # fmt: skip
    return NotificationRecord(
        notification_id=n.notification_id, account_id=n.account_id, kind=n.kind,
        policy_id=n.policy_id, recipients=list(n.recipients), subject=n.subject, body=n.body,
        created_at_ms=n.created_at_ms, window_start_ms=n.window_start_ms,
    )  # fmt: skip


def publish(settings: Settings, topic: str, key: str, value: bytes) -> None:
    p = Producer(settings.librdkafka_config())
    p.produce(topic, key=key.encode(), value=value)
    assert p.flush(10) == 0


async def wait_until(cond: Callable[[], bool], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


class Running:
    """A notifier running in the test's loop; ``stop()`` shuts it down cleanly."""

    def __init__(self, settings: Settings) -> None:
        self.notifier = Notifier(settings, base_backoff_s=0.2)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.notifier.run(self._stop))

    @property
    def stats(self) -> Any:
        return self.notifier.stats

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 30)


def configured(topics: Settings, smtp: Smtp) -> Settings:
    return topics.model_copy(update={"smtp_port": smtp.port, "notify_max_backoff_s": 0.5})


async def test_alert_arrives_once_across_a_duplicate_and_a_restart(
    topics: Settings, smtp: Smtp
) -> None:
    smtp.up()
    settings = configured(topics, smtp)
    n = alert()
    topic = Topics(settings.topic_prefix).notifications
    first = Running(settings)
    publish(settings, topic, n.notification_id, n.to_bytes())
    await wait_until(lambda: len(smtp.inbox.messages) == 1)
    await first.stop()

    publish(settings, topic, n.notification_id, n.to_bytes())  # the same alert again
    second = Running(settings)
    await wait_until(lambda: second.stats.duplicates == 1)
    await asyncio.sleep(0.5)
    await second.stop()
    assert len(smtp.inbox.messages) == 1
    msg = smtp.inbox.messages[0]
    assert msg["Subject"] == n.subject
    assert "140 in the last 1 hour" in msg.get_payload()
    assert smtp.inbox.rcpts == [["owner@acme.test"]]
    assert second.stats.delivered == 0


async def test_smtp_down_then_up_delivers_once(topics: Settings, smtp: Smtp) -> None:
    settings = configured(topics, smtp)  # nothing listens on the SMTP port yet
    n = alert()
    running = Running(settings)
    publish(settings, Topics(settings.topic_prefix).notifications, n.notification_id, n.to_bytes())
    await wait_until(lambda: running.stats.retries >= 2)
    assert smtp.inbox.messages == []
    smtp.up()
    await wait_until(lambda: running.stats.delivered == 1)
    await asyncio.sleep(1.0)  # past the longest backoff: nothing more is sent
    await running.stop()
    assert len(smtp.inbox.messages) == 1
    assert running.stats.dead_lettered == 0


async def test_owner_from_the_tenants_topic_and_bad_records_dead_lettered(
    topics: Settings, smtp: Smtp
) -> None:
    smtp.up()
    settings = configured(topics, smtp)
    t = Topics(settings.topic_prefix)
    tenant = TenantSettingsRecord(account_id="acme", owner_email="boss@acme.test")
    publish(settings, t.tenants, "acme", tenant.to_bytes())
    n = alert().model_copy(update={"recipients": [], "notification_id": "n-owner"})
    running = Running(settings)
    publish(settings, t.notifications, "junk", b"\x00not avro")
    publish(settings, t.notifications, n.notification_id, n.to_bytes())
    # The two keys may sit on different partitions: either record may be read first.
    await wait_until(lambda: running.stats.delivered == 1 and running.stats.undecodable == 1)
    await running.stop()
    assert smtp.inbox.rcpts == [["boss@acme.test"]]
    assert running.stats.undecodable == 1
    c = Consumer({**settings.librdkafka_config(), "group.id": f"g-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest"})  # fmt: skip
    c.subscribe([Topics.dlq(t.notifications)])
    try:
        msg = None
        for _ in range(40):
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        dead = DeadLetterRecord.from_bytes(msg.value())
    finally:
        c.close()
    assert (dead.source_topic, dead.raw_value) == (t.notifications, b"\x00not avro")
    assert dead.reason
