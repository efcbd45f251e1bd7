"""A retriable commit failure (the coordinator moving or loading during a broker restart)
does not stop the notifier; a fatal one does, and even then the delivery in flight finishes
instead of being cut off (a cut-off one is uncertain after the restart and never sent)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from capstream.notifier.outcome import DELIVERED, Outcome
from capstream.notifier.sentlog import SentLog
from capstream.notifier.service import Notifier, _commit, sentlog_path
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings


class Consumer:
    def __init__(self, error: KafkaError | None) -> None:
        self.error = error
        self.calls = 0

    def commit(self, *, asynchronous: bool) -> None:
        self.calls += 1
        if self.error is not None:
            raise KafkaException(self.error)


# librdkafka raises these from a commit with its retriable flag unset: the flag alone let
# COORDINATOR_LOAD_IN_PROGRESS stop the notifier right after the chaos run's broker bounce.
@pytest.mark.parametrize(
    "code",
    [
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._TRANSPORT,
        KafkaError._NO_OFFSET,
    ],
)
def test_a_retriable_commit_error_is_left_to_the_next_commit(code: int) -> None:
    consumer = Consumer(KafkaError(code, "Commit failed"))
    _commit(consumer)  # no exception: the notifier goes on
    assert consumer.calls == 1


def test_a_commit_error_flagged_retriable_is_left_to_the_next_commit() -> None:
    _commit(Consumer(KafkaError(KafkaError.UNKNOWN, "odd", retriable=True)))


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._FATAL, "fenced", fatal=True),
        KafkaError(KafkaError.NOT_COORDINATOR, "fatal whatever the code", fatal=True),
        KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED, "Commit failed: not authorized"),
    ],
)
def test_a_fatal_commit_error_still_stops_the_notifier(error: KafkaError) -> None:
    with pytest.raises(KafkaException):
        _commit(Consumer(error))


# -- the whole notifier: a commit fails for good while an alert is being mailed ---------------


def note(nid: str) -> bytes:
    return NotificationRecord(
        notification_id=nid, account_id="acme", kind="policy_alert", policy_id="p",
        recipients=["ops@acme.test"], subject="s", body="b", created_at_ms=int(time.time() * 1000),
    ).to_bytes()  # fmt: skip


class Msg:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value = offset, value

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"acme"

    def value(self) -> bytes:
        return self._value


class BrokerGoesWrong:
    """One alert, then (once its email is being sent) another whose commit fails for good."""

    def __init__(self, sending: threading.Event, failed: threading.Event) -> None:
        self.sending, self.failed = sending, failed
        self.batches = [[Msg(0, note("a" * 32))], [Msg(1, note("b" * 32))]]
        self.commits = 0

    def subscribe(self, topics: list[str]) -> None:
        pass

    def consume(self, n: int, timeout: float) -> list[Msg]:
        if len(self.batches) == 1:
            self.sending.wait(10)  # the first alert's email is on its way
        if self.batches:
            return self.batches.pop(0)
        time.sleep(timeout)
        return []

    def commit(self, *, asynchronous: bool) -> None:
        self.commits += 1
        if self.commits == 2:
            self.failed.set()
            raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))

    def close(self) -> None:
        pass


class Producer:
    def __init__(self, config: dict[str, Any]) -> None:
        pass

    def produce(self, *args: Any, **kwargs: Any) -> None:
        pass

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class NoTenants:
    def __init__(self, settings: Settings, include: tuple[str, ...]) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def tenant(self, account_id: str) -> None:
        return None

    def channels(self, account_id: str) -> list[Any]:
        return []

    def channel(self, account_id: str, channel_id: str) -> None:
        return None


class SlowMail:
    """An SMTP server that takes its time: it answers once the commit has failed."""

    def __init__(self, sending: threading.Event, failed: threading.Event) -> None:
        self.sending, self.failed = sending, failed
        self.sent: list[str] = []

    async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome:
        self.sending.set()
        await asyncio.to_thread(self.failed.wait, 10)
        await asyncio.sleep(0.2)  # still talking to the server when the notifier stops
        self.sent.append(rec.notification_id)
        return DELIVERED


async def test_a_fatal_commit_error_lets_the_email_in_flight_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import confluent_kafka

    import capstream.api.view

    sending, failed = threading.Event(), threading.Event()
    consumer = BrokerGoesWrong(sending, failed)
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda config: consumer)
    monkeypatch.setattr(confluent_kafka, "Producer", Producer)
    monkeypatch.setattr(capstream.api.view, "TopicView", NoTenants)
    mail = SlowMail(sending, failed)
    notifier = Notifier(Settings(data_dir=tmp_path), email=mail)

    with pytest.raises(KafkaException):
        await asyncio.wait_for(notifier.run(asyncio.Event()), 30)

    assert mail.sent == ["a" * 32]
    sentlog = SentLog(sentlog_path(tmp_path))
    try:
        # Sent and recorded as sent: a restart neither calls it uncertain nor loses it. The
        # second alert is in the sent-log too (not committed: its replay is dropped there),
        # due for the restart to send.
        assert sentlog.status("a" * 32, "email") == "sent"
        assert sentlog.status("b" * 32, "email") == "pending"
    finally:
        sentlog.close()


# -- a commit never holds the consumer up --------------------------------------------------------
class HangingCommits:
    """Three alerts in three batches. A synchronous commit never returns (confluent-kafka-python
    #1801; the chaos run's notifier stopped consuming after 7,475 of 32,515 alerts); an
    asynchronous one reports through ``on_commit`` at the next ``consume``."""

    def __init__(self, config: dict[str, Any], report: KafkaError | None = None) -> None:
        self.on_commit = config["on_commit"]
        self.report = report
        self.batches = [[Msg(n, note(f"{n:032x}"))] for n in range(3)]
        self.release = threading.Event()
        self.pending = 0

    def subscribe(self, topics: list[str]) -> None:
        pass

    def consume(self, n: int, timeout: float) -> list[Msg]:
        if self.pending:
            self.pending -= 1
            self.on_commit(self.report, [])
        if self.batches:
            return self.batches.pop(0)
        time.sleep(timeout)
        return []

    def commit(self, *, asynchronous: bool) -> None:
        if not asynchronous:
            self.release.wait()  # until the test ends
        self.pending += 1

    def close(self) -> None:
        pass


def _hanging(monkeypatch: pytest.MonkeyPatch, report: KafkaError | None) -> list[HangingCommits]:
    import confluent_kafka

    import capstream.api.view

    made: list[HangingCommits] = []

    def consumer(config: dict[str, Any]) -> HangingCommits:
        made.append(HangingCommits(config, report))
        return made[-1]

    monkeypatch.setattr(confluent_kafka, "Consumer", consumer)
    monkeypatch.setattr(confluent_kafka, "Producer", Producer)
    monkeypatch.setattr(capstream.api.view, "TopicView", NoTenants)
    return made


class Mail:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome:
        self.sent.append(rec.notification_id)
        return DELIVERED


async def test_a_commit_that_never_returns_does_not_stop_consumption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _hanging(monkeypatch, KafkaError(KafkaError.NOT_COORDINATOR, "moved"))
    mail, stop = Mail(), asyncio.Event()
    notifier = Notifier(Settings(data_dir=tmp_path), email=mail)
    run = asyncio.create_task(notifier.run(stop))
    try:
        for _ in range(100):
            if len(mail.sent) == 3:
                break
            await asyncio.sleep(0.1)
        assert notifier.stats.received == 3  # every batch consumed, every commit answered
        assert sorted(mail.sent) == [f"{n:032x}" for n in range(3)]
    finally:
        stop.set()
        for consumer in made:
            consumer.release.set()
        await asyncio.wait_for(run, 10)


async def test_a_fatal_error_a_commit_reports_later_stops_the_notifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hanging(monkeypatch, KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    notifier = Notifier(Settings(data_dir=tmp_path), email=Mail())
    with pytest.raises(KafkaException):
        await asyncio.wait_for(notifier.run(asyncio.Event()), 30)
    assert notifier.stats.received == 1  # stopped at the first commit's answer
