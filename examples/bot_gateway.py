"""An example bot gateway: gate every AI call, batch replies, record usage, honour decisions.

Run against the local broker (started here if it is not running)::

    .venv/bin/python examples/bot_gateway.py [--seconds 20]

Three simulated customers chat with bot ``support-bot`` of account ``acct-demo``. Each
incoming message is gated; allowed messages are batched per conversation (3 s, or 60 s while
throttled) into one AI call, whose usage is recorded; capped text gets the fallback message
once per conversation; capped media is skipped silently. Half-way through, a stand-in for
the processors publishes a new enforcement state (the daily text cap is reached), and the
running gateway changes its answers within milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import random
import time
import uuid

from confluent_kafka import Producer

from capstream.core.models import CapStatus, EnforcementState
from capstream.gateway import (
    AsyncUsageRecorder,
    Gateway,
    ReplyBatch,
    ReplyBatcher,
)
from capstream.streams.control_wire import control_key, record_from_state
from capstream.streams.local_kafka import LocalKafka
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics

ACCOUNT, BOT = "acct-demo", "support-bot"
Message = tuple[str, str]  # (category, text)


def ensure_broker(settings: Settings) -> None:
    if not settings.kafka_bootstrap:
        broker = LocalKafka(settings.data_dir, settings.kafka_port, settings.kafka_controller_port)
        print(f"Kafka on {broker.bootstrap} (ready in {broker.up():.1f}s)")
    create_topics(settings)


def publish_cap_reached(settings: Settings, version: int) -> None:
    """What the processors publish when the account's daily text credits run out."""
    now = int(time.time() * 1000)
    state = EnforcementState(
        account_id=ACCOUNT,
        bot_id=BOT,
        version=version,
        updated_at_ms=now,
        blocked_until_ms=None,
        block_policy_id=None,
        model="claude-haiku",
        downgraded_until_ms=now + 3_600_000,
        batching_interval_s=3,
        throttled_until_ms=None,
        throttle_reason=None,
        caps={"text": CapStatus("daily", time.strftime("%Y-%m-%d"), now + 3_600_000)},
        plan="pro",
        fallback_text_daily="Thanks! 👋 We're on a quick break — back tomorrow!",
        fallback_text_monthly="Thanks! 👋 We're on a quick break — back next week!",
    )
    producer = Producer(settings.librdkafka_config())
    producer.produce(
        Topics(settings.topic_prefix).control,
        record_from_state(state).to_bytes(),
        control_key(ACCOUNT, BOT),
    )
    producer.flush(10)


async def run(settings: Settings, seconds: float) -> None:
    ids = itertools.count()
    batcher: ReplyBatcher[Message] = ReplyBatcher()
    stop = asyncio.Event()
    counts = {"ai_calls": 0, "fallbacks": 0, "skipped": 0, "paused": 0}

    with Gateway(settings) as gateway:
        gateway.wait_ready(30)
        async with AsyncUsageRecorder(settings, producer_name="example-gateway") as recorder:
            started: set[str] = set()  # conversations whose first event was recorded

            async def call_ai(batch: ReplyBatch[Message]) -> None:
                """Stand-in for the model call: one reply for the whole batch."""
                conversation = str(batch.conversation)
                for category, _ in batch.messages:
                    # True on a conversation's first event: conversations policies count
                    # these. (Left out, the recorder derives it from the ids it has seen.)
                    first = conversation not in started
                    started.add(conversation)
                    recorder.record(
                        event_id=f"ex-{uuid.uuid4().hex[:12]}",
                        account_id=ACCOUNT,
                        bot_id=BOT,
                        conversation_id=conversation,
                        category=category,
                        model=batch.model or "",
                        tokens_in=random.randint(200, 900),
                        tokens_out=random.randint(50, 400),
                        messages=1,
                        conversation_started=first,
                        credits_micro=random.randint(1_000, 9_000),
                    )
                counts["ai_calls"] += 1
                print(
                    f"  AI reply to {conversation} with {batch.model} "
                    f"({len(batch.messages)} messages in one call)"
                )

            async def customers() -> None:
                published = False
                started = time.monotonic()
                while time.monotonic() - started < seconds:
                    if not published and time.monotonic() - started > seconds / 2:
                        print("-- the processors publish: daily text cap reached --")
                        publish_cap_reached(settings, version=1)
                        published = True
                    conversation = f"conv-{random.randint(1, 3)}"
                    category = random.choice(["text", "text", "text", "vision"])
                    text = f"message {next(ids)}"
                    verdict = gateway.gate(ACCOUNT, BOT, conversation, category)
                    if verdict.action == "allow":
                        batcher.add(conversation, (category, text), verdict)
                    elif verdict.action == "fallback":
                        counts["fallbacks"] += 1
                        print(f"  fallback to {conversation}: {verdict.text}")
                    elif verdict.action == "skip":
                        counts["skipped"] += 1
                    else:
                        counts["paused"] += 1
                    await asyncio.sleep(random.uniform(0.1, 0.5))
                stop.set()

            await asyncio.gather(customers(), batcher.serve(call_ai, stop))
            for batch in batcher.due(now=1 << 62):  # answer what is still waiting
                await call_ai(batch)
            left = await recorder.flush(30)
            print(f"usage recorded: {recorder.stats.delivered} events delivered, {left} pending")
        gateway.reporter.flush(10)
        print(f"cap hits reported: {gateway.reporter.stats.reported}")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(topic_prefix=f"example-{uuid.uuid4().hex[:6]}")
    ensure_broker(settings)
    asyncio.run(run(settings, args.seconds))


if __name__ == "__main__":
    main()
