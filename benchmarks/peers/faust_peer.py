"""Peer (a): the naive Faust design of the rolling-sum-and-threshold job.

One agent decodes each ``UsageBatch`` with the generic Avro codec and, for every event, adds
its tokens to a hopping-windowed table (RocksDB store, changelog) with ``table[key] +=
tokens`` — one table write per event, which Faust fans out to every window holding the
event — then reads the windows back and publishes a decision for each (bot, window) whose sum
has just reached the threshold. Windows follow the event's ``occurred_at`` (event time), so
the decisions can be checked against the generator's ground truth.

Faust expires windows (``expires``) against the *wall clock*: its table cleanup, every
``table_cleanup_interval`` (30 s by default, first after two intervals), deletes every window
whose end is older than ``time.time() - expires``. The backlog's event time is in the past, so
that cleanup would delete every open window of the table (all partitions) mid-run and the sums
would restart from 0 — crossings after it were missed (the 2026-12-04 full run: 1 of 88). The
peer keeps ``expires`` (and its per-write bookkeeping, as a naive Faust job has it) but sets the
cleanup interval beyond the peer's lifetime, so no window is deleted while it runs.

Run by ``capstream bench``: ``python benchmarks/peers/faust_peer.py CONFIG_JSON``. It stops
after the records below ``ends`` (or, past ``max_s`` seconds, at the next record boundary),
flushes its producer, writes its figures to ``result`` and exits. The same protocol as
``quix_peer.py``; ``benchmarks/naive_faust.py`` (the processors' baseline) is the same
design without decisions.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import faust

from capstream.streams.codecs import codec


def write(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result))


def peak_rss_mib() -> float:
    """VmHWM: unlike ru_maxrss, it does not inherit the (large) size of the forking parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peer(NamedTuple):
    app: faust.App
    source: faust.TopicT
    out: faust.TopicT
    tokens: Any
    """The hopping-windowed table (a ``WindowWrapper``), event time: ``relative_to`` reads
    ``clock[0]``."""
    clock: list[float]
    """The ``occurred_at`` of the event being applied, in seconds (Faust's unit)."""


def build(cfg: dict[str, Any]) -> Peer:
    """The Faust app, its topics and its windowed table, as ``cfg`` asks."""
    parts = int(cfg["partitions"])
    app = faust.App(
        cfg["group"],
        broker=f"kafka://{cfg['bootstrap']}",
        store="rocksdb://",
        datadir=cfg["state_dir"],
        web_enabled=False,
        autodiscover=False,
        topic_partitions=parts,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Faust's cleanup compares window ends with time.time(); the backlog's windows are all
        # "expired" by that clock, so a cleanup during the run would empty the table.
        # No cleanup before the bench's kill deadline (``lifetime_s``).
        table_cleanup_interval=float(cfg["lifetime_s"]),
    )
    source = app.topic(cfg["topic"], partitions=parts, key_serializer="raw",
                       value_serializer="raw")  # fmt: skip
    out = app.topic(cfg["out_topic"], partitions=parts, key_serializer="raw",
                    value_serializer="raw")  # fmt: skip
    clock = [0.0]
    size_s, step_s = cfg["window_ms"] / 1000, cfg["step_ms"] / 1000
    tokens = (
        app.Table("tokens", default=int, partitions=parts)
        .hopping(size_s, step_s, expires=timedelta(seconds=3 * size_s))
        .relative_to(lambda _event: clock[0])
    )
    return Peer(app, source, out, tokens, clock)


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    parts, ends, limit = int(cfg["partitions"]), list(cfg["ends"]), float(cfg["max_s"])
    threshold = int(cfg["threshold"])
    app, source, out, tokens, clock = build(cfg)
    table = tokens.table
    usage = codec("UsageBatch")
    pos = [0] * parts
    run: dict[str, Any] = {"events": 0, "decisions": 0, "first": 0.0, "cpu0": 0.0, "at": 0.0}

    async def finish() -> None:
        processed_s = time.perf_counter() - run["first"]
        cpu_s = time.process_time() - run["cpu0"]
        try:  # decisions and changelog writes acknowledged (bounded: a backlog of them is slow)
            await asyncio.wait_for(app.producer.flush(), float(cfg["flush_timeout_s"]))
            durable_s = time.perf_counter() - run["first"]
        except TimeoutError:
            durable_s = None
        result = {
            "events": run["events"], "records": sum(pos), "cut": pos,
            "processed_s": processed_s, "durable_s": durable_s,
            "cpu_s": cpu_s, "decisions": run["decisions"], "complete": pos == ends,
            "first_event_at": run["at"],
            "peak_rss_mib": peak_rss_mib(),
        }  # fmt: skip
        write(cfg["result"], result)
        os._exit(0)

    @app.agent(source)
    async def decide(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            p, offset = event.message.partition, event.message.offset
            if not run["first"]:
                run["first"], run["cpu0"] = time.perf_counter(), time.process_time()
                run["at"] = time.time()
            if offset >= ends[p] or offset < pos[p]:
                continue  # beyond the benchmark's backlog, or a redelivery
            for e in usage.decode(event.value)["events"]:
                clock[0] = e["occurred_at_ms"] / 1000
                key = f"{e['account_id']}/{e['bot_id']}"
                n = e["tokens_in"] + e["tokens_out"]
                tokens[key] += n
                for window in table._window_ranges(clock[0]):
                    total = table._get_key((key, window))
                    if total >= threshold > total - n:
                        decision = {"bot": key, "window_start_ms": round(window[0] * 1000),
                                    "event_id": e["event_id"], "tokens": total}  # fmt: skip
                        await out.send(key=key.encode(), value=json.dumps(decision).encode())
                        run["decisions"] += 1
                run["events"] += 1
            pos[p] = offset + 1
            if pos == ends or time.perf_counter() - run["first"] > limit:
                await finish()

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
