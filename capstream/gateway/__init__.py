"""capstream.gateway: the SDK bot services and gateways import (record usage, gate AI calls)."""

from capstream.gateway.aio import AsyncUsageRecorder
from capstream.gateway.batcher import ReplyBatch, ReplyBatcher
from capstream.gateway.caphits import CapHitReporter, ReporterStats
from capstream.gateway.control_view import (
    DEFAULT_MAX_DISCONNECTED_S,
    ControlView,
    DisconnectPolicy,
    ViewStats,
)
from capstream.gateway.errors import (
    GatewayError,
    NotDeliveredError,
    QueueFullError,
    RecorderClosedError,
    UnknownCategoryError,
    UsageEventError,
)
from capstream.gateway.gateway import CONTROL_UNAVAILABLE, Gateway
from capstream.gateway.pricebook import KafkaPriceBook, PriceBook, PriceStats
from capstream.gateway.recorder import RecorderStats, UsageRecorder
from capstream.streams.partitioner import murmur2, partition_for

__all__ = [
    "CONTROL_UNAVAILABLE",
    "DEFAULT_MAX_DISCONNECTED_S",
    "AsyncUsageRecorder",
    "CapHitReporter",
    "ControlView",
    "DisconnectPolicy",
    "Gateway",
    "GatewayError",
    "KafkaPriceBook",
    "NotDeliveredError",
    "PriceBook",
    "PriceStats",
    "QueueFullError",
    "RecorderClosedError",
    "RecorderStats",
    "ReplyBatch",
    "ReplyBatcher",
    "ReporterStats",
    "UnknownCategoryError",
    "UsageEventError",
    "UsageRecorder",
    "ViewStats",
    "murmur2",
    "partition_for",
]
