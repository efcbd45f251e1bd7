"""``capstream notifier``: consume the notifications topic into the sent-log and deliver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from capstream.errors import CapstreamError, DecodeError
from capstream.notifier.channels import ChannelDirectory, ChannelSender, route
from capstream.notifier.dispatcher import Dispatcher, EmailPort, NotifierStats, WebhookPort
from capstream.notifier.email import SmtpSender
from capstream.notifier.metrics import NotifierCollector, serve_metrics
from capstream.notifier.secretbox import channel_key
from capstream.notifier.sentlog import Delivery, SentLog
from capstream.notifier.webhook import WebhookSender
from capstream.streams.records import DeadLetterRecord, DeliveryAttemptRecord, NotificationRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)


def sentlog_path(data_dir: Path) -> Path:
    """The notifier's sent-log (SQLite) under the data dir."""
    return data_dir / "notifier" / "sent.sqlite3"


STOP_GRACE_S = 30.0
"""How long a stopping notifier waits for the delivery in flight (then it is cancelled,
and the restart dead-letters it as uncertain)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class NotifierError(CapstreamError):
    """The notifier cannot go on without losing something (``capstream notifier`` exits 1)."""


class Notifier:
    """One notifier process: Kafka → sent-log (then commit) → SMTP / webhook, each id once.

    A record is committed only after its deliveries are on disk in the sent-log, so none is
    lost; a repeat of a known ``notification_id`` (a duplicate in the topic, a replay after a
    restart) is dropped there, so none is sent twice.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        email: EmailPort | None = None,
        webhook: WebhookPort | None = None,
        base_backoff_s: float = 1.0,
        stats_every_s: float = 60.0,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.stats = NotifierStats()
        self._email = email or SmtpSender(settings)
        self._webhook = webhook
        self._base_backoff_s = base_backoff_s
        self._stats_every_s = stats_every_s
        self._wake = asyncio.Event()
        self._producer: Any = None
        self._sentlog: SentLog | None = None
        self._directory: ChannelDirectory | None = None
        self._undelivered: list[str] = []
        self._commit_failure: BaseException | None = None

    def delivery_counts(self) -> dict[str, int]:
        """The sent-log's deliveries by status (empty while the notifier is not running);
        safe to call from another thread (the metrics endpoint's)."""
        sentlog = self._sentlog
        if sentlog is None:
            return {}
        try:
            return sentlog.counts()
        except sqlite3.ProgrammingError:  # closed meanwhile
            return {}

    def _defaults(self) -> tuple[str, ...]:
        """Where a notification goes when its tenant routed its kind nowhere."""
        has_webhook = self._webhook is not None or self.settings.webhook_url
        return ("email", "webhook") if has_webhook else ("email",)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop cleanly (offsets of applied records committed)."""
        from confluent_kafka import Consumer, Producer

        from capstream.api.view import TopicView

        s = self.settings
        tenants = TopicView(s, include=("tenants", "channels"))
        await asyncio.to_thread(tenants.start)
        self._directory = tenants
        self._producer = Producer({**s.librdkafka_config(), "acks": "all",
                                   "enable.idempotence": True, "log_level": 3})  # fmt: skip
        consumer: Any = Consumer({
            **s.librdkafka_config(),
            "group.id": f"{s.topic_prefix}.notifier",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "log_level": 3,
            "on_commit": self._committed,
        })  # fmt: skip
        consumer.subscribe([self.topics.notifications])
        sentlog = self._sentlog = SentLog(sentlog_path(s.data_dir))
        http = httpx.AsyncClient(timeout=10.0)
        webhook = self._webhook
        if webhook is None and s.webhook_url:
            secret = s.webhook_secret.get_secret_value().encode() if s.webhook_secret else None
            webhook = WebhookSender(s.webhook_url, secret, http)
        channels = ChannelSender(tenants, channel_key(s), http, self._email)
        dispatcher = Dispatcher(
            sentlog,
            self._email,
            webhook=webhook,
            owner_email=lambda a: (t.owner_email or None) if (t := tenants.tenant(a)) else None,
            dead_letter=self._dead_letter,
            stats=self.stats,
            max_backoff_s=s.notify_max_backoff_s,
            base_backoff_s=self._base_backoff_s,
            channels=channels,
            on_attempt=self._attempted,
        )
        dispatcher.recover()
        log.info(
            "notifier: consuming %s; SMTP %s:%d (tls=%s); webhook %s; sent-log %s",
            self.topics.notifications, s.smtp_host, s.smtp_port, s.smtp_tls,
            "on" if webhook is not None else "off", sentlog_path(s.data_dir),
        )  # fmt: skip
        deliver = asyncio.create_task(self._deliver(dispatcher, sentlog, stop))
        tasks = [
            asyncio.create_task(self._consume(consumer, sentlog, stop)),
            deliver,
            asyncio.create_task(self._report(stop)),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            # Stopping for an error too: the delivery in flight finishes first. Cancelled
            # mid-send, its row stayed ``sending`` and the restart could only call it
            # uncertain and not send it (an alert lost in the chaos run's broker bounce).
            stop.set()
            self._wake.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(deliver), STOP_GRACE_S)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(consumer.close)
            await asyncio.to_thread(self._producer.flush, 10)
            tenants.stop()
            self._sentlog = None
            sentlog.close()
            await http.aclose()
            log.info("notifier stopped: %s", self.stats.as_dict())

    async def _consume(self, consumer: Any, sentlog: SentLog, stop: asyncio.Event) -> None:
        while not stop.is_set():
            msgs = await asyncio.to_thread(consumer.consume, 200, 0.2)
            if self._commit_failure is not None:  # reported by a commit's callback
                raise self._commit_failure
            if not msgs:
                continue
            for msg in msgs:
                if msg.error() is not None:
                    log.warning("notifications consumer: %s", msg.error().str())
                    continue
                try:
                    self._accept(sentlog, msg)
                except Exception as exc:  # one bad record must not stop the notifier
                    self.stats.poison += 1
                    self.stats.dead_lettered += 1
                    log.exception("notification at %d@%d: dead-lettered as processing_error",
                                  msg.partition(), msg.offset())  # fmt: skip
                    self._produce_dead(
                        msg.partition(), msg.offset(), "processing_error",
                        f"{type(exc).__name__}: {exc}", msg.key(), msg.value(),
                    )  # fmt: skip
            # Everything consumed is in the sent-log (or the DLQ) on disk: now commit, but
            # never past a dead letter the broker did not take.
            left = await asyncio.to_thread(self._producer.flush, 30)
            if left or self._undelivered:
                raise NotifierError(
                    f"{left + len(self._undelivered)} dead letter(s) not acknowledged by the "
                    f"broker ({'; '.join(self._undelivered[:3])}); offsets not committed"
                )
            _commit(consumer)  # asynchronous: returns at once
            self._wake.set()

    def _accept(self, sentlog: SentLog, msg: Any) -> None:
        raw = msg.value()
        try:
            rec = NotificationRecord.from_bytes(raw)
        except DecodeError as exc:
            self.stats.undecodable += 1
            self.stats.dead_lettered += 1
            self._produce_dead(msg.partition(), msg.offset(), exc.reason, str(exc), msg.key(), raw)
            return
        self.stats.received += 1
        expires = rec.created_at_ms + self.settings.notify_expire_s * 1000
        channels = route(rec, self._directory, self._defaults())
        if not channels:
            log.warning("notification %s names a channel its account does not have: dropped",
                        rec.notification_id)  # fmt: skip
            return
        added = sentlog.enqueue(
            rec.notification_id, rec.account_id, channels, raw, expires,
            (msg.partition(), msg.offset()), _now_ms(), rec.previous_ids,
        )  # fmt: skip
        if not added:
            self.stats.duplicates += 1

    async def _deliver(self, dispatcher: Dispatcher, sentlog: SentLog, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            await dispatcher.run_once(stop=stop.is_set)
            nxt = sentlog.next_due_ms()
            wait_s = 1.0 if nxt is None else max(0.0, min(1.0, (nxt - _now_ms()) / 1000))
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._stats_every_s)
            except TimeoutError:
                log.info("notifier: %s", self.stats.as_dict())

    def _attempted(self, attempt: DeliveryAttemptRecord) -> None:
        """Publish an attempt to a tenant's channel to the delivery log topic."""
        key = f"{attempt.account_id}/{attempt.channel_id}".encode()
        self._producer.produce(self.topics.deliveries, key=key, value=attempt.to_bytes())
        self._producer.poll(0)

    def _committed(self, err: Any, _partitions: Any) -> None:
        """The result of an asynchronous commit (called from ``consume``, see :func:`_commit`)."""
        from confluent_kafka import KafkaException

        if err is not None and not _passing(err):
            self._commit_failure = KafkaException(err)
        elif err is not None:
            log.warning("notifications consumer: commit failed (%s); retried later", err.str())

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._undelivered.append(str(err))

    def _dead_letter(self, d: Delivery, reason: str, error: str) -> None:
        key = f"{d.notification_id}/{d.channel}".encode()
        self._produce_dead(d.source_partition, d.source_offset, reason, error, key, d.payload)

    def _produce_dead(
        self, partition: int, offset: int, reason: str, error: str, key: bytes | None,
        raw: bytes | None,
    ) -> None:  # fmt: skip
        rec = DeadLetterRecord.fitted(
            source_topic=self.topics.notifications,
            partition=partition,
            offset=offset,
            reason=reason,
            error=error,
            raw_key=key,
            raw_value=raw,
            at_ms=_now_ms(),
        )
        self._producer.produce(Topics.dlq(self.topics.notifications), key=rec.raw_key,
                               value=rec.to_bytes(), on_delivery=self._delivered)  # fmt: skip
        self._producer.poll(0)


