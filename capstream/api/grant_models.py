"""Bodies and views of credit grants (issue 24): credit added to a cap for one period."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from capstream.api.models import INT64_MAX, Ident, Text, _Body
from capstream.streams.records import CapGrantRecord, Category


class GrantBody(_Body):
    """Credit for one category's daily or monthly cap, for the tenant's current local day or
    month (in its timezone). ``grant_id`` makes it idempotent: posting the same grant again
    changes nothing (generated when omitted; ``topup-<request_id>`` when it approves a top-up
    request, so approving one request twice grants once)."""

    grant_id: Ident | None = None
    category: Category
    period: Literal["daily", "monthly"]
    amount_micro: Annotated[int, Field(gt=0, le=INT64_MAX // 2)]
    """Micro-credits added to the cap (1 credit = 1,000,000)."""
    expires_at_ms: Annotated[int, Field(gt=0, le=INT64_MAX)] | None = None
    """It stops applying then, if before the period ends (epoch milliseconds)."""
    request_id: Ident | None = None
    """The top-up request this approves (its ``notification_id``)."""
    granted_by: Annotated[Text, Field(max_length=200)] = ""
    """A name to record with the key that granted it."""
    note: Annotated[Text, Field(max_length=500)] = ""


class GrantView(CapGrantRecord):
    """A grant as recorded, and what it does now."""

    applies_now: bool
    """It raises its cap now (its period is the current one and it has not expired)."""
    cap_micro: int | None
    """The cap it raises, as raised now by every grant that applies (None: no such cap)."""
    ends_at_ms: int
    """When it stops applying: its period's end or its expiry, whichever is first."""


class GrantOut(GrantView):
    """A grant just made (201) or already made under this ``grant_id`` (200)."""

    message: str
