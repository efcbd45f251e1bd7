"""CPU cost per event of the processors' own work, without Kafka: where a worker's time goes.

Run: ``.venv/bin/python benchmarks/bench_processors_cpu.py [--events N] [--wall] [--profile]``.
Prints figures; not a test.

The seeded bench workload (``capstream.bench.load``: 1,000 accounts x 10 bots, Zipf-skewed,
5 policies and caps in every category per account) is encoded into the SDK's per-partition
``UsageBatch`` envelopes (250 events each, 4 partitions), then one process does what a worker
does with them, stage by stage, and times each stage:

1. decode: ``UsageDecoder.decode`` of every record;
2. apply: ``PartitionState.apply`` (the core's ``evaluate`` per event, timers in event-time
   mode), with the effects queued in an ``Outbox`` (enforcement states and notifications
   encoded for the wire) as the worker does;
3. flush: ``serialize`` of every dirty account after each ``--flush-every`` events (the
   table values a flush writes).

The sum is the ceiling of one worker's events/s on one core before Kafka, Faust and the
broker take their share. ``--wall`` runs in wall-clock mode with every event stamped at the
same instant (the end-to-end benchmark's situation) instead of event time.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from collections import defaultdict

from capstream.bench.load import Workload, WorkloadSpec
from capstream.core import Effects
from capstream.processors.catalog import Catalog
from capstream.processors.outbox import Outbox
from capstream.processors.partition import PartitionState
from capstream.processors.worker import GC_THRESHOLDS
from capstream.streams.codecs import codec
from capstream.streams.partitioner import partition_for
from capstream.streams.topics import Topics
from capstream.streams.usage_decode import Decoded, UsageDecoder

PARTITIONS = 4
PER_RECORD = 250


def envelopes(work: Workload, *, wall_ms: int | None) -> list[tuple[int, int, bytes]]:
    """(partition, offset, record) in consumption order, as the SDK would have produced."""
    batch = codec("UsageBatch")
    pending: dict[int, list[dict[str, object]]] = defaultdict(list)
    out: list[tuple[int, int, bytes]] = []
    offsets = [0] * PARTITIONS

    def seal(p: int) -> None:
        value = {"batch_id": f"b{len(out)}", "producer": "bench", "sent_at_ms": 0,
                 "events": pending.pop(p)}  # fmt: skip
        out.append((p, offsets[p], batch.encode(value)))
        offsets[p] += 1

    for e in work.events():
        p = partition_for(e.account_id.encode(), PARTITIONS)
        pending[p].append(
            {
                "event_id": e.event_id, "account_id": e.account_id, "bot_id": e.bot_id,
                "conversation_id": e.conversation_id, "category": e.category,
                "model": e.model, "tokens_in": e.tokens_in, "tokens_out": e.tokens_out,
                "messages": e.messages, "conversation_started": e.conversation_started,
                "credits_micro": e.credits_micro,
                "occurred_at_ms": wall_ms if wall_ms is not None else e.occurred_at_ms,
                "attributes": {},
            }
        )  # fmt: skip
        if len(pending[p]) == PER_RECORD:
            seal(p)
    for p in list(pending):
        seal(p)
    return out


def catalog(work: Workload) -> Catalog:
    cat = Catalog()
    for s in work.tenants():
        cat.apply_settings(s.account_id.encode(), s.to_bytes())
    for pol in work.policies():
        cat.apply_policy(f"{pol.account_id}/{pol.policy_id}".encode(), pol.to_bytes())
    return cat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--flush-every", type=int, default=20_000)
    ap.add_argument("--wall", action="store_true", help="wall-clock mode, all stamped now")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # as the worker does

    work = Workload(WorkloadSpec(events=args.events, partitions=PARTITIONS))
    now = int(time.time() * 1000)
    records = envelopes(work, wall_ms=now if args.wall else None)
    cat = catalog(work)
    outbox = Outbox(Topics("bench"))

    def emit_for(p: int):  # type: ignore[no-untyped-def]
        def emit(effects: Effects, origin_ms: int | None) -> None:
            outbox.add(p, effects, origin_ms)

        return emit

    parts = {
        p: PartitionState(p, cat, emit_for(p), event_time=not args.wall) for p in range(PARTITIONS)
    }
    decoder = UsageDecoder(4 * 1024 * 1024)

    def refuse(*_: object) -> None:
        raise AssertionError("the workload has no bad events")

    # Stage 1: decode (kept for stage 2, as the worker decodes each record right before use).
    t0 = time.process_time()
    decoded: list[Decoded] = [decoder.decode(r, 1 << 62) for _, _, r in records]
    t_decode = time.process_time() - t0

    prof = cProfile.Profile() if args.profile else None
    t_apply = t_flush = 0.0
    values = bytes_out = since = 0
    if prof:
        prof.enable()
    for (p, offset, _), d in zip(records, decoded, strict=True):
        t0 = time.process_time()
        parts[p].apply(offset, d, now, refuse)
        outbox.queue.clear()
        t1 = time.process_time()
        t_apply += t1 - t0
        since += len(d.events)
        if since >= args.flush_every:
            since = 0
            for part in parts.values():
                for account_id in part.take_dirty():
                    account, bots = part.serialize(account_id)
                    values += len(bots) + (account is not None)
                    bytes_out += len(account or b"") + sum(len(v) for _, v in bots)
            t_flush += time.process_time() - t1
    if prof:
        prof.disable()

    n = args.events
    total = t_decode + t_apply + t_flush
    mode = "wall clock, all stamped now" if args.wall else "event time"
    print(f"{n:,} events in {len(records):,} records ({mode}); CPU per event:")
    for name, t in (("decode", t_decode), ("apply", t_apply), ("flush", t_flush)):
        print(f"  {name:<7}{t / n * 1e6:6.2f} us  ({t / total:4.0%})")
    print(f"  total  {total / n * 1e6:6.2f} us = {n / total:,.0f} events per CPU-second")
    print(
        f"effects: {outbox.states:,} enforcement states, {outbox.notes:,} notifications; "
        f"flushes wrote {values:,} table values, {bytes_out / 1e6:.1f} MB"
    )
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
