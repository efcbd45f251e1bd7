"""The dispatcher against a real SMTP server: once per id, retries, expiry, dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from capstream.notifier.dispatcher import Dispatcher
from capstream.notifier.email import SmtpSender
from capstream.notifier.outcome import Outcome, backoff_s
from capstream.notifier.sentlog import SentLog
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings

T0 = 1_780_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def note(nid: str = "n1", recipients: tuple[str, ...] = ("ops@acme.test",)) -> NotificationRecord:
    return NotificationRecord(
        notification_id=nid, account_id="acme", kind="policy_alert", policy_id="p1",
        recipients=list(recipients), subject="Policy crossed", body="tokens: 1200 > 1000",
        created_at_ms=T0,
    )  # fmt: skip


def enqueue(log: SentLog, rec: NotificationRecord, expires_in_ms: int = 3_600_000) -> bool:
    return log.enqueue(
        rec.notification_id, rec.account_id, ("email",), rec.to_bytes(), T0 + expires_in_ms,
        (0, 7), T0,
    )  # fmt: skip


def smtp(port: int) -> SmtpSender:
    return SmtpSender(Settings(smtp_port=port, smtp_timeout_s=2.0))


async def test_delivers_once_even_if_enqueued_twice(tmp_path: Path, smtp_server: Any) -> None:
    log = SentLog(tmp_path / "sent.sqlite3")
    clock = Clock()
    d = Dispatcher(log, smtp(smtp_server.port), clock=clock)
    assert enqueue(log, note())
    assert not enqueue(log, note())  # a duplicate in the topic
    assert await d.run_once() == 1
    assert await d.run_once() == 0
    assert len(smtp_server.inbox.messages) == 1
    msg = smtp_server.inbox.messages[0]
    assert msg["Subject"] == "Policy crossed"
    assert msg["Message-ID"] == "<n1@capstream>"
    assert smtp_server.inbox.envelopes[0][1] == ["ops@acme.test"]
    assert log.status("n1", "email") == "sent"
    reopened = SentLog(tmp_path / "sent.sqlite3")  # a restart: the sent-log remembers
    assert not enqueue(reopened, note())
    assert d.stats.delivered == 1


async def test_owner_is_the_recipient_when_none_is_named(tmp_path: Path, smtp_server: Any) -> None:
    log = SentLog(tmp_path / "sent.sqlite3")
    d = Dispatcher(
        log, smtp(smtp_server.port), owner_email=lambda a: f"boss@{a}.test", clock=Clock()
    )
    enqueue(log, note(recipients=()))
    await d.run_once()
    assert smtp_server.inbox.envelopes == [("capstream@localhost", ["boss@acme.test"])]


async def test_smtp_down_then_up_is_delivered_once(tmp_path: Path, smtp_server: Any) -> None:
    log = SentLog(tmp_path / "sent.sqlite3")
    clock = Clock()
    dead: list[str] = []
    port = smtp_server.port
    smtp_server.stop()
    d = Dispatcher(
        log, smtp(port), clock=clock, dead_letter=lambda dl, r, e: dead.append(r), max_backoff_s=30
    )
    enqueue(log, note())
    await d.run_once()
    assert d.stats.retries == 1
    assert log.status("n1", "email") == "pending"
    assert await d.run_once() == 0  # not due yet: backing off
    smtp_server.start()
    clock.ms += 60_000
    assert await d.run_once() == 1
    clock.ms += 60_000
    await d.run_once()
    assert len(smtp_server.inbox.messages) == 1
    assert (d.stats.delivered, dead) == (1, [])


async def test_permanent_refusal_is_dead_lettered_not_retried(
    tmp_path: Path, smtp_server: Any
) -> None:
    log = SentLog(tmp_path / "sent.sqlite3")
    dead: list[tuple[str, str]] = []
    d = Dispatcher(
        log, smtp(smtp_server.port), clock=Clock(), dead_letter=lambda dl, r, e: dead.append((r, e))
    )
    smtp_server.inbox.reply = "554 no thanks"
    enqueue(log, note())
    await d.run_once()
    assert log.status("n1", "email") == "failed"
    assert dead and dead[0][0] == "failed" and "554" in dead[0][1]
    assert d.stats.failed == 1


async def test_retries_stop_at_expiry(tmp_path: Path) -> None:
    class Down:
        async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome:
            return Outcome("retry", "down")

    log = SentLog(tmp_path / "sent.sqlite3")
    clock = Clock()
    dead: list[str] = []
    d = Dispatcher(log, Down(), clock=clock, dead_letter=lambda dl, r, e: dead.append(r),
                   max_backoff_s=60)  # fmt: skip
    enqueue(log, note(), expires_in_ms=10 * 60_000)
    for _ in range(40):
        await d.run_once()
        clock.ms += 61_000
    assert log.status("n1", "email") == "expired"
    assert dead == ["expired"]
    assert d.stats.retries >= 5


async def test_a_crash_while_sending_is_never_resent(tmp_path: Path, smtp_server: Any) -> None:
    path = tmp_path / "sent.sqlite3"
    log = SentLog(path)
    enqueue(log, note())
    (claimed,) = log.due(T0)
    assert log.mark_sending(claimed, T0)  # ... and the process dies here
    log.close()
    dead: list[str] = []
    d = Dispatcher(
        SentLog(path),
        smtp(smtp_server.port),
        clock=Clock(),
        dead_letter=lambda dl, r, e: dead.append(r),
    )
    d.recover()
    await d.run_once()
    assert smtp_server.inbox.messages == []
    assert dead == ["uncertain"]
    assert d.stats.uncertain == 1


@pytest.mark.parametrize("attempts", [1, 2, 5, 20])
def test_backoff_grows_and_is_capped(attempts: int) -> None:
    b = backoff_s(attempts, max_s=30.0)
    assert 0.8 * min(30.0, 2 ** (attempts - 1)) <= b <= 30.0
