"""Membership lease: a worker writes state only while it surely still owns its partitions.

A consumer group moves a member's partitions to another member once the coordinator has not
heard from it for ``session_timeout``. The coordinator restarts that clock whenever a
heartbeat (or a SyncGroup) of the member *arrives*, which is after the member *sent* it, so a
member whose request sent at ``t`` was answered without error is certainly still a member
until ``t + session_timeout``, whatever happens to it after ``t`` (a freeze, a lost
network). :class:`Membership` keeps that bound, minus a margin for bytes already on the way,
and the worker's writes of state are refused once it has passed:

- every produce request of the changelog producer, and every produce request of Faust's
  producer that carries a record of a state topic (control, notifications, feed), is checked
  at the last step before its bytes go to the socket (:func:`gate_client`), with no
  suspension in between: records queued in a producer before a freeze are refused when the
  process wakes up, not sent late;
- an answer saying the member is unknown or of an old generation ends the lease at once.

The worker treats a lapse like a revoke (see ``Processors``): it drops every in-memory
partition state, what it had read but not flushed, and the local table stores it may have
written without the changelog, and rejoins the group; partitions it gets back are recovered
from the changelogs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import HeartbeatRequest, SyncGroupRequest
from aiokafka.protocol.produce import ProduceRequest

_LOST_CODES = frozenset({22, 25, 82})
"""ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID: this member is out."""


class FencedError(KafkaError):  # type: ignore[misc]
    """A produce request of a worker whose membership may have lapsed: never sent."""

    retriable = False


class Membership:
    """Until when this worker is certainly still a member of its consumer group."""

    def __init__(self, group_id: str, session_timeout_s: float) -> None:
        self.group_id = group_id
        self.session_timeout_s = session_timeout_s
        self.margin_s = max(1.0, session_timeout_s / 4)
        """Bytes handed to the socket before the bound still reach the broker well before
        the coordinator can give the partitions away (it waits the whole timeout, then a
        rebalance, and the next owner then reads the changelogs to their end)."""
        self.until = 0.0
        """``time.monotonic()`` bound (it keeps counting while the process is stopped)."""
        self.generation = -1
        self._lost_at = 0.0
        self._coordinator: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def valid(self) -> bool:
        return time.monotonic() < self.until

    def renew(self, sent_at: float, generation: int) -> None:
        """A heartbeat or SyncGroup sent at ``sent_at`` was answered without error."""
        with self._lock:
            if sent_at > self._lost_at:
                self.until = max(self.until, sent_at + self.session_timeout_s - self.margin_s)
                self.generation = generation

    def lose(self) -> None:
        """The coordinator said this member is unknown or of an old generation."""
        with self._lock:
            self.until = 0.0
            self._lost_at = time.monotonic()

    def rejoin(self) -> None:
        """Ask the group coordinator (on the consumer's thread) for a new assignment."""
        coordinator, loop = self._coordinator, self._loop
        if coordinator is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(coordinator.request_rejoin)


_GROUPS: dict[str, Membership] = {}


def watch(membership: Membership) -> None:
    """Keep ``membership`` from the answers to its group's heartbeats and SyncGroups."""
    _GROUPS[membership.group_id] = membership
    if getattr(GroupCoordinator, "_capstream_watched", False):
        return
    send_req = GroupCoordinator._send_req

    async def _send_req(self: Any, request: Any) -> Any:
        m = _GROUPS.get(self.group_id)
        if m is None or not isinstance(request, (HeartbeatRequest, SyncGroupRequest)):
            return await send_req(self, request)
        m._coordinator, m._loop = self, asyncio.get_running_loop()
        sent_at = time.monotonic()
        generation = self.generation
        response = await send_req(self, request)
        code = getattr(response, "error_code", None)
        if code == 0:
            m.renew(sent_at, generation)
        elif code in _LOST_CODES:
            m.lose()
        return response

    setattr(GroupCoordinator, "_send_req", _send_req)  # noqa: B010
    setattr(GroupCoordinator, "_capstream_watched", True)  # noqa: B010


def gate_client(client: Any, allowed: Callable[[], bool], topics: frozenset[str] | None) -> None:
    """Refuse ``client``'s produce requests (``topics``: only those carrying one of these
    topics; None: all) unless ``allowed()``, checked right before the bytes are written.

    aiokafka's ``AIOKafkaClient.send`` awaits ``ready()`` (no suspension on a connected node)
    and then writes the request to the connection synchronously: after the check below the
    request reaches the socket without the event loop running anything else.
    """
    if getattr(client, "_capstream_gated", False):
        return
    send = client.send

    async def gated_send(node_id: int, request: Any, **kw: Any) -> Any:
        if isinstance(request, ProduceRequest) and (
            topics is None or any(t in topics for t, _ in request._topics)
        ):
            if not await client.ready(node_id, **kw):
                return await send(node_id, request, **kw)  # raises NodeNotReadyError
            if not allowed():
                raise FencedError("membership may have lapsed: state writes refused")
        return await send(node_id, request, **kw)

    client.send = gated_send
    client._capstream_gated = True
