"""The naive Faust baseline for ``bench_worker.py``: one table write per event, hopping windows.

What a first Faust version would do: an agent decodes each ``UsageBatch`` with the generic
Avro codec and, for every event, adds its tokens to a hopping-windowed table (1-hour windows
every 30 minutes, RocksDB store, changelog) with ``table[key] += tokens`` — one table write
per event, which Faust fans out to the two windows holding the event. No policy logic at all.

Run by the benchmark: ``python benchmarks/naive_faust.py BOOTSTRAP TOPIC PARTITIONS DATA_DIR
SECONDS OUT_JSON``. It measures events/s from its first event for SECONDS, writes the figure to
OUT_JSON and exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import timedelta

import faust

from capstream.streams.codecs import codec


def main() -> None:
    bootstrap, topic_name, partitions, data_dir, seconds, out = sys.argv[1:7]
    app = faust.App(
        f"naive-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="rocksdb://",
        datadir=data_dir,
        web_enabled=False,
        autodiscover=False,
        topic_partitions=int(partitions),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    topic = app.topic(
        topic_name, partitions=int(partitions), key_serializer="raw", value_serializer="raw"
    )
    tokens = app.Table("tokens", default=int, partitions=int(partitions)).hopping(
        timedelta(hours=1), timedelta(minutes=30), expires=timedelta(hours=3)
    )
    usage = codec("UsageBatch")
    state = {"events": 0, "start": 0.0}
    limit = float(seconds)

    @app.agent(topic)
    async def count(stream: faust.StreamT) -> None:
        async for value in stream:
            if not state["start"]:
                state["start"] = time.perf_counter()
            for e in usage.decode(value)["events"]:
                tokens[f"{e['account_id']}/{e['bot_id']}"] += e["tokens_in"] + e["tokens_out"]
                state["events"] += 1
            elapsed = time.perf_counter() - state["start"]
            if elapsed >= limit:
                result = {
                    "events": state["events"],
                    "seconds": elapsed,
                    "events_per_s": state["events"] / elapsed,
                }
                with open(out, "w") as fh:  # noqa: ASYNC230 - once, then the process exits
                    fh.write(json.dumps(result))
                os._exit(0)

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
