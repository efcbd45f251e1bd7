"""Ready policy bodies for the seeds' practical uses: a ceiling, a per-hour cap, notify-only."""

from __future__ import annotations

from capstream.api.models import AlertAction, BlockAction, NewPolicyBody, Preset, Scope

_HOUR = 3_600
_DAY = 86_400


def presets(bot_id: str | None = None, recipients: list[str] | None = None) -> list[Preset]:
    """The presets, scoped to ``bot_id`` if given (else every bot of the account)."""
    scope: Scope = "bot" if bot_id else "account_each_bot"
    alert = AlertAction(recipients=list(recipients or []))
    return [
        Preset(
            preset="monthly_ceiling",
            description="A generous monthly ceiling for billing peace of mind: email at 50M "
            "tokens over 30 days and pause the bot for a day.",
            policy=NewPolicyBody(
                name="Monthly ceiling",
                metric="tokens",
                threshold=50_000_000,
                window_seconds=30 * _DAY,
                scope=scope,
                bot_id=bot_id,
                alert=alert,
                block=BlockAction(duration_seconds=_DAY),
            ),
        ),
        Preset(
            preset="hourly_cap",
            description="A tighter per-hour cap to catch abuse and loops: more than 500 "
            "messages in an hour pauses the bot for an hour and emails you.",
            policy=NewPolicyBody(
                name="Per-hour cap",
                metric="messages",
                threshold=500,
                window_seconds=_HOUR,
                scope=scope,
                bot_id=bot_id,
                alert=alert,
                block=BlockAction(duration_seconds=_HOUR),
            ),
        ),
        Preset(
            preset="notify_only",
            description="Notify-only: an email when a bot passes 1M tokens in a day; "
            "nothing is blocked.",
            policy=NewPolicyBody(
                name="Daily heads-up",
                metric="tokens",
                threshold=1_000_000,
                window_seconds=_DAY,
                scope=scope,
                bot_id=bot_id,
                alert=alert,
            ),
        ),
    ]
