"""What gateways sent each conversation, shared through Kafka so replicas and restarts agree.

The core's :class:`~capstream.core.gate.FallbackLedger` remembers, in one process, which
(account, bot, conversation, cap period) got the fallback text and when each conversation
last got a throttled reply. :class:`KafkaLedger` is that ledger plus a compacted topic
(``<prefix>.gateway-sent``): each claim and each throttled reply is published as a
``ConversationSent`` record (key ``kind/account/bot/conversation[/period]``), and every
gateway reads the topic from the beginning (no group, like the control view) into its own
ledger. A restarted gateway is :attr:`~KafkaLedger.ready` once it has read what was sent
before it started; a replica learns of another's sends within the propagation delay (one
produce and one fetch: a few milliseconds on a healthy cluster, see the README). Two
gateways deciding the same conversation within that delay may both send; after it, neither
sends again. Records expire by themselves: readers ignore a fallback once its period is over
(``expires_at_ms``) and a reply once its minute is, and the topic deletes them after 33 days.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from time import time_ns
from typing import Any

from confluent_kafka import Producer

from capstream.core.gate import REPLY_SPACING_MS, FallbackLedger
from capstream.errors import DecodeError
from capstream.gateway.control_view import ControlView
from capstream.streams.codecs import codec
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
_DAY_MS = 86_400_000
# A fallback matters until its cap period ends; the ledger key names the period, not its end:
# a local day ends within 2 days of any instant in it, a month within 32.
_DAILY_KEEP_MS, _MONTHLY_KEEP_MS = 2 * _DAY_MS, 32 * _DAY_MS


def expires_at(kind: str, period_key: str, at_ms: int) -> int:
    """When a record of what was sent at ``at_ms`` stops mattering: a fallback when its cap
    period surely ended (a day's within 2 days, a month's within 32), a reply after the
    reply spacing."""
    if kind == "reply":
        return at_ms + REPLY_SPACING_MS
    return at_ms + (_DAILY_KEEP_MS if len(period_key) > 7 else _MONTHLY_KEEP_MS)


def sent_key(kind: str, account: str, bot: str, conversation: str, period_key: str) -> str:
    """The gateway-sent topic key: ``kind/account/bot/conversation[/period]``."""
    parts = (kind, account, bot, conversation, period_key) if period_key else (
        kind, account, bot, conversation)  # fmt: skip
    return "/".join(parts)


class SharedLedger(FallbackLedger):
    """A ledger several request threads may share: claims and updates are atomic."""

    __slots__ = ("_mutex",)

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self._mutex = threading.Lock()

    def claim_fallback(self, key: tuple[str, str, str, str]) -> bool:
        with self._mutex:
            return super().claim_fallback(key)

    def record_reply(self, key: tuple[str, str, str], at_ms: int) -> None:
        with self._mutex:
            super().record_reply(key, at_ms)

    def last_reply(self, key: tuple[str, str, str]) -> int | None:
        # Under the lock too: a reply being recorded leaves one map and enters the other
        # (and the two generations turn), so a lock-free read could miss it.
        with self._mutex:
            return super().last_reply(key)

    def fallback_sent(self, key: tuple[str, str, str, str]) -> bool:
        """Did ``key`` get its fallback text (here or, shared, at another gateway)?"""
        return key in self._sent


class KafkaLedger(SharedLedger):
    """A :class:`SharedLedger` that publishes what this gateway sends and applies what the
    others (and its earlier runs) sent, from the ``gateway-sent`` topic."""

    __slots__ = ("_codec", "_producer", "_reader", "gateway_id", "topic")

    def __init__(
        self,
        settings: Settings,
        max_entries: int,
        *,
        topic: str | None = None,
        gateway_id: str | None = None,
        producer_config: Mapping[str, Any] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(max_entries)
        self.topic = topic or Topics(settings.topic_prefix).gateway_sent
        self.gateway_id = gateway_id or uuid.uuid4().hex[:12]
        self._codec = codec("ConversationSent")
        self._producer = Producer(
            {
                **settings.librdkafka_config(),
                "linger.ms": 1,  # a claim is rare and should reach the replicas at once
                # Kafka's default (Java, and the TypeScript SDK): one key, one partition,
                # whichever SDK published it, so compaction keeps only the latest.
                "partitioner": "murmur2_random",
                "acks": "all",
                "enable.idempotence": True,
                "log_level": 3,
                "logger": logging.getLogger("capstream.gateway.librdkafka"),
                **(producer_config or {}),
            }
        )
        self._reader = _SentReader(settings, self, self.topic, consumer_config)

    # -- the gateway's side (core.gate calls these) ------------------------------------------

    def claim_fallback(self, key: tuple[str, str, str, str]) -> bool:
        if not super().claim_fallback(key):
            return False
        now = time_ns() // 1_000_000
        self._publish(
            "fallback", key[0], key[1], key[2], key[3], now, expires_at("fallback", key[3], now)
        )
        return True

    def record_reply(self, key: tuple[str, str, str], at_ms: int) -> None:
        super().record_reply(key, at_ms)
        self._publish("reply", key[0], key[1], key[2], "", at_ms, expires_at("reply", "", at_ms))

    def _publish(
        self, kind: str, account: str, bot: str, conv: str, period: str, at: int, until: int
    ) -> None:
        value = self._codec.encode(
            {"kind": kind, "account_id": account, "bot_id": bot, "conversation_id": conv,
             "period_key": period, "at_ms": at, "expires_at_ms": until,
             "gateway_id": self.gateway_id}
        )  # fmt: skip
        key = sent_key(kind, account, bot, conv, period)
        try:
            self._producer.produce(self.topic, value, key.encode("utf-8"))
            self._producer.poll(0)
        except Exception:  # BufferError, KafkaException: never fail a reply over it
            log.warning("gateway ledger: could not publish a %s of %s/%s", kind, account, bot)

    # -- what the others sent (the reader's thread calls this) ---------------------------

    def apply(self, value: bytes) -> bool:
        """Apply one ``ConversationSent`` record; True if it changed the ledger."""
        r = self._codec.decode(value)
        if r["expires_at_ms"] <= time_ns() // 1_000_000:
            return False
        if r["kind"] == "fallback":
            key4 = (r["account_id"], r["bot_id"], r["conversation_id"], r["period_key"])
            with self._mutex:
                return FallbackLedger.claim_fallback(self, key4)
        key3 = (r["account_id"], r["bot_id"], r["conversation_id"])
        with self._mutex:
            last = FallbackLedger.last_reply(self, key3)
            if last is not None and last >= r["at_ms"]:
                return False
            FallbackLedger.record_reply(self, key3, r["at_ms"])
        return True

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once what was sent before this gateway started has been read."""
        return self._reader.ready

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self._reader.wait_ready(timeout)

    def close(self, timeout: float = 5.0) -> int:
        """Stop reading; deliver what is still to publish. Returns the records not delivered."""
        self._reader.close()
        return int(self._producer.flush(timeout))


class _SentReader(ControlView):
    """The control view's reader (every partition from the beginning, ready at the end
    offsets, reconnects by itself) applying ``ConversationSent`` records to a ledger."""

    def __init__(
        self,
        settings: Settings,
        ledger: KafkaLedger,
        topic: str,
        consumer_config: Mapping[str, Any] | None,
    ) -> None:
        self.ledger = ledger
        super().__init__(settings, topic=topic, consumer_config=consumer_config)

    def _apply(self, msg: Any) -> None:
        value = msg.value()
        if value is None:
            return
        try:
            if self.ledger.apply(value):
                self._applied += 1
            else:
                self._ignored += 1
        except DecodeError as exc:
            self._invalid += 1
            log.warning("gateway ledger: skipped record @%d: %s", msg.offset(), exc)