def _commit(consumer: Any) -> None:
    """Commit the consumed offsets, without waiting for the broker's answer.

    Asynchronous: a synchronous commit could hang the notifier for good (the chaos run at
    load: consumption stopped for good a minute in, 7,475 of 32,515 alerts received while
    deliveries went on, which fits a commit that never returned; confluent-kafka-python issue
    #1801 reports such hangs). The answer comes to :meth:`Notifier._committed` from the next
    ``consume``. A retriable error (the group's coordinator moving or loading, the broker
    restarting, a rebalance) is logged and left to the next commit, which covers these
    offsets too: they are in the sent-log already, and a replay of them is dropped there.
    Stopping there interrupted deliveries in flight (found by the chaos run's broker bounce:
    ``NOT_COORDINATOR``, then ``COORDINATOR_LOAD_IN_PROGRESS``, which librdkafka reports
    without its retriable flag, so the codes are named). A fatal error stops the notifier."""
    from confluent_kafka import KafkaException

    try:
        consumer.commit(asynchronous=True)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if err is None or not _passing(err):
            raise
        log.warning("notifications consumer: commit failed (%s); retried at the next", err.str())


def _passing(err: Any) -> bool:
    """True for a commit error that the next commit makes good (see :func:`_commit`)."""
    if not hasattr(err, "retriable") or err.fatal():
        return False
    return bool(err.retriable()) or err.code() in _retriable_commit_codes()


