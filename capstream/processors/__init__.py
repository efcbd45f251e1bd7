"""capstream.processors: the Faust worker that keeps usage state and publishes decisions.

The Faust side lives in ``capstream.processors.app`` (``Processors``) and
``capstream.processors.worker`` (``run_worker``), imported on demand because Faust is heavy;
the pure parts are re-exported here.
"""

from capstream.processors.catalog import Catalog
from capstream.processors.options import WorkerOptions
from capstream.processors.partition import PartitionState
from capstream.streams.usage_decode import BadEvent, Decoded, UsageDecoder

__all__ = ["BadEvent", "Catalog", "Decoded", "PartitionState", "UsageDecoder", "WorkerOptions"]
