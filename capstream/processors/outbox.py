"""Decisions waiting to be produced, in the order the core made them, encoded for the wire.

Control-topic values are whole versioned states keyed ``account_id/bot_id``: a replay is a
no-op for readers, but a compacted topic keeps the last record per key, so a key's records
must reach Kafka in version order. A bot that follows its account again (its own block or
throttle ended; ``EnforcementState.follows_account``) gets that last state, then a tombstone:
readers answer it from ``*``. Everything goes through this one ordered queue and one
drainer, which keeps that order.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, NamedTuple

from capstream.core import Effects, EnforcementState, FeedRow, Notification
from capstream.processors.feedrows import feed_key_bytes, feed_record
from capstream.streams.avro_bytes import (
    NULL,
    long_bytes,
    optional_long,
    optional_string,
    string_array,
    string_bytes,
)
from capstream.streams.codecs import MAGIC, codec
from capstream.streams.control_wire import keyed_state
from capstream.streams.topics import Topics
from capstream.streams.value_blocks import encode_value_block, value_block_key


class Outgoing(NamedTuple):
    """One record to produce; ``origin_ms`` is the event time behind a decision, if any."""

    topic: str
    key: bytes
    value: bytes | None
    """None: a tombstone (a bot that follows its account)."""
    origin_ms: int | None
    partition: int
    """The usage partition whose state produced it (its acks wait for this record)."""
    to_partition: int | None = None
    """The partition to produce to (None: the producer's partitioner, by key)."""
    dead_letter: tuple[str, str] | None = None
    """(source topic, reason) of a dead letter, counted when the broker acknowledges it."""


_NOTE_HEADER: Final = MAGIC + codec("Notification").fingerprint


def notification_to_avro(note: Notification) -> dict[str, Any]:
    """The Avro ``Notification`` record of ``note`` (the notifications topic's value)."""
    return {
        "notification_id": note.notification_id,
        "account_id": note.account_id,
        "kind": note.kind,
        "policy_id": note.policy_id,
        "recipients": list(note.recipients),
        "subject": note.subject,
        "body": note.body,
        "created_at_ms": note.created_at_ms,
        "window_start_ms": note.window_start_ms,
        "bot_id": note.bot_id,
        "previous_ids": list(note.previous_ids),
        "attribute": note.attribute,
        "attribute_value": note.attribute_value,
    }


def encode_notification(note: Notification) -> bytes:
    """The notifications-topic value (Avro ``Notification``): ``codec("Notification")``'s
    bytes for :func:`notification_to_avro` (tested byte for byte), written by hand."""
    try:
        return b"".join(
            [
                _NOTE_HEADER,
                string_bytes(note.notification_id),
                string_bytes(note.account_id),
                string_bytes(note.kind),
                optional_string(note.policy_id),
                string_array(note.recipients),
                string_bytes(note.subject),
                string_bytes(note.body),
                long_bytes(note.created_at_ms),
                optional_long(note.window_start_ms),
                optional_string(note.bot_id),
                string_array(note.previous_ids),
                NULL,  # channel_id: a worker's notifications are routed by kind
                optional_string(note.attribute),
                optional_string(note.attribute_value),
            ]
        )
    except (TypeError, AttributeError, UnicodeEncodeError, ValueError):  # the codec says why
        return codec("Notification").encode(notification_to_avro(note))


class Outbox:
    """An ordered queue of records to produce (control states, value blocks, notifications,
    feed rows)."""

    def __init__(self, topics: Topics) -> None:
        self.control = topics.control
        self.value_blocks = topics.value_blocks
        self.notifications = topics.notifications
        self.feed = topics.feed
        self.queue: deque[Outgoing] = deque()
        self.states = 0
        self.notes = 0

    def add(self, partition: int, effects: Effects, origin_ms: int | None) -> None:
        """Queue every enforcement state, value block and notification of ``effects``."""
        append = self.queue.append
        for state in effects.enforcement:
            key, value = keyed_state(state)
            append(Outgoing(self.control, key, value, origin_ms, partition))
            if state.follows_account:
                append(Outgoing(self.control, key, None, origin_ms, partition))
        for vb in effects.value_blocks:
            key = value_block_key(vb.account_id, vb.bot_id, vb.attribute, vb.value)
            append(Outgoing(self.value_blocks, key, encode_value_block(vb), origin_ms, partition))
        for note in effects.notifications:
            append(
                Outgoing(
                    self.notifications,
                    note.notification_id.encode(),
                    encode_notification(note),
                    origin_ms,
                    partition,
                )
            )
        self.states += len(effects.enforcement)
        self.notes += len(effects.notifications)

    def add_states(self, partition: int, states: list[EnforcementState]) -> None:
        """Queue current states again (after a load: a no-op for readers that have them)."""
        for state in states:
            key, value = keyed_state(state)
            self.queue.append(Outgoing(self.control, key, value, None, partition))
            if state.follows_account:
                self.queue.append(Outgoing(self.control, key, None, None, partition))

    def add_feed_row(self, partition: int, row: FeedRow) -> None:
        key = (row.account_id, row.bot_id, row.conversation_id, row.local_day, row.category)
        self.queue.append(
            Outgoing(self.feed, feed_key_bytes(key), feed_record(row), None, partition)
        )

    def add_dead_letter(
        self, topic: str, partition: int, key: bytes, value: bytes, reason: str
    ) -> None:
        """Queue a dead letter (a ``DeadLetterRecord``) of a record of ``topic``; it is
        counted once the broker acknowledges it."""
        self.queue.append(
            Outgoing(Topics.dlq(topic), key, value, None, partition, dead_letter=(topic, reason))
        )

    def add_reroute(self, topic: str, key: bytes, value: bytes, partition: int, home: int) -> None:
        """Queue a record read on ``partition`` that belongs on ``home`` (its account's)."""
        self.queue.append(Outgoing(topic, key, value, None, partition, to_partition=home))

    def __len__(self) -> int:
        return len(self.queue)
