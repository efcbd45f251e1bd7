"""``ControlView``: every bot's latest enforcement state in memory, from the control topic."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from capstream.core.models import ACCOUNT_WIDE_BOT, EnforcementState
from capstream.errors import DecodeError
from capstream.gateway.errors import GatewayError
from capstream.streams.control_wire import decode_state
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics

log = logging.getLogger(__name__)
DisconnectPolicy = Literal["open", "closed"]
DEFAULT_MAX_DISCONNECTED_S = 300.0
_METADATA_REFRESH_S = 30.0
_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})


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


class ControlView:
    """The latest ``EnforcementState`` per (account, bot), kept current by a background thread.

    It assigns itself every partition of the compacted control topic and reads from the
    beginning (no consumer group, nothing committed), keeps a state only if its ``version`` is
    newer than the one held, and is :attr:`ready` once it has read up to the end offsets the
    topic had when it started. librdkafka reconnects by itself, so a broker restart costs
    only the seconds it is away.

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
        on_update: Callable[[EnforcementState], None] | None = None,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if on_disconnect not in ("open", "closed"):
            raise GatewayError(f"on_disconnect must be 'open' or 'closed', not {on_disconnect!r}")
        if max_disconnected_s <= 0:
            raise GatewayError("max_disconnected_s must be positive")
        self.topic = topic or Topics(settings.topic_prefix).control
        self.on_disconnect = on_disconnect
        self.max_disconnected_s = max_disconnected_s
        self.on_update = on_update
        self.states: dict[tuple[str, str], EnforcementState] = {}
        """(account_id, bot_id) -> state. Only the view's thread writes it: look keys up
        freely, but iterate over a copy (``dict(view.states)``)."""
        self.closed = on_disconnect == "closed"
        """True while gateways must refuse AI calls (fail-closed and stale, or not ready)."""
        self._config: dict[str, Any] = {
            **settings.librdkafka_config(),
            # Required by librdkafka; the view never joins the group nor commits.
            "group.id": f"capstream-control-view-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "statistics.interval.ms": 1000,
            "stats_cb": self._on_stats,
            "error_cb": self._on_error,
            "log_level": 3,
            "logger": logging.getLogger("capstream.gateway.librdkafka"),
            **(consumer_config or {}),
        }
        self._consumer: Any = None
        self._targets: dict[int, int] = {}
        self._caught_up: set[int] = set()
        self._ready = threading.Event()
        self._current = False
        self._current_at = time.monotonic()
        self._applied = self._ignored = self._invalid = self._deleted = 0
        self._stop = threading.Event()
        self._warned = False
        self._partitions_checked = 0.0
        self._meta_warned_at = -1e9
        self._thread = threading.Thread(target=self._run, name="control-view", daemon=True)
        self._thread.start()

    # -- reading -------------------------------------------------------------------------

    def get(self, account_id: str, bot_id: str) -> EnforcementState | None:
        """The bot's state, else its account-wide state, else None (nothing known yet)."""
        states = self.states
        return states.get((account_id, bot_id)) or states.get((account_id, ACCOUNT_WIDE_BOT))

    @property
    def ready(self) -> bool:
        """True once every state that existed at start has been read."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until :attr:`ready` (or ``timeout``); returns :attr:`ready`."""
        return self._ready.wait(timeout)

    @property
    def staleness_s(self) -> float:
        """0.0 while connected and caught up; else seconds since the view was last current."""
        if self._current:
            return 0.0
        return time.monotonic() - self._current_at

    @property
    def stats(self) -> ViewStats:
        return ViewStats(
            len(self.states), self._applied, self._ignored, self._invalid, self._deleted
        )

    def close(self) -> None:
        """Stop the thread and the consumer."""
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> ControlView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread -----------------------------------------------------------

    def _run(self) -> None:
        self._consumer = Consumer(self._config)
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception:  # keep serving the states held; try again shortly
                    log.exception("control view: unexpected error; retrying in 1s")
                    self._stop.wait(1.0)
        finally:
            self._consumer.close()

    def _step(self) -> None:
        if time.monotonic() - self._partitions_checked > _METADATA_REFRESH_S:
            self._assign_new_partitions()
        if not self._targets:
            self._stop.wait(0.5)
            self._refresh_closed()
            return
        # poll() returns on the first record (consume() would wait out its timeout), then
        # consume(0) takes whatever else has arrived.
        first = self._consumer.poll(0.1)
        if first is None:
            self._refresh_closed()
            return
        for msg in [first, *self._consumer.consume(1000, 0)]:
            err = msg.error()
            if err is None:
                self._apply(msg)
                if msg.offset() + 1 >= self._targets.get(msg.partition(), 0):
                    self._reached(msg.partition())
            elif err.code() == KafkaError._PARTITION_EOF:
                self._reached(msg.partition())
            else:
                log.warning("control view: %s", err.str())
        self._refresh_closed()

    def _assign_new_partitions(self) -> None:
        problem, meta = None, None
        try:
            meta = self._consumer.list_topics(self.topic, timeout=2).topics.get(self.topic)
        except Exception as exc:  # KafkaException: brokers unreachable
            problem = f"cannot reach Kafka ({exc})"
        if problem is None and (meta is None or meta.error is not None or not meta.partitions):
            problem = f"topic {self.topic} is missing: run `capstream topics create`"
        now = time.monotonic()
        if problem is not None or meta is None:
            if now - self._meta_warned_at > 30:
                self._meta_warned_at = now
                log.error("control view: %s", problem)
            self._stop.wait(1.0)
            return
        self._partitions_checked = now
        new = [p for p in meta.partitions if p not in self._targets]
        if not new:
            return
        for p in new:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=5
                )
            except Exception:  # end of partition (EOF) will tell instead
                high = 1 << 62
            self._targets[p] = high
            if high == 0:
                self._caught_up.add(p)
        self._consumer.incremental_assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new]
        )
        self._check_ready()

    def _apply(self, msg: Any) -> None:
        value = msg.value()
        if value is None:
            self._tombstone(msg.key())
            return
        try:
            state = decode_state(value)
        except DecodeError as exc:
            self._invalid += 1
            log.warning(
                "control view: skipped record %s[%d]@%d: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc,
            )
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

    def _tombstone(self, key: bytes | None) -> None:
        text = (key or b"").decode(errors="replace")
        # Ids may contain "/": find the split that names a state we hold.
        for i, ch in enumerate(text):
            if ch == "/" and self.states.pop((text[:i], text[i + 1 :]), None) is not None:
                self._deleted += 1
                return

    def _reached(self, partition: int) -> None:
        if partition not in self._caught_up:
            self._caught_up.add(partition)
            self._check_ready()

    def _check_ready(self) -> None:
        if not self._ready.is_set() and self._caught_up >= set(self._targets):
            self._mark_current(True)
            self._ready.set()
            log.info("control view ready: %d states from %s", len(self.states), self.topic)

    def _mark_current(self, current: bool) -> None:
        if current:
            self._current_at = time.monotonic()
        self._current = current

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

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _DOWN:
            self._current = False
        log.debug("control view: %s", err.str())

    def _on_stats(self, raw: str) -> None:
        """Current = every partition leader is up and we have read up to its high offset."""
        if not self._ready.is_set():
            return
        stats = json.loads(raw)
        brokers = {b["nodeid"]: b["state"] for b in stats.get("brokers", {}).values()}
        partitions = stats.get("topics", {}).get(self.topic, {}).get("partitions", {})
        current = True
        for p in self._targets:
            ps = partitions.get(str(p))
            if ps is None or brokers.get(ps.get("leader")) != "UP":
                current = False
                break
            read = max(ps.get("app_offset", -1), ps.get("eof_offset", -1))
            if ps.get("fetch_state") != "active" or read < ps.get("hi_offset", 0):
                current = False
                break
        self._mark_current(current)
