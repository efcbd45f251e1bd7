"""``ControlView``: every bot's latest enforcement state in memory, from the control topic."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, NamedTuple

from confluent_kafka import Consumer

from capstream.core.models import ACCOUNT_WIDE_BOT, EnforcementState, ValueBlock
from capstream.errors import DecodeError
from capstream.gateway.errors import GatewayError
from capstream.streams.compacted import CompactedReader, ConsumerFactory
from capstream.streams.control_wire import decode_state
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.value_blocks import decode_value_block

log = logging.getLogger(__name__)
DisconnectPolicy = Literal["open", "closed"]
DEFAULT_MAX_DISCONNECTED_S = 300.0


class ViewStats(NamedTuple):
    """Counters of a :class:`ControlView`."""

    states: int
    """bots (and account-wide states) held"""
    applied: int
    """records that replaced a state (a newer version)"""
    ignored: int
    """records older than (or equal to) the state held: replays and stragglers"""
    invalid: int
    """records that could not be decoded; skipped and logged"""
    deleted: int
    """tombstones applied"""
    value_blocks: int = 0
    """attribute values blocked (ended blocks included until their account's next record)"""


class ControlView:
    """The latest ``EnforcementState`` per (account, bot), kept current by a background thread.

    It assigns itself every partition of the compacted control topic and reads from the
    beginning (no consumer group, nothing committed), keeps a state only if its ``version`` is
    newer than the one held, and is :attr:`ready` once it has read up to the end offsets the
    topic had when it started (``capstream.streams.compacted.CompactedReader`` does the
    reading; ``consumer=`` injects its consumer). librdkafka reconnects by itself, so a
    broker restart costs only the seconds it is away.

    While disconnected (or behind) the view keeps answering from what it holds and
    :attr:`staleness_s` grows. After ``max_disconnected_s`` it applies ``on_disconnect``:

    - ``"open"`` (default): keep answering from the last known states. Blocks and caps that
      were in force stay in force until their own end times; only decisions made during the
      outage are missed. A guardrail outage must not become an outage of every bot: the
      product promise is that customers never see an error, and the overspend an outage
      allows is bounded by its length.
    - ``"closed"``: :attr:`closed` becomes True (gateways answer ``paused``) until the view is
      current again; also before the first catch-up. For tenants to whom any overspend is
      worse than silence.

    ``on_update(state)`` is called from the view's thread after each newer state is stored.

    It reads the value-blocks topic the same way (``value_blocks_topic``): :attr:`value_blocks`
    holds each account's blocked attribute values (a per-attribute policy's block), the
    latest record of each (bot, attribute, value) winning; a block whose end has passed is
    ignored by :func:`~capstream.core.gate.value_block_verdict` and dropped when its account's
    next record arrives.

    The default limit, 300 s, rides out a broker restart or leader election without tripping
    fail-closed gateways.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_disconnect: DisconnectPolicy = "open",
        max_disconnected_s: float = DEFAULT_MAX_DISCONNECTED_S,
        topic: str | None = None,
        value_blocks_topic: str | None = None,
        on_update: Callable[[EnforcementState], None] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        consumer: ConsumerFactory = Consumer,
    ) -> None:
        if on_disconnect not in ("open", "closed"):
            raise GatewayError(f"on_disconnect must be 'open' or 'closed', not {on_disconnect!r}")
        if max_disconnected_s <= 0:
            raise GatewayError("max_disconnected_s must be positive")
        self.topic = topic or Topics(settings.topic_prefix).control
        self.value_blocks_topic = value_blocks_topic or Topics(settings.topic_prefix).value_blocks
        self.on_disconnect = on_disconnect
        self.max_disconnected_s = max_disconnected_s
        self.on_update = on_update
        self.states: dict[tuple[str, str], EnforcementState] = {}
        """(account_id, bot_id) -> state. Only the view's thread writes it: look keys up
        freely, but iterate over a copy (``dict(view.states)``)."""
        self.value_blocks: dict[str, dict[tuple[str, str, str], ValueBlock]] = {}
        """account_id -> (bot_id or ``*``, attribute, value) -> its block. Only the view's
        thread writes it (it replaces an account's dict rather than changing it)."""
        self.closed = on_disconnect == "closed"
        """True while gateways must refuse AI calls (fail-closed and stale, or not ready)."""
        self._applied = self._ignored = self._invalid = self._deleted = 0
        self._warned = False
        self._reader = CompactedReader(
            {
                **settings.librdkafka_config(),
                # Required by librdkafka; the view never joins the group nor commits.
                "group.id": f"capstream-control-view-{uuid.uuid4().hex[:12]}",
                "log_level": 3,
                "logger": logging.getLogger("capstream.gateway.librdkafka"),
                **(consumer_config or {}),
            },
            [self.topic, self.value_blocks_topic],
            self._apply,
            name="control-view",
            on_step=self._refresh_closed,
            on_ready=self._on_ready,
            consumer=consumer,
        )
        self._reader.start()

    # -- reading -------------------------------------------------------------------------

    def get(self, account_id: str, bot_id: str) -> EnforcementState | None:
        """The bot's state, else its account-wide state, else None (nothing known yet)."""
        states = self.states
        return states.get((account_id, bot_id)) or states.get((account_id, ACCOUNT_WIDE_BOT))

    @property
    def ready(self) -> bool:
        """True once every state that existed at start has been read."""
        return self._reader.ready

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until :attr:`ready` (or ``timeout``); returns :attr:`ready`."""
        return self._reader.wait_ready(timeout)

    @property
    def staleness_s(self) -> float:
        """0.0 while connected and caught up; else seconds since the view was last current."""
        return self._reader.staleness_s

    @property
    def stats(self) -> ViewStats:
        blocked = sum(len(b) for b in list(self.value_blocks.values()))
        return ViewStats(
            len(self.states), self._applied, self._ignored, self._invalid, self._deleted, blocked
        )

    def close(self) -> None:
        """Stop the thread and the consumer."""
        self._reader.close()

    def __enter__(self) -> ControlView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the reader's thread ---------------------------------------------------------------

    def _apply(self, msg: Any) -> None:
        if msg.topic() == self.value_blocks_topic:
            self._apply_value_block(msg)
            return
        value = msg.value()
        if value is None:
            self._tombstone(msg.key())
            return
        try:
            state = decode_state(value)
        except DecodeError as exc:
            self._skip(msg, exc)
            return
        key = (state.account_id, state.bot_id)
        held = self.states.get(key)
        if held is not None and held.version >= state.version:
            self._ignored += 1
            return
        self.states[key] = state
        self._applied += 1
        if self.on_update is not None:
            try:
                self.on_update(state)
            except Exception:
                log.exception("control view: on_update raised")

    def _skip(self, msg: Any, exc: DecodeError) -> None:
        self._invalid += 1
        log.warning(
            "control view: skipped record %s[%d]@%d: %s",
            msg.topic(), msg.partition(), msg.offset(), exc,
        )  # fmt: skip

    def _apply_value_block(self, msg: Any) -> None:
        value = msg.value()
        if value is None:  # not written by capstream (an ended block is ignored instead)
            return
        try:
            block = decode_value_block(value)
        except DecodeError as exc:
            self._skip(msg, exc)
            return
        now = time.time_ns() // 1_000_000
        held = self.value_blocks.get(block.account_id, {})
        # A new dict (gateways read the old one meanwhile), without the ended blocks.
        blocks = {k: b for k, b in held.items() if b.blocked_until_ms > now}
        blocks[(block.bot_id, block.attribute, block.value)] = block
        self.value_blocks[block.account_id] = blocks
        self._applied += 1

    def _tombstone(self, key: bytes | None) -> None:
        text = (key or b"").decode(errors="replace")
        # Ids may contain "/": find the split that names a state we hold.
        for i, ch in enumerate(text):
            if ch == "/" and self.states.pop((text[:i], text[i + 1 :]), None) is not None:
                self._deleted += 1
                return

    def _on_ready(self) -> None:
        log.info("control view ready: %d states from %s", len(self.states), self.topic)

    def _refresh_closed(self) -> None:
        stale = self.staleness_s > self.max_disconnected_s
        if self.on_disconnect == "closed":
            self.closed = stale or not self.ready
        if stale and not self._warned:
            self._warned = True
            log.warning(
                "control view: no news from %s for %.0fs; failing %s",
                self.topic,
                self.staleness_s,
                self.on_disconnect,
            )
        elif not stale and self._warned:
            self._warned = False
            log.warning("control view: current again")
