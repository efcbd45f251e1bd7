"""``ClickHouseStorage``: batches into ClickHouse (chDB or a server) with exactly-once tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from capstream.sinks.batches import Batch, Intent
from capstream.sinks.frames import ContainerWriter
from capstream.sinks.port import Rejected, TopicPartition, insert_isolating
from capstream.sinks.store import RowsRejectedError, StoreUnavailableError, classify, short_error

_INSERT_SETTINGS = {
    "insert_deduplicate": 1,
    # Without this, a retried insert is dropped by the table but counted again by every
    # materialized view (the rollups); with it, the views deduplicate the same block too.
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    # The views already aggregate each block; collapsing it again on insert costs ~15% CPU.
    "optimize_on_insert": 0,
}


class ClickHouseStorage:
    """Writes each batch as one ``INSERT INTO <inbox> FORMAT Avro`` under its dedup token.

    Before the insert, the batch's offsets and token are recorded in ``sink_intents``; a
    restarted sink reads them back (``intents``) to rebuild exactly the batch that was in
    flight. Each thread gets its own client from ``connect`` (a clickhouse-connect client
    runs one query at a time), so writer lanes insert in parallel.
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._writers: dict[str, ContainerWriter] = {}

    @property
    def client(self) -> Any:
        """This thread's client."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
            with self._lock:
                self._clients.append(client)
        return client

    def _writer(self, schema: str) -> ContainerWriter:
        with self._lock:
            writer = self._writers.get(schema)
            if writer is None:
                writer = self._writers[schema] = ContainerWriter(schema)
            return writer

    def write(self, batch: Batch) -> list[Rejected]:
        if not len(batch):
            return []
        writer = self._writer(batch.table.schema)
        inbox = batch.table.inbox
        client = self.client

        def insert(lo: int, hi: int, token: str) -> None:
            data = writer.container(batch.bodies[lo:hi])
            try:
                client.raw_insert(
                    inbox,
                    None,
                    data,
                    fmt="Avro",
                    settings={**_INSERT_SETTINGS, "insert_deduplication_token": token},
                )
            except Exception as exc:
                raise classify(exc) from exc

        if not batch.announced:
            self._record_intents(client, [batch])
        return insert_isolating(insert, batch)

    def announce(self, batches: Sequence[Batch]) -> None:
        """One ``sink_intents`` insert for several partitions' next batches."""
        todo = [b for b in batches if len(b) and not b.announced]
        if todo:
            self._record_intents(self.client, todo)
            for batch in todo:
                batch.announced = True

    def _record_intents(self, client: Any, batches: Sequence[Batch]) -> None:
        try:
            client.insert(
                "sink_intents",
                [
                    [b.topic, b.partition, b.first_offset, b.last_offset, b.token, len(b)]
                    for b in batches
                ],
                column_names=[
                    "topic",
                    "partition",
                    "first_offset",
                    "last_offset",
                    "token",
                    "records",
                ],
            )
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, RowsRejectedError):
                error = StoreUnavailableError(f"cannot record the batch intent: {short_error(exc)}")
            raise error from exc

    def intents(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, Intent]:
        wanted = set(partitions)
        if not wanted:
            return {}
        topics = sorted({topic for topic, _ in wanted})
        try:
            rows = self.client.query(
                "SELECT topic, partition, argMax(first_offset, last_offset), "
                "max(last_offset), argMax(token, last_offset) FROM sink_intents "
                "WHERE topic IN {topics:Array(String)} GROUP BY topic, partition",
                parameters={"topics": topics},
            ).result_rows
        except Exception as exc:
            raise StoreUnavailableError(f"cannot read sink intents: {short_error(exc)}") from exc
        found: dict[TopicPartition, Intent] = {}
        for topic, partition, first, last, token in rows:
            tp = (str(topic), int(partition))
            if tp in wanted:
                found[tp] = Intent(int(first), int(last), str(token))
        return found

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
