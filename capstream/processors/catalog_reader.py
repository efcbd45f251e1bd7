"""Reads the compacted policies, tenants, resumes and grants topics from the beginning into the
catalog.

A plain aiokafka consumer (no group, nothing committed) on every partition of both topics:
every worker needs every tenant's policies, whichever partitions it owns. ``ready`` is set
once it has read up to the end offsets the topics had when it started; the usage agent waits
for it before its first event. Later changes call ``changed(accounts)`` so the worker
re-decides those accounts at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from capstream.errors import CapstreamError, DecodeError
from capstream.processors.catalog import Catalog
from capstream.processors.metrics import Metrics
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
DeadLetter = Callable[[str, int, int, bytes | None, bytes | None, str, str], None]


class CatalogReader:
    """Keeps a :class:`Catalog` current from the policies and tenants topics."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        metrics: Metrics,
        changed: Callable[[set[str]], None],
        dead_letter: DeadLetter,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.metrics = metrics
        self.changed = changed
        self.dead_letter = dead_letter
        topics = Topics(settings.topic_prefix)
        self.policies_topic = topics.policies
        self.tenants_topic = topics.tenants
        self.resumes_topic = topics.resumes
        self.grants_topic = topics.grants
        self.ready = asyncio.Event()

    async def run(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Read until cancelled; ``drain`` publishes what re-decisions emitted."""
        consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_config(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="capstream-processors-catalog",
        )
        await consumer.start()
        try:
            tps = await self._assign(consumer)
            end = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            if not pending:
                self._set_ready()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5_000)
                changed: set[str] = set()
                for tp, messages in batch.items():
                    for msg in messages:
                        account = self._apply(tp.topic, msg)
                        if account is not None:
                            changed.add(account)
                if not self.ready.is_set():
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        self._set_ready()
                    continue
                if changed:
                    self.changed(changed)
                    await drain()
        finally:
            await consumer.stop()

    async def _assign(self, consumer: Any) -> list[TopicPartition]:
        tps: list[TopicPartition] = []
        for topic in (self.policies_topic, self.tenants_topic, self.resumes_topic,
                      self.grants_topic):  # fmt: skip
            parts = None
            for _ in range(50):
                # aiokafka has no public "partitions of any topic" without subscribing.
                cluster = await consumer._client.fetch_all_metadata()
                parts = cluster.partitions_for_topic(topic)
                if parts:
                    break
                await asyncio.sleep(0.2)
            if not parts:
                raise CapstreamError(f"topic {topic} does not exist: run `capstream topics create`")
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return tps

    def _apply(self, topic: str, msg: Any) -> str | None:
        account: str | None
        try:
            if topic == self.policies_topic:
                account = self.catalog.apply_policy(msg.key, msg.value)
            elif topic == self.resumes_topic:
                account = self.catalog.apply_resume(msg.key, msg.value)
            elif topic == self.grants_topic:
                account = self.catalog.apply_grant(msg.key, msg.value)
            else:
                account = self.catalog.apply_settings(msg.key, msg.value)
        except DecodeError as exc:
            self.dead_letter(
                topic, msg.partition, msg.offset, msg.key, msg.value, exc.reason, str(exc)
            )
            return None
        self.metrics.catalog_records.labels(topic=topic).inc()
        return account

    def _set_ready(self) -> None:
        log.info("policies and tenant settings loaded (%d accounts)", self.catalog.accounts)
        self.ready.set()
