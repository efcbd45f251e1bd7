"""CPU per ``record()`` with ``conversation_started`` derived by the recorder, against off.

No broker (the recorder queues and never delivers): this measures the caller's side only.
200,000 events, 10 per conversation, realistic counts; three alternating runs each.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_conversation_started.py
"""

from __future__ import annotations

import os
import time
import uuid

from capstream.gateway import UsageRecorder
from capstream.gateway.recorder import DEFAULT_CONVERSATIONS_TRACKED
from capstream.streams.local_kafka import free_port
from capstream.streams.settings import Settings

N = 200_000


def main() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="bench")
    ids = [uuid.uuid4().hex for _ in range(N)]
    conversations = [f"conv-{i // 10}" for i in range(N)]
    results: dict[int, list[float]] = {0: [], DEFAULT_CONVERSATIONS_TRACKED: []}
    print("load average before:", os.getloadavg())
    for _ in range(3):
        for tracked in results:
            recorder = UsageRecorder(settings, max_queue=N + 1, conversations_tracked=tracked,
                                     producer_config={"log_level": 0})  # fmt: skip
            record = recorder.record
            started = time.process_time()
            for i in range(N):
                record(event_id=ids[i], account_id="acct-1", bot_id="bot-1",
                       conversation_id=conversations[i], category="text", model="claude-haiku",
                       tokens_in=420, tokens_out=180, messages=1, credits_micro=2300)  # fmt: skip
            results[tracked].append((time.process_time() - started) / N * 1e6)
            recorder._queue.clear()  # nothing to deliver: no broker
    for tracked, runs in results.items():
        label = "derived" if tracked else "off    "
        print(f"conversation_started {label}: " + ", ".join(f"{r:.2f}" for r in runs)
              + " us CPU per record()")  # fmt: skip
    print("load average after:", os.getloadavg())
    os._exit(0)  # the recorders hold events no broker will take: do not wait for them


if __name__ == "__main__":
    main()
