"""Price books: the tables ``UsageRecorder`` derives ``credits_micro`` from tokens with.

A :class:`PriceBook` holds price tables (the platform's, account ``*``, and tenants' own)
and answers :meth:`PriceBook.credits` for an event that came without credits. Fill it with
tables you pass (``PriceBook([table, ...])``, e.g. from ``GET /v1/accounts/{a}/prices``)
or let a :class:`KafkaPriceBook` read the compacted prices topic the Policy API writes, from
the beginning, like the control view: every replica and every restart reads the same
tables, and a change reaches every gateway within a fetch. Rules: ``core/pricing.py``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

from confluent_kafka import Consumer

from capstream.core.limits import MAX_CREDITS_MICRO
from capstream.core.pricing import (
    PLATFORM,
    PriceTable,
    effective_table,
)
from capstream.errors import DecodeError
from capstream.streams.compacted import CompactedReader, ConsumerFactory
from capstream.streams.price_records import PriceTableRecord, core_table
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
_UNSEEN: Any = object()
_SCALE = 10**12


class PriceStats(NamedTuple):
    """Counters of a :class:`PriceBook`."""

    priced: int
    """events whose credits were derived from their tokens"""
    unpriced: int
    """events without credits whose model no table prices: recorded with 0 credits"""


class PriceBook:
    """Price tables by account (``*``: the platform's); derives credits from tokens.

    An unknown model (in neither the tenant's nor the platform's table) gets no credits:
    :meth:`credits` returns None, the recorder records the event with 0 credits, counts it
    in ``stats.unpriced`` and logs the model once. The event's tokens still count, so token
    policies still see it; only credit caps miss it: add the model to a table.
    """

    def __init__(self, tables: Iterable[PriceTable] = ()) -> None:
        self._tables: dict[str, PriceTable] = {}
        self._effective: dict[str, PriceTable | None] = {}
        self._lock = threading.Lock()
        self._priced = 0
        self._unpriced = 0
        self._warned: set[str] = set()
        for t in tables:
            self.put(t)

    def put(self, table: PriceTable) -> None:
        """Hold ``table`` (replacing that account's previous one)."""
        with self._lock:
            self._tables[table.account_id] = table
            self._effective = {}  # recomputed per account on the next call

    def remove(self, account_id: str) -> None:
        """Forget an account's table (it falls back to the platform's)."""
        with self._lock:
            self._tables.pop(account_id, None)
            self._effective = {}

    def table(self, account_id: str) -> PriceTable | None:
        """The table that prices ``account_id``'s calls (its own over the platform's)."""
        effective = self._effective
        if account_id in effective:
            return effective[account_id]
        with self._lock:
            t = effective_table(self._tables.get(account_id), self._tables.get(PLATFORM))
            if effective is self._effective:
                effective[account_id] = t
        return t

    def credits(
        self, account_id: str, model: str, category: str, tokens_in: int, tokens_out: int
    ) -> int | None:
        """The micro-credits of one call, or None when its model is unpriced (counted).

        ``core.pricing.credits_for`` inlined (one call per recorded event; the shared
        vectors check both give the same)."""
        table = self._effective.get(account_id, _UNSEEN)
        if table is _UNSEEN:
            table = self.table(account_id)
        if table is not None:
            mp = table.models.get(model)
            if mp is not None:
                p = mp.categories.get(category, mp) if mp.categories else mp
                cost = tokens_in * p.input_per_mtok_micro + tokens_out * p.output_per_mtok_micro
                credits = -(-cost * table.credits_per_unit_micro // _SCALE)
                self._priced += 1
                return credits if credits < MAX_CREDITS_MICRO else MAX_CREDITS_MICRO
        self._unpriced += 1
        if model not in self._warned and len(self._warned) < 1000:
            self._warned.add(model)
            log.warning(
                "no price for model %r (account %r): its events are recorded with 0 "
                "credits; add it to the account's or the platform's price table",
                model,
                account_id,
            )
        return None

    @property
    def stats(self) -> PriceStats:
        return PriceStats(self._priced, self._unpriced)


class KafkaPriceBook(PriceBook):
    """A :class:`PriceBook` kept current from the compacted prices topic (read from the
    beginning on a thread, no group; ``wait_ready()`` once the tables present at start are
    read). Events recorded before it is ready are priced with what it holds so far: call
    ``wait_ready()`` at start, as for the control view."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        consumer: ConsumerFactory = Consumer,
    ) -> None:
        super().__init__()
        self.topic = topic or Topics(settings.topic_prefix).prices
        self.invalid = 0
        self._reader = CompactedReader(
            {
                **settings.librdkafka_config(),
                "group.id": f"capstream-prices-{uuid.uuid4().hex[:12]}",
                "log_level": 3,
                "logger": logging.getLogger("capstream.gateway.librdkafka"),
                **(consumer_config or {}),
            },
            [self.topic],
            self._apply,
            name="price-book",
            consumer=consumer,
        )
        self._reader.start()

    def _apply(self, msg: Any) -> None:
        value = msg.value()
        if value is None:
            self.remove((msg.key() or b"").decode(errors="replace"))
            return
        try:
            self.put(core_table(PriceTableRecord.from_bytes(value)))
        except (DecodeError, ValueError) as exc:  # PriceError is a ValueError too
            self.invalid += 1
            log.warning("price book: skipped record %s@%d: %s", msg.topic(), msg.offset(), exc)

    @property
    def ready(self) -> bool:
        return self._reader.ready

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the tables present at start are read (or ``timeout``)."""
        return self._reader.wait_ready(timeout)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> KafkaPriceBook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["KafkaPriceBook", "PriceBook", "PriceStats", "core_table"]
