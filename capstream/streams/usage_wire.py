"""The ``UsageBatch`` record's framing: its header, its event bodies, and building one.

A record is ``C3 01`` + the schema fingerprint + ``batch_id``, ``producer``,
``sent_at_ms`` and an Avro array of ``UsageEvent`` bodies. The worker and the sink cut a
record into its events (a bad event is dead-lettered alone, a misplaced one sent to its
home partition) and the SDK builds records from bodies it encoded itself
(``capstream.gateway.wire``); every function here works on the bytes, without decoding
the events. The category and period tables of every hand-written codec are here, derived
from ``capstream.core.models`` (and tested against ``Category.avsc``/``CapPeriod.avsc``).
"""

from __future__ import annotations

from typing import Final

from capstream.core.models import CATEGORIES as _CORE_CATEGORIES
from capstream.core.models import CapPeriod
from capstream.streams.avro_bytes import (
    long_bytes,
    read_long,
    read_string,
    skip_long,
    skip_string,
    string_bytes,
)
from capstream.streams.codecs import MAGIC, codec

CATEGORIES: Final[tuple[str, ...]] = _CORE_CATEGORIES
"""``Category.avsc``'s symbols in order: an event's category is its index here."""
PERIODS: Final[tuple[str, ...]] = tuple(p.value for p in CapPeriod)
"""``CapPeriod.avsc``'s symbols in order."""
HEADER_LEN: Final = 10
"""``C3 01`` and the 8-byte fingerprint."""
BATCH_HEADER: Final[bytes] = MAGIC + codec("UsageBatch").fingerprint


def encode_batch(batch_id: str, producer: str, sent_at_ms: int, bodies: list[bytes]) -> bytes:
    """A ``UsageBatch`` record (single-object encoding) holding the encoded event bodies."""
    return b"".join(
        (
            BATCH_HEADER,
            string_bytes(batch_id),
            string_bytes(producer),
            long_bytes(sent_at_ms),
            long_bytes(len(bodies)) if bodies else b"",
            *bodies,
            b"\x00",
        )
    )


def skip_event(data: bytes, pos: int) -> int:
    """The end of the event at ``pos``, walking its layout without decoding any value
    (IndexError if it overruns the record: then the record's framing is broken)."""
    for _ in range(4):  # ids
        pos = skip_string(data, pos)
    pos = skip_long(data, pos)  # category
    pos = skip_string(data, pos)  # model
    for _ in range(3):  # tokens in, out, messages
        pos = skip_long(data, pos)
    if pos >= len(data):
        raise IndexError
    pos += 1  # conversation_started
    pos = skip_long(data, pos)  # credits
    pos = skip_long(data, pos)  # occurred_at
    count, pos = read_long(data, pos)
    while count:
        if count < 0:
            count = -count
            pos = skip_long(data, pos)
        for _ in range(count):
            pos = skip_string(data, pos)
            pos = skip_string(data, pos)
        count, pos = read_long(data, pos)
    return pos


def read_map(data: bytes, pos: int, out: dict[str, str]) -> int:
    """An Avro ``map<string>`` at ``pos`` into ``out``; the position after it."""
    count, pos = read_long(data, pos)
    while count:
        if count < 0:
            count = -count
            _, pos = read_long(data, pos)
        for _ in range(count):
            key, pos = read_string(data, pos)
            out[key], pos = read_string(data, pos)
        count, pos = read_long(data, pos)
    return pos


def batch_header(value: bytes) -> tuple[str, str, int]:
    """(batch_id, producer, sent_at_ms) of a current-schema ``UsageBatch`` record."""
    batch_id, pos = read_string(value, HEADER_LEN)
    producer, pos = read_string(value, pos)
    sent_at, _ = read_long(value, pos)
    return batch_id, producer, sent_at


def event_bodies(value: bytes) -> list[bytes]:
    """Each event's Avro body, in order, of a current-schema ``UsageBatch`` record."""
    pos = skip_string(value, HEADER_LEN)
    pos = skip_string(value, pos)
    pos = skip_long(value, pos)
    bodies: list[bytes] = []
    while True:
        count, pos = read_long(value, pos)
        if count == 0:
            return bodies
        if count < 0:
            count = -count
            pos = skip_long(value, pos)
        for _ in range(count):
            end = skip_event(value, pos)
            bodies.append(value[pos:end])
            pos = end


def keep_events(value: bytes, keep: list[int]) -> bytes:
    """The record ``value`` with only the events at the places ``keep`` (a new batch with the
    same batch id, producer and time): what the sink stores of a record with bad events."""
    bodies = event_bodies(value)
    batch_id, producer, sent_at = batch_header(value)
    return encode_batch(batch_id, producer, sent_at, [bodies[i] for i in keep])
