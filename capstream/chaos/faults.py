"""What the scheduler injects and when: a seeded plan of faults, and malformed records."""

from __future__ import annotations

import random
from dataclasses import dataclass

from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.usage_wire import encode_batch

WORKER_KILL = "worker_kill"
WORKER_JOIN = "worker_join"
WORKER_LEAVE = "worker_leave"
SINK_KILL = "sink_kill"
BROKER_BOUNCE = "broker_bounce"
MALFORMED = "malformed_burst"


@dataclass(frozen=True, slots=True)
class FaultCounts:
    """How many of each fault one run injects (a rebalance is one join and one leave)."""

    worker_kills: int = 5
    rebalances: int = 2
    sink_kills: int = 3
    broker_bounces: int = 1
    malformed_bursts: int = 1
    burst_records: int = 200

    def kinds(self) -> list[str]:
        return (
            [WORKER_KILL] * self.worker_kills
            + [WORKER_JOIN, WORKER_LEAVE] * self.rebalances
            + [SINK_KILL] * self.sink_kills
            + [BROKER_BOUNCE] * self.broker_bounces
            + [MALFORMED] * self.malformed_bursts
        )


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float
    """Seconds after the first event was published."""
    kind: str


def plan(counts: FaultCounts, seed: int, duration_s: float) -> list[Fault]:
    """The faults at random moments of the publishing window (its first and last ~8 % left
    quiet), one per slot of equal width with the moment drawn inside the slot's middle 60 %,
    so two faults are never closer than 40 % of a slot. Joins come before their leave."""
    rnd = random.Random(seed * 7_919 + 17)
    kinds = counts.kinds()
    rnd.shuffle(kinds)
    joins = 0
    for i, kind in enumerate(kinds):  # relabel the rebalance slots join, leave, join, leave
        if kind in (WORKER_JOIN, WORKER_LEAVE):
            kinds[i] = WORKER_JOIN if joins % 2 == 0 else WORKER_LEAVE
            joins += 1
    start, end = 0.08 * duration_s, 0.9 * duration_s
    width = (end - start) / max(1, len(kinds))
    return [
        Fault(round(start + (i + 0.2 + 0.6 * rnd.random()) * width, 2), kind)
        for i, kind in enumerate(kinds)
    ]


def malformed(n: int, account: str, at_ms: int) -> bytes:
    """Malformed record ``n``: odd n, a record of an unknown schema (the whole record goes to
    the DLQ); even n, a UsageBatch whose one event has a negative enum index and a boolean
    byte of 2 (that event goes to the DLQ). Both name their source partition and offset."""
    if n % 2:
        return b"\xc3\x01" + b"\x00" * 8 + random.Random(n).randbytes(40)
    bad = b"".join(
        [*map(string_bytes, (f"bad-{n}", account, "bot-0", "c-0")), long_bytes(-1),
         string_bytes("m"), long_bytes(1), long_bytes(0), long_bytes(1), b"\x02",
         long_bytes(0), long_bytes(at_ms), b"\x00"]
    )  # fmt: skip
    return encode_batch(f"malformed-{n}", "chaos", 0, [bad])
