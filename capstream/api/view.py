"""The API's read view of the compacted policies, tenants and channels topics (the source of
truth), and of the latest delivery attempts to tenants' channels."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

from capstream.api.errors import UnavailableError
from capstream.errors import DecodeError
from capstream.streams.compacted import CompactedReader, ConsumerFactory
from capstream.streams.price_records import PriceTableRecord
from capstream.streams.records import (
    CapGrantRecord,
    ChannelRecord,
    DeliveryAttemptRecord,
    PolicyRecord,
    TenantSettingsRecord,
)
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
MISSING_GRACE_S = 3.0
"""How long the API's view waits for a missing topic to appear before it refuses to start."""
DELIVERY_LOG_SIZE = 200
"""Attempts kept per channel for the delivery log."""


class TopicView:
    """Consumes the policies and tenants topics from the beginning in a background thread
    (a :class:`~capstream.streams.compacted.CompactedReader`; ``consumer=`` injects its
    consumer).

    Policies are keyed ``account_id/policy_id`` (a null value deletes); tenant settings are
    keyed ``account_id``. :meth:`wait_for` blocks until the view has applied a given offset,
    so a read right after a write sees the write.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        include: Iterable[str] = (
            "policies",
            "tenants",
            "channels",
            "deliveries",
            "grants",
            "prices",
        ),
        consumer: ConsumerFactory | None = None,
    ):
        self._topics = Topics(settings.topic_prefix)
        names = {
            "policies": self._topics.policies,
            "tenants": self._topics.tenants,
            "channels": self._topics.channels,
            "deliveries": self._topics.deliveries,
            "grants": self._topics.grants,
            "prices": self._topics.prices,
        }
        self._policies: dict[str, dict[str, PolicyRecord]] = {}
        self._tenants: dict[str, TenantSettingsRecord] = {}
        self._channels: dict[str, dict[str, ChannelRecord]] = {}
        self._deliveries: dict[tuple[str, str], deque[DeliveryAttemptRecord]] = {}
        self._grants: dict[str, dict[str, CapGrantRecord]] = {}
        self._prices: dict[str, PriceTableRecord] = {}
        self.skipped = 0
        options: dict[str, Any] = {} if consumer is None else {"consumer": consumer}
        self._reader = CompactedReader(
            {
                **settings.librdkafka_config(),
                "group.id": f"capstream-view-{uuid.uuid4().hex[:12]}",
                "log_level": 3,
            },
            [names[i] for i in include],
            self._apply_record,
            name="capstream-api-view",
            **options,
        )
        # The reader applies records holding this condition; the getters take it too.
        self._cond = self._reader.progress

    def start(self, timeout_s: float = 30.0) -> None:
        """Assign every partition from the beginning, start consuming, wait until caught up.

        A topic still missing after ``MISSING_GRACE_S`` ends the start with an error naming
        it. Not sooner: a topic created just before (``capstream topics create``, then the
        API) can take a moment to appear in the broker's metadata (seen under load)."""
        self._reader.start()
        started = time.monotonic()
        deadline = started + timeout_s
        while not self._reader.wait_ready(0.05):
            problem = self._reader.problem
            if (
                problem is not None
                and "does not exist" in problem
                and time.monotonic() - started > MISSING_GRACE_S
            ):
                self.stop()
                raise UnavailableError(problem)
            if time.monotonic() > deadline:
                self.stop()
                raise UnavailableError("the policies/tenants view did not catch up in time")

    def stop(self) -> None:
        self._reader.close()

    @property
    def staleness_s(self) -> float:
        """0.0 while connected and caught up; else seconds since the view last was."""
        return self._reader.staleness_s

    def _apply_record(self, msg: Any) -> None:
        self._apply(msg.topic(), msg.key(), msg.value())

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        try:
            if topic == self._topics.policies:
                account_id, _, policy_id = (key or b"").decode().partition("/")
                if value is None:
                    self._policies.get(account_id, {}).pop(policy_id, None)
                    return
                rec = PolicyRecord.from_bytes(value)
                self._policies.setdefault(rec.account_id, {})[rec.policy_id] = rec
            elif topic == self._topics.channels:
                account_id, _, channel_id = (key or b"").decode().partition("/")
                if value is None:
                    self._channels.get(account_id, {}).pop(channel_id, None)
                    return
                ch = ChannelRecord.from_bytes(value)
                self._channels.setdefault(ch.account_id, {})[ch.channel_id] = ch
            elif topic == self._topics.grants:
                account_id, _, grant_id = (key or b"").decode().partition("/")
                if value is None:
                    self._grants.get(account_id, {}).pop(grant_id, None)
                    return
                g = CapGrantRecord.from_bytes(value)
                self._grants.setdefault(g.account_id, {})[g.grant_id] = g
            elif topic == self._topics.prices:
                if value is None:
                    self._prices.pop((key or b"").decode(), None)
                    return
                pt = PriceTableRecord.from_bytes(value)
                self._prices[pt.account_id] = pt
            elif topic == self._topics.deliveries:
                if value is not None:
                    a = DeliveryAttemptRecord.from_bytes(value)
                    log_ = self._deliveries.get((a.account_id, a.channel_id))
                    if log_ is None:
                        log_ = self._deliveries[(a.account_id, a.channel_id)] = deque(
                            maxlen=DELIVERY_LOG_SIZE
                        )
                    log_.append(a)
            elif value is not None:
                t = TenantSettingsRecord.from_bytes(value)
                self._tenants[t.account_id] = t
            else:
                self._tenants.pop((key or b"").decode(), None)
        except (DecodeError, UnicodeDecodeError) as exc:
            # The processors dead-letter bad records of these topics; the view only skips them.
            self.skipped += 1
            log.warning("view skipped a record of %s: %s", topic, exc)

    def wait_for(self, topic: str, partition: int, offset: int, timeout_s: float = 10.0) -> None:
        """Block until the record at ``offset`` is applied (else UnavailableError)."""
        if not self._reader.wait_for(topic, partition, offset, timeout_s):
            raise UnavailableError(
                "the write was accepted but is not visible yet; read it again soon"
            )

    def policies(self, account_id: str) -> list[PolicyRecord]:
        with self._cond:
            return sorted(self._policies.get(account_id, {}).values(), key=lambda p: p.policy_id)

    def policy(self, account_id: str, policy_id: str) -> PolicyRecord | None:
        with self._cond:
            return self._policies.get(account_id, {}).get(policy_id)

    def tenant(self, account_id: str) -> TenantSettingsRecord | None:
        with self._cond:
            return self._tenants.get(account_id)

    def channels(self, account_id: str) -> list[ChannelRecord]:
        """The account's notification channels (``include`` must name ``channels``)."""
        with self._cond:
            return sorted(self._channels.get(account_id, {}).values(), key=lambda c: c.channel_id)

    def channel(self, account_id: str, channel_id: str) -> ChannelRecord | None:
        with self._cond:
            return self._channels.get(account_id, {}).get(channel_id)

    def grants(self, account_id: str) -> list[CapGrantRecord]:
        """The account's credit grants, oldest first (``include`` must name ``grants``)."""
        with self._cond:
            held = self._grants.get(account_id, {}).values()
            return sorted(held, key=lambda g: (g.granted_at_ms, g.grant_id))

    def prices(self, account_id: str) -> PriceTableRecord | None:
        """The account's own price table (``*``: the platform's; ``include`` names ``prices``)."""
        with self._cond:
            return self._prices.get(account_id)

    def tenant_ids(self) -> list[str]:
        """Every account with tenant settings."""
        with self._cond:
            return sorted(self._tenants)

    def deliveries(self, account_id: str, channel_id: str) -> list[DeliveryAttemptRecord]:
        """The latest attempts to deliver to a channel, newest first (``deliveries``)."""
        with self._cond:
            return list(reversed(self._deliveries.get((account_id, channel_id), ())))
