"""What the sink stores of one record: the header check for every topic, and for usage
records the one per-event validation the SDK and the worker apply.

A usage record goes through the worker's own decoder (``streams.usage_decode.UsageDecoder``,
which calls ``core.limits.event_problem``), so the sink refuses exactly the events the worker
refuses, one event at a time, with the same reason. Its time bound is the record's
timestamp (LogAppendTime on the usage topic) plus the allowed skew, never the wall clock:
the outcome of a record is a pure function of its bytes, partition and timestamp, so a
batch rebuilt after a crash (``batches.Intent``) holds exactly the bodies of the first
attempt and its dedup token still means the same rows.

- Every event good and at home (the common case): the original body, sliced, no copy.
- Some events bad (each dead-lettered alone) or homed on another partition (the worker
  re-sends those to their home partition, where the sink stores them): the record rebuilt
  with the rest (``keep_events``), same batch id, producer and time.
- Nothing left: no body; the record's offset is still covered by its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from capstream.core.limits import DEFAULT_MAX_FUTURE_SKEW_MS, MAX_OCCURRED_AT_MS
from capstream.processors.options import DEFAULT_MAX_RECORD_BYTES
from capstream.sinks.frames import HEADER_LEN, Body, body_of
from capstream.streams.codecs import Codec
from capstream.streams.usage_decode import BadEvent, UsageDecoder
from capstream.streams.usage_wire import keep_events


class Intake(NamedTuple):
    """What to do with one record."""

    body: Body | None
    """The current-schema Avro body to store; None when no event of the record is stored."""
    bad: Sequence[BadEvent] = ()
    """Events refused, each to be dead-lettered alone (``raw``: a one-event record)."""
    misplaced: int = 0
    """Good events of accounts homed on another partition (not stored here)."""


class UsageIntake:
    """Validates usage records event by event, as the worker does.

    ``partitions``: the usage topic's partition count (0: do not check homes).
    ``max_future_skew_ms``: how far past its record's timestamp an event may be stamped
    (the worker's ``max_future_skew_s``; both default to 300 s).
    """

    def __init__(
        self,
        record_codec: Codec,
        *,
        partitions: int = 0,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
    ) -> None:
        self.codec = record_codec
        self.decoder = UsageDecoder(max_record_bytes, partitions)
        self.max_future_skew_ms = max_future_skew_ms

    def latest(self, timestamp_ms: int) -> int:
        """The latest event time a record stamped ``timestamp_ms`` may carry (no timestamp,
        0: only the 2200 bound, the same for every read of the record)."""
        if timestamp_ms > 0:
            return timestamp_ms + self.max_future_skew_ms
        return MAX_OCCURRED_AT_MS - 1

    def take(self, value: bytes | None, partition: int, timestamp_ms: int) -> Intake:
        """What to store of ``value`` read from ``partition``; ``DecodeError`` when the
        record as a whole is bad (too large, not Avro, unknown schema, corrupt framing)."""
        decoded = self.decoder.decode(value, self.latest(timestamp_ms), partition)
        assert value is not None  # decode refuses None
        if not decoded.bad and not decoded.misplaced:
            return Intake(body_of(value, self.codec))
        misplaced = len(decoded.misplaced)
        if not decoded.events:
            return Intake(None, decoded.bad, misplaced)
        indexes = decoded.indexes
        keep = list(range(len(decoded.events))) if indexes is None else indexes
        if value[2:HEADER_LEN] == self.codec.fingerprint:
            return Intake(memoryview(keep_events(value, keep))[HEADER_LEN:], decoded.bad, misplaced)
        # Another registered writer schema: resolve, keep the good events, re-encode.
        record = self.codec.decode(value)
        events = record.get("events") or []
        record["events"] = [events[i] for i in keep]
        return Intake(self.codec.encode(record)[HEADER_LEN:], decoded.bad, misplaced)
