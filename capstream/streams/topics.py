"""Every capstream topic in one place: names, partitions, configs, and idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass, field

from capstream.errors import CapstreamError
from capstream.streams.settings import Settings

_DAY_MS = 86_400_000
_COMPACTED = {
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(3_600_000),
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its full name, partition count, and broker configs."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names of one deployment (all share ``settings.topic_prefix``)."""

    prefix: str = "capstream"

    @property
    def usage(self) -> str:
        return f"{self.prefix}.usage"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def policies(self) -> str:
        return f"{self.prefix}.policies"

    @property
    def tenants(self) -> str:
        return f"{self.prefix}.tenants"

    @property
    def notifications(self) -> str:
        return f"{self.prefix}.notifications"

    @property
    def caphits(self) -> str:
        return f"{self.prefix}.caphits"

    @property
    def feed(self) -> str:
        return f"{self.prefix}.feed"

    @property
    def resumes(self) -> str:
        """A person resumed a paused bot (Policy API -> processors, sink)."""
        return f"{self.prefix}.resumes"

    @property
    def grants(self) -> str:
        """Credit grants per account_id/grant_id (compacted; issue 24)."""
        return f"{self.prefix}.grants"

    @property
    def prices(self) -> str:
        """Price tables per account_id (``*``: the platform's), compacted (issue 24)."""
        return f"{self.prefix}.prices"

    @property
    def value_blocks(self) -> str:
        """Attribute values blocked by per-attribute policies, per
        account_id/bot_id/attribute/value (compacted; processors -> gateways)."""
        return f"{self.prefix}.value-blocks"

    @property
    def gateway_sent(self) -> str:
        """What gateways sent per conversation (fallbacks, throttled replies): shared state."""
        return f"{self.prefix}.gateway-sent"

    @property
    def channels(self) -> str:
        """Tenants' notification destinations (Policy API -> notifier), compacted."""
        return f"{self.prefix}.channels"

    @property
    def deliveries(self) -> str:
        """The notifier's attempts to deliver to tenants' channels (the delivery log)."""
        return f"{self.prefix}.deliveries"

    @staticmethod
    def dlq(topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}.dlq"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic capstream uses, with the partitions and configs it needs."""
    t = Topics(settings.topic_prefix)
    week = {"retention.ms": str(7 * _DAY_MS)}
    # The broker stamps usage and cap-hit records with its own clock: the worker and the sink
    # bound an event's time by its record's (same bound, same verdict, whoever reads it).
    stamped = {**week, "message.timestamp.type": "LogAppendTime"}
    data = settings.usage_partitions
    specs = [
        TopicSpec(t.usage, data, stamped, "UsageBatch records keyed by account_id (murmur2)"),
        TopicSpec(
            t.control,
            settings.control_partitions,
            dict(_COMPACTED),
            "EnforcementState per account_id/bot_id, latest wins",
        ),
        TopicSpec(
            t.value_blocks,
            settings.control_partitions,
            dict(_COMPACTED),
            "ValueBlock per account_id/bot_id/attribute/value, latest wins (an ended block "
            "stays until a newer one replaces it: readers ignore it)",
        ),
        TopicSpec(t.policies, 1, dict(_COMPACTED), "Policy per account_id/policy_id"),
        TopicSpec(t.tenants, 1, dict(_COMPACTED), "TenantSettings per account_id"),
        TopicSpec(t.resumes, 1, dict(_COMPACTED), "BotResume per account_id/bot_id, latest wins"),
        TopicSpec(t.grants, 1, dict(_COMPACTED), "CapGrant per account_id/grant_id"),
        TopicSpec(t.prices, 1, dict(_COMPACTED), "PriceTable per account_id (* = platform)"),
        TopicSpec(t.notifications, data, week, "Notification keyed by notification_id"),
        TopicSpec(t.channels, 1, dict(_COMPACTED), "Channel per account_id/channel_id"),
        TopicSpec(t.deliveries, 1, week, "DeliveryAttempt keyed by account_id/channel_id"),
        TopicSpec(t.caphits, data, stamped, "CapHit keyed by account_id"),
        TopicSpec(
            t.feed,
            data,
            dict(_COMPACTED),
            "FeedRow per account_id/bot_id/conversation_id/local_day",
        ),
        TopicSpec(
            t.gateway_sent,
            settings.control_partitions,
            {**_COMPACTED, "cleanup.policy": "compact,delete", "retention.ms": str(33 * _DAY_MS)},
            "ConversationSent per kind/account/bot/conversation[/period]: what gateways sent "
            "(a month's fallback at most matters: deleted after 33 days)",
        ),
    ]
    sources = (t.usage, t.caphits, t.notifications, t.policies, t.tenants, t.resumes, t.control,
               t.feed, t.grants)  # fmt: skip
    for source in sources:
        specs.append(
            TopicSpec(
                Topics.dlq(source),
                1,
                {"retention.ms": str(30 * _DAY_MS)},
                f"records of {source} that failed to decode or validate",
            )
        )
    return specs


PROCESSOR_TABLES = ("accounts", "bots", "feed")
"""The worker's Faust tables, each with a compacted changelog topic."""
CHANGELOG_CONFIG = {
    **_COMPACTED,
    "segment.ms": str(60_000),
    "segment.bytes": str(16 << 20),
}
"""A changelog's segments roll every minute (or 16 MiB), so the broker's cleaner compacts all
but the last minute of writes: a worker given a partition reads about one record per key
plus that minute, not every flush since the segment opened (hourly, like the other
compacted topics: measured in a full chaos run, a survivor of a clean leave read 90,000
records for two partitions in 29 s)."""


def changelog_specs(settings: Settings, app_id: str) -> list[TopicSpec]:
    """The changelog topics of the worker group ``app_id``'s tables (Faust names them
    ``<app id>-<table>-changelog``). Created with the rest, before any worker starts: two
    workers started together on a fresh deployment otherwise race to create them, and the
    one that loses never reads the bots changelog (found by the chaos run)."""
    return [
        TopicSpec(
            f"{app_id}-{table}-changelog",
            settings.usage_partitions,
            dict(CHANGELOG_CONFIG),
            f"changelog of the worker table {table} (usage state per partition)",
        )
        for table in PROCESSOR_TABLES
    ]


def create_topics(
    settings: Settings, timeout: float = 30.0, processors: str | None = None
) -> dict[str, str]:
    """Create every missing topic; return ``{name: "created" | "exists"}``. Idempotent.

    ``processors``: the worker group's app id (default ``<prefix>.processors``) whose table
    changelogs are created too."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka import admin as kafka_admin

    admin = kafka_admin.AdminClient({**settings.librdkafka_config(), "log_level": 0})
    specs = topic_specs(settings) + changelog_specs(
        settings, processors or f"{settings.topic_prefix}.processors"
    )
    rf = settings.replication_factor
    futures = admin.create_topics(
        [
            kafka_admin.NewTopic(s.name, s.partitions, rf, config=s.config)  # type: ignore[attr-defined]
            for s in specs
        ],
        request_timeout=timeout,
    )
    outcome: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise CapstreamError(f"could not create topic {name}: {err.str()}") from exc
    return outcome
