"""What one delivery attempt came to, and the backoff before the next one."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["delivered", "retry", "refused", "uncertain"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``delivered``; ``retry`` (surely not delivered: try again); ``refused`` (rejected for
    good); ``uncertain`` (the link broke while sending: maybe delivered, so never retried)."""

    kind: Kind
    error: str = ""
    status_code: int | None = None
    """The HTTP status the endpoint answered (webhooks, Slack); None: no answer, or email."""


DELIVERED = Outcome("delivered")


def backoff_s(
    attempts: int, max_s: float, base_s: float = 1.0, rng: random.Random | None = None
) -> float:
    """Seconds before attempt ``attempts + 1``: exponential from ``base_s``, capped, ±20%."""
    raw = min(max_s, base_s * (2 ** max(0, attempts - 1)))
    jitter = float((rng or random).uniform(0.8, 1.2))
    return float(min(max_s, raw * jitter))
