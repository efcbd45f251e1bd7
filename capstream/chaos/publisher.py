"""The chaos run's stream: the SDK's UsageRecorder fed at a steady rate."""

from __future__ import annotations

import threading
import time

from capstream.core import UsageEvent
from capstream.gateway import UsageRecorder
from capstream.streams.settings import Settings


class Publisher(threading.Thread):
    """The SDK's UsageRecorder fed at a steady rate from the generator."""

    def __init__(self, settings: Settings, events: list[UsageEvent], rate: float,
                 drop: int | None) -> None:  # fmt: skip
        super().__init__(name="chaos-publisher", daemon=True)
        self.settings, self.events, self.rate, self.drop = settings, events, rate, drop
        self.sent = 0
        self.refused = 0
        self.pending = -1
        self.last: UsageEvent | None = None
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0

    def run(self) -> None:
        try:
            with UsageRecorder(self.settings, max_queue=400_000) as rec:  # the SDK defaults
                self.started_at = time.monotonic()
                for i, e in enumerate(self.events):
                    if i % 200 == 0:  # pace in steps of 200 events
                        ahead = self.started_at + i / self.rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
                    if i == self.drop:
                        continue
                    if not rec.record(e):
                        self.refused += 1
                    self.sent += 1
                    self.last = e
                self.pending = rec.flush(300)
                self.finished_at = time.monotonic()
        except BaseException as exc:  # reported by the run
            self.error = exc
