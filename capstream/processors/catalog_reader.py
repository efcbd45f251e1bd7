"""Reads the compacted policies, tenants, resumes and grants topics from the beginning into the
catalog.

The one compacted-topic reader (``capstream.streams.compacted.CompactedReader``: no group,
nothing committed, every partition of the three topics) reads on its thread: every worker
needs every tenant's policies, whichever partitions it owns. Each batch it reads is handed
to the event loop, which applies it to the catalog (the usage agent reads the catalog there,
so it changes only on the loop). ``ready`` is set once the records up to the end offsets
the topics had at start are applied; the usage agent waits for it before its first event.
Later changes call ``changed(accounts)`` so the worker re-decides those accounts at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from capstream.errors import CapstreamError, DecodeError
from capstream.processors.catalog import Catalog
from capstream.processors.metrics import Metrics
from capstream.streams.compacted import CompactedReader, ConsumerFactory
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
DeadLetter = Callable[[str, int, int, bytes | None, bytes | None, str, str], None]
MISSING_TOPIC_S = 10.0
"""How long the reader waits for a missing topic before the worker stops with its name."""


class CatalogReader:
    """Keeps a :class:`Catalog` current from the policies and tenants topics."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        metrics: Metrics,
        changed: Callable[[set[str]], None],
        dead_letter: DeadLetter,
        *,
        consumer: ConsumerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.metrics = metrics
        self.changed = changed
        self.dead_letter = dead_letter
        self.consumer = consumer
        topics = Topics(settings.topic_prefix)
        self.policies_topic = topics.policies
        self.tenants_topic = topics.tenants
        self.resumes_topic = topics.resumes
        self.grants_topic = topics.grants
        self.ready = asyncio.Event()

    async def run(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Read until cancelled; ``drain`` publishes what re-decisions emitted."""
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[list[Any] | None] = asyncio.Queue()  # None: caught up
        pending: list[Any] = []

        def hand_over() -> None:  # on the reader's thread, after each poll
            if pending:
                batch = pending.copy()
                pending.clear()
                loop.call_soon_threadsafe(batches.put_nowait, batch)

        def caught_up() -> None:  # on the reader's thread, once: after what it read so far
            hand_over()
            loop.call_soon_threadsafe(batches.put_nowait, None)

        options: dict[str, Any] = {} if self.consumer is None else {"consumer": self.consumer}
        reader = CompactedReader(
            {
                **self.settings.librdkafka_config(),
                "group.id": f"capstream-processors-catalog-{uuid.uuid4().hex[:12]}",
                "client.id": "capstream-processors-catalog",
                "log_level": 3,
            },
            (self.policies_topic, self.tenants_topic, self.resumes_topic, self.grants_topic),
            pending.append,
            name="catalog-reader",
            on_step=hand_over,
            on_ready=caught_up,
            **options,
        )
        reader.start()
        started = loop.time()
        try:
            while True:
                try:
                    batch = await asyncio.wait_for(batches.get(), 0.5)
                except TimeoutError:
                    problem = reader.problem
                    if (
                        not self.ready.is_set()
                        and problem is not None
                        and "does not exist" in problem
                        and loop.time() - started > MISSING_TOPIC_S
                    ):
                        raise CapstreamError(problem) from None
                    continue
                if batch is None:
                    self._set_ready()
                    continue
                changed: set[str] = set()
                for msg in batch:
                    account = self._apply(msg.topic(), msg)
                    if account is not None:
                        changed.add(account)
                if changed and self.ready.is_set():
                    self.changed(changed)
                    await drain()
        finally:
            reader.close()

    def _apply(self, topic: str, msg: Any) -> str | None:
        account: str | None
        try:
            if topic == self.policies_topic:
                account = self.catalog.apply_policy(msg.key(), msg.value())
            elif topic == self.resumes_topic:
                account = self.catalog.apply_resume(msg.key(), msg.value())
            elif topic == self.grants_topic:
                account = self.catalog.apply_grant(msg.key(), msg.value())
            else:
                account = self.catalog.apply_settings(msg.key(), msg.value())
        except DecodeError as exc:
            self.dead_letter(
                topic, msg.partition(), msg.offset(), msg.key(), msg.value(), exc.reason, str(exc)
            )
            return None
        self.metrics.catalog_records.labels(topic=topic).inc()
        return account

    def _set_ready(self) -> None:
        log.info("policies and tenant settings loaded (%d accounts)", self.catalog.accounts)
        self.ready.set()
