"""A retriable commit failure (the coordinator moving during a broker restart) does not stop
the notifier; a fatal one does."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from capstream.notifier.service import _commit


class Consumer:
    def __init__(self, error: KafkaError | None) -> None:
        self.error = error
        self.calls = 0

    def commit(self, *, asynchronous: bool) -> None:
        self.calls += 1
        if self.error is not None:
            raise KafkaException(self.error)


def test_a_retriable_commit_error_is_left_to_the_next_commit() -> None:
    consumer = Consumer(KafkaError(KafkaError.NOT_COORDINATOR, "Not coordinator", retriable=True))
    _commit(consumer)  # no exception: the notifier goes on
    assert consumer.calls == 1


def test_a_fatal_commit_error_still_stops_the_notifier() -> None:
    consumer = Consumer(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(KafkaException):
        _commit(consumer)
