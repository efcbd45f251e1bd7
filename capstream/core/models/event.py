"""One unit of bot usage: the event the core applies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, init=False)  # __init__ by hand: compiled, unlike a generated one
class UsageEvent:
    """One unit of bot usage recorded after an AI call (credits in integer micro-credits)."""

    event_id: str
    account_id: str
    bot_id: str
    conversation_id: str
    category: str
    model: str
    tokens_in: int
    tokens_out: int
    messages: int
    conversation_started: bool
    credits_micro: int
    occurred_at_ms: int
    attributes: dict[str, str]

    def __init__(
        self,
        event_id: str,
        account_id: str,
        bot_id: str,
        conversation_id: str,
        category: str,
        model: str,
        tokens_in: int,
        tokens_out: int,
        messages: int,
        conversation_started: bool,
        credits_micro: int,
        occurred_at_ms: int,
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.event_id = event_id
        self.account_id = account_id
        self.bot_id = bot_id
        self.conversation_id = conversation_id
        self.category = category
        self.model = model
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.messages = messages
        self.conversation_started = conversation_started
        self.credits_micro = credits_micro
        self.occurred_at_ms = occurred_at_ms
        self.attributes = {} if attributes is None else attributes
