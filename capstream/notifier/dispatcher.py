"""Delivers what the sent-log holds: email and webhook attempts, backoff, expiry, dead letters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from capstream.notifier.channels import CHANNEL_PREFIX, ChannelSender
from capstream.notifier.outcome import Outcome, backoff_s
from capstream.notifier.sentlog import EXPIRED, FAILED, UNCERTAIN, Attempt, Delivery, SentLog
from capstream.streams.records import DeliveryAttemptRecord, NotificationRecord

log = logging.getLogger(__name__)


class EmailPort(Protocol):
    async def send(self, rec: NotificationRecord, recipients: list[str]) -> Outcome: ...


class WebhookPort(Protocol):
    async def send(self, rec: NotificationRecord, recipients: list[str], now_s: int) -> Outcome: ...


@dataclass(slots=True)
class NotifierStats:
    """Counters of the notifier (logged periodically and at exit)."""

    received: int = 0
    duplicates: int = 0
    delivered: int = 0
    retries: int = 0
    failed: int = 0
    expired: int = 0
    uncertain: int = 0
    undecodable: int = 0
    dead_lettered: int = 0
    poison: int = 0
    """Records whose handling raised: dead-lettered as ``processing_error``."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


DeadLetter = Callable[[Delivery, str, str], None]
"""``dead_letter(delivery, reason, error)``: publish the failed delivery to the DLQ."""
OnAttempt = Callable[[DeliveryAttemptRecord], None]
"""``on_attempt(record)``: publish an attempt to a tenant's channel (the delivery log)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Dispatcher:
    """Sends due deliveries once each: claim (``sending``, on disk) → send → record."""

    def __init__(
        self,
        sentlog: SentLog,
        email: EmailPort,
        *,
        webhook: WebhookPort | None = None,
        owner_email: Callable[[str], str | None] = lambda _: None,
        dead_letter: DeadLetter = lambda d, reason, error: None,
        stats: NotifierStats | None = None,
        max_backoff_s: float = 300.0,
        base_backoff_s: float = 1.0,
        clock: Callable[[], int] = _now_ms,
        channels: ChannelSender | None = None,
        on_attempt: OnAttempt = lambda a: None,
    ) -> None:
        self.channels = channels
        self.on_attempt = on_attempt
        self.log = sentlog
        self.email = email
        self.webhook = webhook
        self.owner_email = owner_email
        self.dead_letter = dead_letter
        self.stats = stats or NotifierStats()
        self.max_backoff_s = max_backoff_s
        self.base_backoff_s = base_backoff_s
        self.clock = clock

    def recover(self) -> None:
        """Dead-letter deliveries a stopped process left half-sent (never resent)."""
        for d in self.log.recover(self.clock()):
            self.stats.uncertain += 1
            self._dead(d, "uncertain", "the notifier stopped while sending; maybe delivered")

    async def run_once(self, limit: int = 100, stop: Callable[[], bool] | None = None) -> int:
        """Attempt every due delivery once (until ``stop()`` says the notifier is stopping:
        the one in flight finishes, the rest stay due); returns how many were attempted."""
        due = self.log.due(self.clock(), limit)
        n = 0
        for d in due:
            if stop is not None and stop():
                break
            await self.deliver(d)
            n += 1
        return n

    async def deliver(self, d: Delivery) -> None:
        now = self.clock()
        if now >= d.expires_at_ms:
            if self.log.expire(d, now):
                self.stats.expired += 1
                self._dead(d, "expired", d.last_error or "expired before it could be delivered")
            return
        rec = NotificationRecord.from_bytes(d.payload)
        recipients = list(rec.recipients)
        if not recipients and (owner := self.owner_email(rec.account_id)):
            recipients = [owner]
        if not self.log.mark_sending(d, now):
            return  # someone else claimed it
        if d.channel.startswith(CHANNEL_PREFIX):
            if self.channels is None:
                outcome = Outcome("refused", "tenant channels are not configured")
            else:
                outcome = await self.channels.send(rec, d.channel[len(CHANNEL_PREFIX) :], now)
        elif d.channel == "email" and not recipients:
            outcome = Outcome("retry", f"no recipient: account {rec.account_id!r} has no owner")
        elif d.channel == "email":
            outcome = await self.email.send(rec, recipients)
        elif self.webhook is not None:
            outcome = await self.webhook.send(rec, recipients, now // 1000)
        else:
            outcome = Outcome("refused", "webhooks are not configured")
        next_ms = self._record(d, outcome)
        self._log_attempt(d, rec, outcome, now, next_ms)

    def _log_attempt(
        self, d: Delivery, rec: NotificationRecord, outcome: Outcome, at: int, next_ms: int | None
    ) -> None:
        attempt = d.attempts + 1
        self.log.log_attempt(Attempt(
            d.notification_id, d.channel, d.account_id, attempt, at, outcome.kind,
            outcome.status_code, outcome.error,
        ))  # fmt: skip
        if d.channel.startswith(CHANNEL_PREFIX):
            self.on_attempt(DeliveryAttemptRecord(
                account_id=d.account_id, channel_id=d.channel[len(CHANNEL_PREFIX) :],
                notification_id=d.notification_id, kind=rec.kind, attempt=attempt, at_ms=at,
                outcome=outcome.kind, status_code=outcome.status_code, error=outcome.error,
                next_attempt_ms=next_ms,
            ))  # fmt: skip

    def _record(self, d: Delivery, outcome: Outcome) -> int | None:
        """Record the outcome; returns when the next attempt is due (a retry), else None."""
        now = self.clock()
        if outcome.kind == "delivered":
            self.log.mark_sent(d, now)
            self.stats.delivered += 1
            log.info("delivered %s by %s", d.notification_id, d.channel)
        elif outcome.kind == "retry":
            wait_ms = int(1000 * backoff_s(d.attempts + 1, self.max_backoff_s, self.base_backoff_s))
            if now + wait_ms >= d.expires_at_ms:
                self.log.mark_final(d, EXPIRED, outcome.error, now)
                self.stats.expired += 1
                self._dead(d, "expired", outcome.error)
            else:
                self.log.mark_retry(d, now + wait_ms, outcome.error, now)
                self.stats.retries += 1
                log.warning(
                    "%s by %s not delivered (%s); retry in %.1fs",
                    d.notification_id, d.channel, outcome.error, wait_ms / 1000,
                )  # fmt: skip
                return now + wait_ms
        else:
            status = FAILED if outcome.kind == "refused" else UNCERTAIN
            self.log.mark_final(d, status, outcome.error, now)
            if status == FAILED:
                self.stats.failed += 1
            else:
                self.stats.uncertain += 1
            self._dead(d, status, outcome.error)
        return None

    def _dead(self, d: Delivery, reason: str, error: str) -> None:
        log.error("notification %s by %s: %s (%s)", d.notification_id, d.channel, reason, error)
        self.stats.dead_lettered += 1
        self.dead_letter(d, reason, error)
