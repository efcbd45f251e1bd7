"""Peer (b): the rolling-sum-and-threshold job written with Quix Streams.

The way its documentation builds it: decode each ``UsageBatch`` (fastavro, the schemas in
``capstream/schemas``), ``expand`` it into events, ``group_by`` the bot (Quix repartitions
through a ``repartition__`` topic, because windows and state are per message key and the
usage topic is keyed by account), take the event's ``occurred_at`` as its timestamp, and sum
tokens in a hopping window (RocksDB state with a changelog) with ``reduce``; every update
whose sum has just reached the threshold goes to the decisions topic.

Runs in its own virtualenv (Quix Streams pins librdkafka and pydantic versions that differ
from capstream's): ``capstream bench`` creates it from ``requirements-quix.txt`` and runs
``<venv>/bin/python benchmarks/peers/quix_peer.py CONFIG_JSON`` (same protocol as
``faust_peer.py``: stop after the records below ``ends`` or at ``max_s``, write ``result``).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import fastavro
from quixstreams import Application, message_context

HEADER = 10  # C3 01 + the 8-byte schema fingerprint (Avro single-object encoding)
GRACE_MS = 7 * 86_400_000  # never drop an event as late: the backlog's clock is monotonic


def usage_schema(schema_dir: Path) -> Any:
    named: dict[str, Any] = {}
    parsed = None
    for name in ("Category", "UsageEvent", "UsageBatch"):
        raw = json.loads((schema_dir / f"{name}.avsc").read_text())
        parsed = fastavro.parse_schema(raw, named_schemas=named)
    return parsed


def peak_rss_mib() -> float:
    """VmHWM: unlike ru_maxrss, it does not inherit the (large) size of the forking parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    ends, limit, threshold = list(cfg["ends"]), float(cfg["max_s"]), int(cfg["threshold"])
    schema = usage_schema(Path(cfg["schema_dir"]))
    app = Application(
        broker_address=cfg["bootstrap"],
        consumer_group=cfg["group"],
        auto_offset_reset="earliest",
        state_dir=cfg["state_dir"],
        loglevel="WARNING",
    )
    source = app.topic(cfg["topic"], key_deserializer="bytes", value_deserializer="bytes")
    out = app.topic(cfg["out_topic"], key_serializer="str", value_serializer="json")
    pos = [0] * len(ends)
    run: dict[str, Any] = {"accepted": 0, "events": 0, "decisions": 0, "first": 0.0,
                           "cpu0": 0.0, "cut": None, "processed_s": 0.0, "cpu_s": 0.0,
                           "at": 0.0}  # fmt: skip

    def accept(_value: bytes) -> bool:
        ctx = message_context()
        p, offset = ctx.partition, ctx.offset
        if not run["first"]:
            run["first"], run["cpu0"] = time.perf_counter(), time.process_time()
            run["at"] = time.time()
        if run["cut"] is not None or offset >= ends[p] or offset < pos[p]:
            return False
        if time.perf_counter() - run["first"] > limit:
            run["cut"] = list(pos)
            if run["events"] == run["accepted"]:
                finished()
            return False
        pos[p] = offset + 1
        return True

    def expand(value: bytes) -> list[dict[str, Any]]:
        batch = fastavro.schemaless_reader(io.BytesIO(value[HEADER:]), schema)
        events = [
            {"bot": f"{e['account_id']}/{e['bot_id']}", "t": e["occurred_at_ms"],
             "id": e["event_id"], "tokens": e["tokens_in"] + e["tokens_out"]}
            for e in batch["events"]
        ]  # fmt: skip
        run["accepted"] += len(events)
        return events

    def finished() -> None:
        run["processed_s"] = time.perf_counter() - run["first"]
        run["cpu_s"] = time.process_time() - run["cpu0"]
        app.stop()

    def counted(_event: dict[str, Any]) -> None:
        run["events"] += 1
        if run["events"] == run["accepted"] and (run["cut"] is not None or pos == ends):
            finished()

    def start(event: dict[str, Any]) -> dict[str, Any]:
        n = event["tokens"]
        return {"sum": n, "crossed": n >= threshold, "id": event["id"]}

    def add(agg: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        total = agg["sum"] + event["tokens"]
        return {"sum": total, "crossed": agg["sum"] < threshold <= total, "id": event["id"]}

    def decision(window: dict[str, Any], key: Any, _ts: int, _headers: Any) -> dict[str, Any]:
        run["decisions"] += 1
        return {"bot": key, "window_start_ms": window["start"], "event_id": window["value"]["id"],
                "tokens": window["value"]["sum"]}  # fmt: skip

    sdf = app.dataframe(source)
    sdf = sdf.filter(accept).apply(expand, expand=True)
    sdf = sdf.group_by(lambda e: e["bot"], name="bot")
    sdf = sdf.set_timestamp(lambda value, _key, _ts, _headers: value["t"])
    sdf = sdf.update(counted)
    sdf = sdf.hopping_window(cfg["window_ms"], cfg["step_ms"], grace_ms=GRACE_MS)
    sdf = sdf.reduce(add, start).current()
    sdf = sdf.filter(lambda w: w["value"]["crossed"]).apply(decision, metadata=True)
    sdf.to_topic(out)
    app.run()
    durable_s = time.perf_counter() - run["first"]  # stop commits the checkpoint first
    cut = run["cut"] if run["cut"] is not None else pos
    result = {
        "events": run["events"], "records": sum(cut), "cut": cut,
        "processed_s": run["processed_s"], "durable_s": durable_s, "cpu_s": run["cpu_s"],
        "decisions": run["decisions"], "complete": cut == ends, "first_event_at": run["at"],
        "peak_rss_mib": peak_rss_mib(),
    }  # fmt: skip
    Path(cfg["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
