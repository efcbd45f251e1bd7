"""CPU per ``record()`` when the recorder derives ``credits_micro`` from tokens (a price book),
against credits given by the caller.

No broker (the recorder queues and never delivers): this measures the caller's side only.
200,000 events, realistic counts, a tenant table over the platform's (the lookup a
``KafkaPriceBook`` answers too); three alternating runs each.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_pricebook.py
"""

from __future__ import annotations

import os
import time
import uuid

from capstream.core.pricing import PLATFORM, ModelPrice, PriceTable
from capstream.gateway import PriceBook, UsageRecorder
from capstream.streams.local_kafka import free_port
from capstream.streams.settings import Settings

N = 200_000
M = 1_000_000


def main() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="bench")
    ids = [uuid.uuid4().hex for _ in range(N)]
    models = {f"m{i}": ModelPrice(i * M, 4 * i * M) for i in range(50)}
    models["claude-haiku"] = ModelPrice(800_000, 4 * M)
    book = PriceBook([
        PriceTable(PLATFORM, "USD", models=models),
        PriceTable("acct-1", "USD", 100 * M, {"gpt-4o": ModelPrice(2_500_000, 10 * M)}),
    ])  # fmt: skip
    modes = {"credits given, no book ": (None, 2300), "credits derived (book)": (book, None)}
    results: dict[str, list[float]] = {m: [] for m in modes}
    print("load average before:", os.getloadavg())
    for _ in range(3):
        for mode, (prices, credits) in modes.items():
            recorder = UsageRecorder(settings, max_queue=N + 1, prices=prices,
                                     producer_config={"log_level": 0})  # fmt: skip
            record = recorder.record
            started = time.process_time()
            for i in range(N):
                record(event_id=ids[i], account_id="acct-1", bot_id="bot-1",
                       conversation_id="conv-1", category="text", model="claude-haiku",
                       tokens_in=420, tokens_out=180, messages=1, conversation_started=False,
                       credits_micro=credits)  # fmt: skip
            results[mode].append((time.process_time() - started) / N * 1e6)
            recorder._queue.clear()  # nothing to deliver: no broker
    for mode, runs in results.items():
        print(f"{mode}: " + ", ".join(f"{r:.2f}" for r in runs) + " us CPU per record()")
    print("load average after:", os.getloadavg())
    os._exit(0)  # the recorders hold events no broker will take: do not wait for them


if __name__ == "__main__":
    main()