def _retriable_commit_codes() -> frozenset[int]:
    """Commit errors that leave the offsets for the next commit (see :func:`_commit`)."""
    from confluent_kafka import KafkaError as E

    return frozenset({
        E.NOT_COORDINATOR, E.COORDINATOR_LOAD_IN_PROGRESS, E.COORDINATOR_NOT_AVAILABLE,
        E._WAIT_COORD, E.REQUEST_TIMED_OUT, E._TIMED_OUT, E._TRANSPORT, E._ALL_BROKERS_DOWN,
        E.REBALANCE_IN_PROGRESS, E.ILLEGAL_GENERATION, E.UNKNOWN_MEMBER_ID,
        E._NO_OFFSET,  # nothing consumed since the last commit: nothing to do
    })  # fmt: skip


def metrics_port_file(data_dir: Path) -> Path:
    """Where the notifier writes the port of its metrics endpoint."""
    return data_dir / "notifier" / "metrics.port"


def run_notifier(
    settings: Settings, *, metrics_port: int | None = 0, metrics_host: str = "127.0.0.1"
) -> dict[str, int]:
    """Run the notifier until SIGINT/SIGTERM; returns its counters.

    ``metrics_port``: the Prometheus endpoint's port (0 = a free one, written to
    ``<data dir>/notifier/metrics.port``; None = no endpoint).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    notifier = Notifier(settings)
    server: Any = None
    if metrics_port is not None:
        collector = NotifierCollector(notifier.stats, notifier.delivery_counts)
        server, _ = serve_metrics(
            collector, metrics_host, metrics_port, metrics_port_file(settings.data_dir)
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await notifier.run(stop)

    try:
        asyncio.run(main())
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return notifier.stats.as_dict()
