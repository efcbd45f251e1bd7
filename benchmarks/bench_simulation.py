"""Simulation on history: events/s and peak memory for 1, 10 and 50 million events of one
account, read from an embedded chDB store through the API's query port.

Run: ``.venv/bin/python benchmarks/bench_simulation.py [--sizes 1e6,1e7,5e7] [--days 30]``;
``--engine 200000``: the engine alone (events built in memory, no store).
Each size runs in a fresh child process (its own store, generated server-side with
``INSERT ... SELECT FROM numbers()`` into the sink's schema), so each peak RSS is that
size's own. A row per size: events, seconds, events/s (each event goes through both sides:
the current configuration and the draft), the read-only rate (the same chunks, no core),
peak RSS. Target: >= 300,000 events/s, memory flat in the range size. Prints figures; not a
test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ACCOUNT = "acct-bench"
START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DAY_MS = 86_400_000

GENERATE = """INSERT INTO usage_events (occurred_at, account_id, bot_id, conversation_id,
    event_id, category, model, tokens_in, tokens_out, messages, conversation_started,
    credits_micro, attributes, batch_id, producer, sent_at, ingested_at, source)
SELECT fromUnixTimestamp64Milli(
        toInt64({start:Int64} + intDiv(number * {span:Int64}, {n:Int64})), 'UTC'),
    {account:String}, concat('bot-', toString(number % 10)),
    concat('c', toString(intHash32(number) % 5000)), concat('e', toString(number)),
    ['text','text','text','text','text','text','text','vision','audio','documents']
        [number % 10 + 1],
    'claude-sonnet-4-6', 200 + number % 400, 80 + number % 90, 1, number % 17 = 0,
    2000 + (number % 7) * 500, map(), 'b', 'bench', now64(3), now64(3), 'bench'
