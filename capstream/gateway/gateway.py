"""``Gateway``: ask before each AI call; the core decides from the local ``ControlView``."""

from __future__ import annotations

import threading
from time import time_ns
from types import TracebackType

from capstream.core.gate import DEFAULT_LEDGER_ENTRIES, FallbackLedger, gate
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORY_INDEX,
    DEFAULT_PREMIUM_MODEL,
    FAST_BATCHING_S,
    NEVER,
    Verdict,
)
from capstream.gateway.caphits import CapHitReporter
from capstream.gateway.control_view import (
    DEFAULT_MAX_DISCONNECTED_S,
    ControlView,
    DisconnectPolicy,
)
from capstream.gateway.errors import UnknownCategoryError
from capstream.streams.settings import Settings

CONTROL_UNAVAILABLE = Verdict("paused", None, 0, None, "control_unavailable", None)
"""The verdict of a fail-closed gateway whose control view is stale (or not ready yet)."""


class _SharedLedger(FallbackLedger):
    """A ledger several request threads may share: claims are atomic."""

    __slots__ = ("_mutex",)

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries)
        self._mutex = threading.Lock()

    def claim_fallback(self, key: tuple[str, str, str, str]) -> bool:
        with self._mutex:
            return super().claim_fallback(key)

    def record_reply(self, key: tuple[str, str, str], at_ms: int) -> None:
        with self._mutex:
            super().record_reply(key, at_ms)


class Gateway:
    """Answer ``gate()`` from memory, report capped attempts, and follow the control topic.

    ``gate(account, bot, conversation, category)`` returns the core's :class:`Verdict`:
    ``allow`` (``model``, ``batching_interval_s`` of 3 or 60, maybe ``reply_at_ms``),
    ``fallback`` (send ``text``: once per conversation per cap period), ``skip`` (capped
    media, or text after its fallback: do nothing) or ``paused`` (a policy block). A bot the
    control topic has not mentioned yet gets its account-wide state, or else ``allow`` with
    ``default_model`` and 3-second batching. Every capped attempt is reported to the
    caphits topic without waiting. Thread-safe.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_disconnect: DisconnectPolicy = "open",
        max_disconnected_s: float = DEFAULT_MAX_DISCONNECTED_S,
        default_model: str = DEFAULT_PREMIUM_MODEL,
        ledger_entries: int = DEFAULT_LEDGER_ENTRIES,
        view: ControlView | None = None,
        reporter: CapHitReporter | None = None,
    ) -> None:
        self.view = view or ControlView(
            settings, on_disconnect=on_disconnect, max_disconnected_s=max_disconnected_s
        )
        self.reporter = reporter or CapHitReporter(settings)
        self.ledger: FallbackLedger = _SharedLedger(ledger_entries)
        self.unknown_verdict = Verdict(
            "allow", default_model, FAST_BATCHING_S, None, "no_state_yet", None
        )
        self._states = self.view.states

    def gate(
        self,
        account_id: str,
        bot_id: str,
        conversation_id: str,
        category: str,
        now: int | None = None,
    ) -> Verdict:
        """Decide one AI call of ``category``; ``now`` is epoch milliseconds (default: now)."""
        if self.view.closed:
            return CONTROL_UNAVAILABLE
        states = self._states
        state = states.get((account_id, bot_id)) or states.get((account_id, ACCOUNT_WIDE_BOT))
        if state is None:
            if category not in CATEGORY_INDEX:
                raise UnknownCategoryError(category)
            return self.unknown_verdict
        # The core's own first step (see core.gate: the verdicts its state precomputed),
        # taken here to save a call per AI call and, while they never expire, the clock.
        until = state._fast_until_ms
        if until == NEVER or (time_ns() // 1_000_000 if now is None else now) < until:
            verdict = state._fast.get(category)
            if verdict is not None:
                return verdict
        if category not in CATEGORY_INDEX:  # the core's own error would be another type
            raise UnknownCategoryError(category)
        verdict = gate(
            state,
            category,
            conversation_id,
            time_ns() // 1_000_000 if now is None else now,
            self.ledger,
        )
        if verdict.cap_hit is not None:
            self.reporter.report(verdict.cap_hit)
        return verdict

    @property
    def ready(self) -> bool:
        return self.view.ready

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the control view has read every state (or ``timeout``)."""
        return self.view.wait_ready(timeout)

    @property
    def staleness_s(self) -> float:
        return self.view.staleness_s

    def close(self) -> None:
        """Stop following the control topic and deliver the pending cap hits."""
        self.view.close()
        self.reporter.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
