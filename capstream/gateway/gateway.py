"""``Gateway``: ask before each AI call; the core decides from the local ``ControlView``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from time import time_ns
from types import TracebackType

from capstream.core.gate import DEFAULT_LEDGER_ENTRIES, FallbackLedger, gate, value_block_verdict
from capstream.core.models import (
    ACCOUNT_WIDE_BOT,
    CATEGORY_INDEX,
    DEFAULT_PREMIUM_MODEL,
    FAST_BATCHING_S,
    Action,
    Verdict,
)
from capstream.gateway.caphits import CapHitReporter
from capstream.gateway.control_view import (
    DEFAULT_MAX_DISCONNECTED_S,
    ControlView,
    DisconnectPolicy,
)
from capstream.gateway.errors import UnknownCategoryError
from capstream.gateway.ledger import KafkaLedger, SharedLedger
from capstream.streams.settings import Settings

CONTROL_UNAVAILABLE = Verdict(Action.PAUSED, None, 0, None, "control_unavailable", None)
"""The verdict of a fail-closed gateway whose control view is stale (or not ready yet)."""


class Gateway:
    """Answer ``gate()`` from memory, report capped attempts, and follow the control topic.

    ``gate(account, bot, conversation, category)`` returns the core's :class:`Verdict`:
    ``allow`` (``model``, ``batching_interval_s`` of 3 or 60, maybe ``reply_at_ms``),
    ``fallback`` (send ``text``: once per conversation per cap period), ``skip`` (capped
    media, or text after its fallback: do nothing) or ``paused`` (a policy block). A bot the
    control topic has not mentioned yet gets its account-wide state, or else ``allow`` with
    ``default_model`` and 3-second batching. Every capped attempt is reported to the
    caphits topic without waiting. Thread-safe.

    ``attributes`` (name -> value: ``end_user``, ``api_key``, ``team``, and ``model`` for a
    policy counted per model) are checked first against the value blocks of the account
    (per-attribute policies): a blocked value is ``paused`` (reason
    ``policy_block:<policy_id>``, ``resumes_at_ms`` the block's end), for its bot or, for an
    ``account_total`` policy, every bot. An account without value blocks costs one lookup.
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
        share_ledger: bool = True,
        ledger: FallbackLedger | None = None,
    ) -> None:
        self.view = view or ControlView(
            settings, on_disconnect=on_disconnect, max_disconnected_s=max_disconnected_s
        )
        self.reporter = reporter or CapHitReporter(settings)
        if ledger is None:
            shared = share_ledger and settings is not None
            ledger = (
                KafkaLedger(settings, ledger_entries) if shared else SharedLedger(ledger_entries)
            )
        self.ledger: FallbackLedger = ledger
        self.unknown_verdict = Verdict(
            Action.ALLOW, default_model, FAST_BATCHING_S, None, "no_state_yet", None
        )
        self._states = self.view.states
        self._value_blocks = self.view.value_blocks

    def gate(
        self,
        account_id: str,
        bot_id: str,
        conversation_id: str,
        category: str,
        now: int | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Verdict:
        """Decide one AI call of ``category``; ``now`` is epoch milliseconds (default: now);
        ``attributes``: the call's end user, API key, team, model (see the class doc)."""
        if self.view.closed:
            return CONTROL_UNAVAILABLE
        if attributes:
            blocks = self._value_blocks.get(account_id)
            if blocks:
                if category not in CATEGORY_INDEX:
                    raise UnknownCategoryError(category)
                if now is None:
                    now = time_ns() // 1_000_000
                blocked = value_block_verdict(blocks, bot_id, attributes, now)
                if blocked is not None:
                    return blocked
        states = self._states
        state = states.get((account_id, bot_id)) or states.get((account_id, ACCOUNT_WIDE_BOT))
        if state is None:
            if category not in CATEGORY_INDEX:
                raise UnknownCategoryError(category)
            return self.unknown_verdict
        # The core's own first step (the verdicts its state precomputed), reading the clock
        # only for a verdict with an end (a downgrade, a block).
        if now is None:
            verdict = state.fast_verdict(category, -1)
            if verdict is None:
                now = time_ns() // 1_000_000
                verdict = state.fast_verdict(category, now)
        else:
            verdict = state.fast_verdict(category, now)
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
            bot_id,
        )
        if verdict.cap_hit is not None:
            self.reporter.report(verdict.cap_hit)
        return verdict

    @property
    def ready(self) -> bool:
        return self.view.ready and getattr(self.ledger, "ready", True)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the control view has read every state and the shared ledger what
        gateways sent before (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        if not self.view.wait_ready(timeout):
            return False
        if isinstance(self.ledger, KafkaLedger):
            return self.ledger.wait_ready(max(0.0, deadline - time.monotonic()))
        return True

    @property
    def staleness_s(self) -> float:
        return self.view.staleness_s

    def close(self) -> None:
        """Stop following the control topic and deliver the pending cap hits."""
        self.view.close()
        self.reporter.close()
        if isinstance(self.ledger, KafkaLedger):
            self.ledger.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