FROM numbers({n:Int64})"""


def generate(root: Path, n: int, days: int) -> float:
    """Fill a fresh store with ``n`` events (in its own process: chDB's memory for the insert
    is not the simulation's)."""
    from capstream.sinks.migrations import migrate
    from capstream.sinks.store import open_client
    from capstream.streams.settings import Settings

    client = open_client(Settings(data_dir=root))
    migrate(client)
    t = time.perf_counter()
    client.command(
        GENERATE,
        parameters={"start": START_MS, "span": days * DAY_MS, "n": n, "account": ACCOUNT},
    )
    # merged here, in this process: otherwise the simulation's process would merge the
    # inserted parts in the background while it is measured
    client.command("OPTIMIZE TABLE usage_events FINAL")
    client.close()
    return time.perf_counter() - t


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def drafts(n: int, days: int) -> tuple[Any, Any, Any, int]:
    """The configurations simulated: (current, drafted, draft, end of the range)."""
    from capstream.simulation import check_draft, configs, parse_body
    from capstream.streams.records import PolicyRecord, TenantSettingsRecord

    # a day's text credits (70% of events, 3,500 on average); the caps are reached mid-day
    text_day = n // days * 7 // 10 * 3_500
    bot_hour = max(1, n // days // 24 // 10)  # events per bot per hour, ~525 tokens each
    tenant = TenantSettingsRecord(
        account_id=ACCOUNT, plan="pro", timezone="Europe/Berlin", auto_downgrade=True,
        caps={"text": {"daily_micro": text_day * 6 // 10, "monthly_micro": 10**15},
              "vision": {"daily_micro": text_day // 10}},
    )  # fmt: skip
    current = [
        PolicyRecord(policy_id="day", account_id=ACCOUNT, metric="credits", threshold=10**12,
                     window_seconds=86_400, scope="account_total", alert={"recipients": []}),
    ]  # fmt: skip
    body = {"policy": {"policy_id": "hourly", "metric": "tokens", "threshold": bot_hour * 500,
                       "window_seconds": 3600, "scope": "account_each_bot",
                       "block": {"duration_seconds": 900},
                       "alert": {"recipients": []}}}  # fmt: skip
    end = START_MS + days * DAY_MS
    draft = check_draft(ACCOUNT, parse_body(body), current, tenant, end)
    cur, dra = configs(current, tenant, draft)
    return cur, dra, draft, end


def engine(n: int, days: int, chunk: int) -> dict[str, Any]:
    """The engine alone: ``n`` events of the same shape built in memory (no store), in
    chunks, through both sides; CPU time of ``simulate`` only."""
    from capstream._native import compiled
    from capstream.core import UsageEvent
    from capstream.simulation import simulate
    from capstream.simulation.source import Plan

    cur, dra, draft, end = drafts(n, days)
    cats = ["text"] * 7 + ["vision", "audio", "documents"]
    bots = [f"bot-{k}" for k in range(10)]  # one str per bot, as the store's columns give
    span = days * DAY_MS
    events = [
        UsageEvent(f"e{i}", ACCOUNT, bots[i % 10], f"c{i * 2654435761 % 2**32 % 5000}",
                   cats[i % 10], "claude-sonnet-4-6", 200 + i % 400, 80 + i % 90, 1, i % 17 == 0,
                   2000 + (i % 7) * 500, START_MS + i * span // n)
        for i in range(n)
    ]  # fmt: skip

    class InMemory:
        account_id, from_ms, to_ms = ACCOUNT, START_MS, end

        def plan(self) -> Plan:
            return Plan(((START_MS, end),), n)

        def chunks(self, plan: Plan | None = None) -> Any:
            for i in range(0, n, chunk):
                yield events[i : i + chunk]

    cpu = time.process_time()
    result = simulate(InMemory(), cur, dra, draft)  # type: ignore[arg-type]
    cpu = time.process_time() - cpu
    assert result["events"] == n
    return {"events": n, "cpu_s": cpu, "compiled": compiled(), "load": os.getloadavg()[0]}


def children_hwm_mb() -> float:
    """The highest peak RSS of this process's child processes running now."""
    peak = 0.0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids = f.read().split()
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]) / 1024)
            except OSError:
                continue
    return peak


def child(
    root: Path, n: int, days: int, chunk: int, port: str, prefetch: bool, read_pass: bool,
    processes: int | None,
) -> dict[str, Any]:  # fmt: skip
    from capstream._native import compiled
    from capstream.api.clickhouse import clickhouse_query
    from capstream.simulation import EventSource, simulate
    from capstream.streams.settings import Settings

    settings = Settings(data_dir=root)
    cur, dra, draft, end = drafts(n, days)
    query = clickhouse_query(settings)
    query("SELECT 1 AS one", {})  # open the store: its baseline memory is not the run's
    base = rss_mb()

    def source() -> EventSource:
        return EventSource(query, ACCOUNT, START_MS, end, chunk_rows=chunk, prefetch=prefetch,
                           columns=query.columns if port == "columns" else None)  # fmt: skip

    read, read_s, rss_read = n, 0.0, 0.0
    if read_pass:
        t = time.perf_counter()
        read = 0
        for rows in source().chunks():
            read += len(rows)
        read_s = time.perf_counter() - t
        rss_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    watching = threading.Event()
    peak_other = [0.0]  # the draft process's peak RSS (VmHWM; RUSAGE_CHILDREN counts the fork)

    def watch() -> None:
        while not watching.wait(0.1):
            peak_other[0] = max(peak_other[0], children_hwm_mb())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t = time.perf_counter()
    cpu, cpu_other = time.process_time(), children_cpu()
    result = simulate(source(), cur, dra, draft, processes=processes)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    cpu_other = children_cpu() - cpu_other  # the draft side's process, if one ran
    watching.set()
    watcher.join()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_other = peak_other[0]
    assert result["events"] == n == read, (result["events"], n, read)
    return {
        "events": n, "read_s": read_s, "seconds": took, "cpu_s": cpu + cpu_other,
        "cpu_other_s": cpu_other, "base_mb": base, "rss_read_mb": rss_read, "rss_mb": rss,
        "rss_other_mb": rss_other,
        "blocks": len(result["simulated"]["blocks"]), "caps": len(result["simulated"]["caps"]),
        "paused": result["simulated"]["gated"]["paused"], "compiled": compiled(),
        "load": os.getloadavg()[0],
    }  # fmt: skip


def main() -> None:
    from capstream.simulation.source import DEFAULT_CHUNK_ROWS

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e6,1e7,5e7")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=DEFAULT_CHUNK_ROWS)
    ap.add_argument("--child", type=float)
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--store")
    ap.add_argument(
        "--port",
        choices=("columns", "rows"),
        default="columns",
        help="read through the column port (default) or a dict per row",
    )
    ap.add_argument(
        "--engine", type=float, help="only the engine: this many events in memory, no store"
    )
    ap.add_argument(
        "--read-pass-max",
        type=float,
        default=1e7,
        help="measure reading alone (a pass more) up to this many events",
    )
    ap.add_argument(
        "--processes",
        choices=("auto", "1", "2"),
        default="auto",
        help="1: both sides in one process; 2: the draft side in a second one; auto: "
        "simulate's choice (two for 200,000 events or more on 2+ CPUs)",
    )
    ap.add_argument("--no-prefetch", action="store_true",
                    help="read each chunk only when the engine asks for it")  # fmt: skip
    args = ap.parse_args()
    if args.child:
        root = Path(args.store)
        if args.generate:
            print(json.dumps({"generate_s": generate(root, int(args.child), args.days)}))
        else:
            procs = None if args.processes == "auto" else int(args.processes)
            print(json.dumps(child(root, int(args.child), args.days, args.chunk, args.port,
                                   not args.no_prefetch, args.child <= args.read_pass_max,
                                   procs)))  # fmt: skip
        return
    if args.engine:
        r = engine(int(args.engine), args.days, args.chunk)
        print(f"engine only: {r['events']:,} events in memory through both sides, "
              f"{r['events'] / r['cpu_s']:,.0f} events/s of CPU (compiled: "
              f"{'yes' if r['compiled'] else 'no'}, load {r['load']:.1f})")  # fmt: skip
        return
    compiled = os.environ.get("CAPSTREAM_PURE") != "1"
    print(f"simulation bench: one account, {args.days} days, chunks of {args.chunk} rows, "
          f"{args.port} port, prefetch {'off' if args.no_prefetch else 'on'}, "
          f"processes {args.processes}, "
          f"core {'compiled (mypyc) if built' if compiled else 'plain Python'}; "
          f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print("columns: wall seconds and events/s of the simulation; events/s by its CPU time "
          "(both processes' when the draft side runs in a second one: 'other' is that one's "
          "CPU seconds, 'peak other' its peak RSS); "
          "events/s of reading alone (sizes up to --read-pass-max); RSS once the store is "
          "open, peak RSS while only reading, peak RSS of the whole run; the load average "
          "(1 min) at the end of the size")  # fmt: skip
    print(f"{'events':>11} {'seconds':>8} {'events/s':>9} {'cpu ev/s':>9} {'read ev/s':>10} "
          f"{'RSS open':>9} {'peak read':>9} {'peak run':>9} {'other':>6} {'peak other':>10}  "
          "blocks caps paused compiled load")  # fmt: skip
    for size in args.sizes.split(","):
        n = int(float(size))
        store = tempfile.mkdtemp(prefix="bench-sim-")
        try:
            base = [sys.executable, __file__, "--child", str(n), "--days", str(args.days),
                    "--chunk", str(args.chunk), "--store", store, "--port", args.port,
                    "--read-pass-max", str(args.read_pass_max), "--processes", args.processes,
                    *(["--no-prefetch"] if args.no_prefetch else [])]  # fmt: skip
            gen = subprocess.run([*base, "--generate"], capture_output=True, text=True, check=False)
            out = (
                gen
                if gen.returncode
                else subprocess.run(base, capture_output=True, text=True, check=False)
            )
        finally:
            shutil.rmtree(store, ignore_errors=True)
        if out.returncode != 0:
            print(f"{n:>11,} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        read = f"{n / r['read_s']:>10,.0f}" if r["read_s"] else f"{'-':>10}"
        peak_read = f"{r['rss_read_mb']:>7.0f}MB" if r["read_s"] else f"{'-':>9}"
        print(f"{n:>11,} {r['seconds']:>8.1f} {n / r['seconds']:>9,.0f} {n / r['cpu_s']:>9,.0f} "
              f"{read} {r['base_mb']:>7.0f}MB {peak_read} "
              f"{r['rss_mb']:>7.0f}MB {r['cpu_other_s']:>5.1f}s {r['rss_other_mb']:>8.0f}MB  "
              f"{r['blocks']:>6} {r['caps']:>4} {r['paused']:>6} "
              f"{'yes' if r['compiled'] else 'no':>8} {r['load']:>4.1f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
