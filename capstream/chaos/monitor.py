"""Progress of the consumer groups during the run, sampled twice a second, and the time each
fault took to recover from, read from those samples."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

from capstream.streams.settings import Settings


@dataclass(slots=True)
class Sample:
    t: float
    """Seconds since the run's clock started."""
    ends: list[int]
    committed: dict[str, list[int]]
    """Per group: its committed offset on every partition (0 = none yet)."""


@dataclass(slots=True)
class Monitor:
    """A thread reading the usage topic's end offsets and each group's commits."""

    settings: Settings
    topic: str
    partitions: int
    groups: dict[str, str]
    """label -> consumer group id."""
    t0: float
    every_s: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        conf = {**self.settings.librdkafka_config(), "log_level": 0, "enable.auto.commit": False}
        probes = {label: Consumer({**conf, "group.id": g}) for label, g in self.groups.items()}
        ends_c = Consumer({**conf, "group.id": f"chaos-monitor-{uuid.uuid4().hex[:8]}"})
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        try:
            while True:
                last = self._stop.wait(self.every_s)  # one more sample once told to stop
                try:
                    ends = [ends_c.get_watermark_offsets(tp, timeout=2)[1] for tp in tps]
                    done = {}
                    for label, c in probes.items():
                        got = sorted(c.committed(tps, timeout=2), key=lambda tp: tp.partition)
                        done[label] = [max(tp.offset, 0) for tp in got]
                except KafkaException:
                    self.errors += 1  # the broker is away (a bounce): no sample
                else:
                    self.samples.append(Sample(self.now(), ends, done))
                if last:
                    break
        finally:
            for c in [*probes.values(), ends_c]:
                c.close()

    def recovery(self, label: str, at: float) -> float | None:
        """Seconds from ``at`` until ``label`` has committed, on every partition, the records
        that were there at the first sample after ``at`` (None: not within the samples).

        Publishing goes on during a fault, so a partition whose owner is gone (killed, not
        yet replaced) falls behind that mark until a new owner recovered its state and
        processed and committed them: the time to recover a moved partition. Without a
        fault it is the pipeline's own delay (flush interval + commit interval)."""
        after = [s for s in self.samples if s.t > at]
        if not after:
            return None
        mark = after[0].ends
        for s in after:
            if all(c >= e for c, e in zip(s.committed[label], mark, strict=True)):
                return round(s.t - at, 2)
        return None

    def lag_series(self, label: str) -> tuple[list[float], list[int]]:
        """(times, records not yet committed by ``label``) over the run."""
        ts = [s.t for s in self.samples]
        lag = [sum(e - c for e, c in zip(s.ends, s.committed[label], strict=True))
               for s in self.samples]  # fmt: skip
        return ts, lag
