"""What decoding a usage record gives: the good events, the refused, the misplaced."""

from __future__ import annotations

from typing import NamedTuple

from capstream.core.models import UsageEvent


class BadEvent(NamedTuple):
    """An event refused inside an otherwise good record."""

    position: int
    """The event's place in its record."""
    reason: str
    error: str
    raw: bytes
    """The event's own Avro body wrapped as a one-event ``UsageBatch``."""


class Misplaced(NamedTuple):
    """A good event on a partition that is not its account's: to be sent home."""

    position: int
    home: int
    """The partition Kafka's default partitioner gives its account id."""
    account_id: str
    raw: bytes
    """The event's own Avro body wrapped as a one-event ``UsageBatch``."""


class Decoded(NamedTuple):
    """What one usage record holds: the good events, their places in the record, the bad."""

    events: list[UsageEvent]
    indexes: list[int] | None
    """Each good event's place in the record; None when it equals its place in ``events``."""
    bad: list[BadEvent]
    misplaced: tuple[Misplaced, ...] = ()
    """Good events of accounts homed on another partition (see ``UsageDecoder.decode``)."""
