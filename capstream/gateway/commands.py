"""``capstream gate``: what a gateway would answer for a bot right now (nothing is reported)."""

from __future__ import annotations

import time

from rich.console import Console

from capstream.core.gate import FallbackLedger, gate
from capstream.core.models import CATEGORY_INDEX
from capstream.gateway.control_view import ControlView
from capstream.gateway.errors import GatewayError, UnknownCategoryError
from capstream.streams.settings import Settings


def gate_command(
    settings: Settings,
    account_id: str,
    bot_id: str,
    conversation_id: str,
    category: str,
    timeout: float,
    console: Console,
) -> None:
    """Read the control topic, then print the bot's state and the verdict of one AI call.

    A dry run: the attempt is not reported to the caphits topic and no fallback is claimed.
    """
    if category not in CATEGORY_INDEX:
        raise UnknownCategoryError(category)
    with ControlView(settings) as view:
        if not view.wait_ready(timeout):
            raise GatewayError(
                f"the control topic could not be read within {timeout:g}s: is Kafka at "
                f"{settings.bootstrap_servers} up, and were the topics created?"
            )
        state = view.get(account_id, bot_id)
        console.print(f"{len(view.states)} enforcement states in {view.topic}")
    if state is None:
        console.print(f"no state for {account_id}/{bot_id} (nor account-wide): allowed by default")
        return
    console.print(
        f"state of {state.account_id}/{state.bot_id} (version {state.version}): "
        f"model {state.model}, batching {state.batching_interval_s}s, "
        f"blocked until {state.blocked_until_ms}, capped {sorted(state.caps) or 'nothing'}"
    )
    now = time.time_ns() // 1_000_000
    verdict = gate(state, category, conversation_id, now, FallbackLedger(), bot_id)
    console.print(
        f"verdict for a {category} call: [bold]{verdict.action}[/]"
        + (
            f", model {verdict.model}, batching {verdict.batching_interval_s}s"
            if verdict.model
            else ""
        )
        + (f", reason {verdict.reason}" if verdict.reason else "")
        + (f", text {verdict.text!r}" if verdict.text else "")
    )
