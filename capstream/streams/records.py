"""Pydantic models of the wire records: validation at the edges, exact Avro round-trips."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from capstream.errors import DecodeError
from capstream.streams.codecs import codec

MAX_DEAD_LETTER_BYTES = 512 * 1024
"""A dead letter (value + key) is at most this large: half the broker's default record limit
(``message.max.bytes``, 1 MiB) and the producers' request limit, whatever it holds."""
MAX_DEAD_LETTER_ERROR = 2_000
"""Characters of a dead letter's error text."""
MAX_DEAD_LETTER_KEY = 1_024
"""Bytes of the source key a cut dead letter keeps."""

Category = Literal["text", "vision", "audio", "documents"]
CapPeriod = Literal["daily", "monthly"]
Id = Annotated[str, Field(min_length=1, max_length=200)]
NonNeg = Annotated[int, Field(ge=0)]
EpochMs = Annotated[int, Field(ge=0)]


class WireRecord(BaseModel):
    """A record with an Avro schema of the same name in ``schemas/``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_name: ClassVar[str]

    def to_bytes(self) -> bytes:
        """Avro single-object encoding of this record."""
        return codec(self.schema_name).encode(self.model_dump())

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Self:
        """Decode and validate; raises ``DecodeError`` naming what was wrong."""
        return cls.from_avro(codec(cls.schema_name).decode(data))

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        try:
            return cls.model_validate(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise DecodeError(
                f"invalid {cls.schema_name}: {where}: {first['msg']}", reason="invalid"
            ) from exc


class UsageEventRecord(WireRecord):
    schema_name: ClassVar[str] = "UsageEvent"

    event_id: Id
    account_id: Id
    bot_id: Id
    conversation_id: Id
    category: Category
    model: str = Field(max_length=200)
    tokens_in: NonNeg = 0
    tokens_out: NonNeg = 0
    messages: NonNeg = 0
    conversation_started: bool = False
    credits_micro: NonNeg = 0
    occurred_at_ms: EpochMs
    attributes: dict[str, str] = Field(default_factory=dict)


class UsageBatchRecord(WireRecord):
    schema_name: ClassVar[str] = "UsageBatch"

    batch_id: Id
    producer: str = ""
    sent_at_ms: EpochMs
    events: list[UsageEventRecord]


class CapStatusRecord(WireRecord):
    schema_name: ClassVar[str] = "CapStatus"

    period: CapPeriod
    period_key: str
    resumes_at_ms: EpochMs


class EnforcementStateRecord(WireRecord):
    schema_name: ClassVar[str] = "EnforcementState"

    account_id: Id
    bot_id: Id
    version: NonNeg
    updated_at_ms: EpochMs
    blocked_until_ms: int | None = None
    block_policy_id: str | None = None
    model: str
    downgraded_until_ms: int | None = None
    batching_interval_s: Annotated[int, Field(ge=1)] = 3
    throttled_until_ms: int | None = None
    throttle_reason: str | None = None
    caps: dict[Category, CapStatusRecord] = Field(default_factory=dict)
    plan: str = "free"
    fallback_text_daily: str = ""
    fallback_text_monthly: str = ""
    premium_model: str = ""


class AlertActionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    recipients: list[str] = Field(default_factory=list)


class BlockActionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    duration_seconds: Annotated[int, Field(gt=0)]


class PolicyRecord(WireRecord):
    schema_name: ClassVar[str] = "Policy"

    policy_id: Id
    account_id: Id
    name: str = ""
    metric: Literal["tokens", "messages", "conversations", "credits"]
    threshold: Annotated[int, Field(gt=0)]
    window_seconds: Annotated[int, Field(ge=0, le=31 * 86_400)]
    """60 s to 31 days; 0 for a calendar policy (``period``)."""
    scope: Literal["bot", "account_each_bot", "account_total"]
    bot_id: str | None = None
    category: Category | None = None
    alert: AlertActionRecord | None = None
    block: BlockActionRecord | None = None
    enabled: bool = True
    version: NonNeg = 0
    updated_at_ms: EpochMs = 0
    warn_percents: list[int] | None = None
    """Soft thresholds in percent of ``threshold``; None: 50, 80, 90; empty: none."""
    period: Literal["day", "week", "month"] | None = None
    """A calendar policy's period (the tenant's local day, week or month); None: rolling."""
    threshold_amount_micro: NonNeg | None = None
    """A credits policy's threshold in money (micro-units of the tenant's currency) as the
    admin gave it; ``threshold`` is its conversion to micro-credits. None: in credits."""
    per: Literal["end_user", "api_key", "team", "model"] | None = None
    """A per-attribute policy: the event attribute counted per value; None: whole bot/account."""
    per_value: str | None = None
    """With ``per``: only this value is counted; None: every value separately."""

    @model_validator(mode="after")
    def _window_or_period(self) -> PolicyRecord:
        if self.period is None and self.window_seconds < 60:
            raise ValueError("window_seconds must be at least 60 (or set a calendar period)")
        if self.period is not None and self.window_seconds != 0:
            raise ValueError("a calendar policy (period) has window_seconds 0")
        return self


class CategoryCapsRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    daily_micro: NonNeg | None = None
    monthly_micro: NonNeg | None = None
    daily_warn_percents: list[int] | None = None
    """Warning levels in percent of the daily cap; None: 50, 80, 90; empty: none."""
    monthly_warn_percents: list[int] | None = None
    daily_forecast_lead_s: NonNeg | None = None
    """Send a ``cap_forecast`` when the pace reaches the daily cap within this many seconds."""
    monthly_forecast_lead_s: NonNeg | None = None
    daily_amount_micro: NonNeg | None = None
    """The daily cap in money (micro-units of the tenant's currency) as the admin gave it;
    ``daily_micro`` is its conversion to credits. None: given in credits."""
    monthly_amount_micro: NonNeg | None = None


class TenantSettingsRecord(WireRecord):
    schema_name: ClassVar[str] = "TenantSettings"

    account_id: Id
    timezone: str = "UTC"
    language: Literal["en", "ur", "ms", "ar", "bn", "id", "zh"] = "en"
    plan: Literal["free", "starter", "pro", "enterprise"] = "free"
    owner_email: str = ""
    caps: dict[Category, CategoryCapsRecord] = Field(default_factory=dict)
    fallback_message: str = Field(default="", max_length=1000)
    auto_downgrade: bool = False
    premium_model: str = "claude-sonnet-4-6"
    downgrade_model: str = "claude-haiku"
    throttle: Literal["off", "smart", "strict"] = "smart"
    muted_notifications: list[str] = Field(default_factory=list)
    """Notification kinds the tenant switched off (``core.models.OPTIONAL_KINDS``)."""
    version: NonNeg = 0
    updated_at_ms: EpochMs = 0


class BotResumeRecord(WireRecord):
    schema_name: ClassVar[str] = "BotResume"

    account_id: Id
    bot_id: Id
    resumed_at_ms: EpochMs
    resumed_by: str


class CapGrantRecord(WireRecord):
    """Credit granted to one category's cap for one local day or month (issue 24)."""

    schema_name: ClassVar[str] = "CapGrant"

    grant_id: Id
    account_id: Id
    category: Category
    period: CapPeriod
    period_key: Annotated[str, Field(min_length=7, max_length=10)]
    amount_micro: Annotated[int, Field(gt=0, lt=1 << 62)]
    expires_at_ms: EpochMs | None = None
    granted_at_ms: EpochMs
    granted_by: str
    request_id: str | None = None
    note: str = ""


class ConversationSentRecord(WireRecord):
    """What a gateway sent a conversation (the gateway ledger encodes it with the codec
    directly, per claim; this model is for tools and tests)."""

    schema_name: ClassVar[str] = "ConversationSent"

    kind: Literal["fallback", "reply"]
    account_id: Id
    bot_id: Id
    conversation_id: Id
    period_key: str = ""
    at_ms: EpochMs
    expires_at_ms: EpochMs
    gateway_id: str


class NotificationRecord(WireRecord):
    schema_name: ClassVar[str] = "Notification"

    notification_id: Id
    account_id: Id
    kind: str
    policy_id: str | None = None
    recipients: list[str] = Field(default_factory=list)
    subject: str
    body: str
    created_at_ms: EpochMs
    window_start_ms: int | None = None
    bot_id: str | None = None
    """policy_alert: the bot it is about (``*``: every bot of the account)."""
    previous_ids: list[str] = Field(default_factory=list)
    """Ids this notification had in earlier releases (see the notifier's sent-log)."""
    channel_id: str | None = None
    """Deliver to this channel of the account only (a "send test"); None: route by kind."""
    attribute: str | None = None
    """policy_alert of a per-attribute policy: the attribute (end_user, api_key, team, model)."""
    attribute_value: str | None = None
    """policy_alert of a per-attribute policy: the value that crossed."""


class ChannelRecord(WireRecord):
    """A tenant's notification destination; its secret (a webhook's signing secret, a Slack
    URL) only sealed (``capstream.notifier.secretbox``)."""

    schema_name: ClassVar[str] = "Channel"

    account_id: Id
    channel_id: Id
    type: Literal["email", "webhook", "slack"]
    name: str = ""
    emails: list[str] = Field(default_factory=list)
    url: str = ""
    secret_box: str = ""
    previous_secret_box: str = ""
    previous_until_ms: EpochMs = 0
    secret_hint: str = ""
    kinds: list[str] = Field(default_factory=list)
    enabled: bool = True
    version: NonNeg = 0
    updated_at_ms: EpochMs = 0

    def routes(self, kind: str) -> bool:
        """Does this channel take notifications of ``kind``?"""
        return self.enabled and (not self.kinds or kind in self.kinds)


class DeliveryAttemptRecord(WireRecord):
    """One delivery attempt to a tenant's channel (the delivery log)."""

    schema_name: ClassVar[str] = "DeliveryAttempt"

    account_id: Id
    channel_id: Id
    notification_id: Id
    kind: str
    attempt: Annotated[int, Field(ge=1)]
    at_ms: EpochMs
    outcome: Literal["delivered", "retry", "refused", "uncertain"]
    status_code: int | None = None
    error: str = ""
    next_attempt_ms: int | None = None


class CapHitRecord(WireRecord):
    schema_name: ClassVar[str] = "CapHit"

    hit_id: Id
    account_id: Id
    bot_id: Id
    conversation_id: Id
    category: Category
    period: CapPeriod
    period_key: str
    occurred_at_ms: EpochMs


class FeedRowRecord(WireRecord):
    schema_name: ClassVar[str] = "FeedRow"

    account_id: Id
    bot_id: Id
    conversation_id: Id
    local_day: str
    category: Category
    period: CapPeriod
    attempts: Annotated[int, Field(ge=1)]
    message: str
    cta: str | None = None


class DeadLetterRecord(WireRecord):
    schema_name: ClassVar[str] = "DeadLetter"

    source_topic: str
    partition: int
    offset: int
    reason: str
    error: str
    raw_key: bytes | None = None
    raw_value: bytes | None = None
    at_ms: EpochMs
    original_size: int | None = None
    """Set when the raw bytes were cut to fit: the size of key + value before the cut."""
    original_sha256: str | None = None
    """Set with ``original_size``: hex SHA-256 of the original key bytes, then value bytes."""

    @classmethod
    def fitted(
        cls,
        *,
        source_topic: str,
        partition: int,
        offset: int,
        reason: str,
        error: str,
        raw_key: bytes | None,
        raw_value: bytes | None,
        at_ms: int,
        limit: int = MAX_DEAD_LETTER_BYTES,
    ) -> DeadLetterRecord:
        """A dead letter whose encoding (and key, sent as the Kafka key too) fits in
        ``limit`` bytes: raw bytes beyond it are cut, and the original size and SHA-256 of
        key + value are kept, so the record always fits the broker's and the producer's
        limits (a record close to 1 MB plus its metadata would not)."""
        error = error[:MAX_DEAD_LETTER_ERROR]
        key, value = raw_key or b"", raw_value or b""
        # Key once as the Kafka key, once in the record; the rest (ids, error, varints) is
        # bounded by the error's and the topic's lengths.
        overhead = 4 * len(error) + 2 * len(source_topic) + 256
        if 2 * len(key) + len(value) + overhead <= limit:
            return cls(
                source_topic=source_topic, partition=partition, offset=offset, reason=reason,
                error=error, raw_key=raw_key, raw_value=raw_value, at_ms=at_ms,
            )  # fmt: skip
        digest = hashlib.sha256(key)
        digest.update(value)
        room = max(0, limit - overhead - 128)
        key_room = min(len(key), MAX_DEAD_LETTER_KEY, room // 3)
        cut_key = key[:key_room]
        cut_value = value[: max(0, room - 2 * key_room)]
        return cls(
            source_topic=source_topic, partition=partition, offset=offset, reason=reason,
            error=error, raw_key=cut_key if raw_key is not None else None,
            raw_value=cut_value if raw_value is not None else None, at_ms=at_ms,
            original_size=len(key) + len(value), original_sha256=digest.hexdigest(),
        )  # fmt: skip
