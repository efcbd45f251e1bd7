"""Bodies and views of a tenant's notification channels (email lists, signed webhooks, Slack).

Secrets go in only: a webhook's signing secret (chosen by the tenant: the dashboard makes a
random one in the browser and shows it there) and a Slack incoming-webhook URL are sealed
before they reach the channels topic, and a view shows only their last 4 characters.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from capstream.api.models import EmailList, Ident, Text
from capstream.core.models import NOTIFICATION_KINDS
from capstream.streams.records import ChannelRecord, DeliveryAttemptRecord

Kind = Literal[
    "policy_alert", "policy_warning", "cap_reached", "cap_warning", "topup_request",
    "downgrade_started", "downgrade_ended", "throttle_engaged", "block_lifted", "cap_forecast",
]  # fmt: skip
assert set(Kind.__args__) == set(NOTIFICATION_KINDS)  # type: ignore[attr-defined]
ChannelType = Literal["email", "webhook", "slack"]
Url = Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]
Secret = Annotated[SecretStr, Field(min_length=16, max_length=256)]
MAX_GRACE_S = 7 * 86_400


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # as capstream.api.models._Body


class _SlackUrl(_Body):
    slack_url: SecretStr | None = None
    """slack: the incoming-webhook URL (``https://hooks.slack.com/...``): a secret."""

    @field_validator("slack_url")
    @classmethod
    def _https(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("https://"):
            raise ValueError("a Slack incoming-webhook URL starts with https://")
        return v


class NewChannelBody(_SlackUrl):
    """A channel to add. ``email``: ``emails``; ``webhook``: ``url`` and ``secret`` (the
    signing secret, 16-256 characters); ``slack``: ``slack_url``. ``kinds``: the
    notification kinds routed here (empty: every kind)."""

    channel_id: Ident | None = None
    type: ChannelType
    name: Annotated[Text, Field(max_length=200)] = ""
    emails: EmailList = Field(default_factory=list)
    url: Url | None = None
    secret: Secret | None = None
    kinds: Annotated[list[Kind], Field(max_length=len(NOTIFICATION_KINDS))] = Field(
        default_factory=list
    )
    enabled: bool = True


class ChannelPatchBody(_SlackUrl):
    """Only what to change; the signing secret changes by ``rotate``."""

    name: Annotated[Text, Field(max_length=200)] | None = None
    emails: EmailList | None = None
    url: Url | None = None
    kinds: Annotated[list[Kind], Field(max_length=len(NOTIFICATION_KINDS))] | None = None
    enabled: bool | None = None


class RotateBody(_Body):
    """A new signing secret; the previous one also signs for ``grace_seconds`` (default a
    day, 0 = stop at once), so receivers can switch without losing events."""

    secret: Secret
    grace_seconds: Annotated[int, Field(ge=0, le=MAX_GRACE_S)] = 86_400


class ChannelView(BaseModel):
    """A channel as the API shows it: secrets by their last 4 characters only."""

    channel_id: str
    type: ChannelType
    name: str
    emails: list[str]
    url: str
    """webhook: the endpoint; slack: ``https://hooks.slack.com/…`` and the hint."""
    secret_hint: str
    """The last 4 characters of the signing secret (webhook) or Slack URL."""
    previous_secret_valid_until_ms: int | None
    kinds: list[str]
    enabled: bool
    version: int
    updated_at_ms: int

    @classmethod
    def of(cls, rec: ChannelRecord, now_ms: int) -> ChannelView:
        hint = f"…{rec.secret_hint}" if rec.secret_hint else ""
        url = rec.url if rec.type != "slack" else f"https://hooks.slack.com/…{rec.secret_hint}"
        grace = (
            rec.previous_until_ms
            if rec.previous_secret_box and rec.previous_until_ms > now_ms
            else None
        )
        return cls(
            channel_id=rec.channel_id, type=rec.type, name=rec.name, emails=rec.emails, url=url,
            secret_hint=hint, previous_secret_valid_until_ms=grace, kinds=rec.kinds,
            enabled=rec.enabled, version=rec.version, updated_at_ms=rec.updated_at_ms,
        )  # fmt: skip


class SentTest(BaseModel):
    """A test notification is on its way to the channel; its attempts show in the
    channel's delivery log."""

    notification_id: str


class DeliveryView(BaseModel):
    """One attempt to deliver to a channel."""

    notification_id: str
    kind: str
    attempt: int
    at_ms: int
    outcome: str
    status_code: int | None
    error: str
    next_attempt_ms: int | None

    @classmethod
    def of(cls, a: DeliveryAttemptRecord) -> DeliveryView:
        return cls(
            notification_id=a.notification_id, kind=a.kind, attempt=a.attempt, at_ms=a.at_ms,
            outcome=a.outcome, status_code=a.status_code, error=a.error,
            next_attempt_ms=a.next_attempt_ms,
        )  # fmt: skip
