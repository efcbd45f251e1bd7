"""`capstream gate` as an operator runs it: the bot's state and the verdict, nothing reported."""

from __future__ import annotations

import os
import subprocess
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from test_gateway_control import LATER, state

from capstream.core.models import CapStatus
from capstream.streams.control_wire import control_key, record_from_state
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics


def run_gate(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CAPSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "CAPSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "capstream.cli", "gate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_gate_shows_the_verdict_without_counting_an_attempt(topics: Settings) -> None:
    producer = Producer({"bootstrap.servers": topics.bootstrap_servers, "log_level": 0})
    capped = state("acct-1", "bot-1", 4, caps={"text": CapStatus("daily", "2026-09-21", LATER)})
    t = Topics(topics.topic_prefix)
    value = record_from_state(capped).to_bytes()
    producer.produce(t.control, value, control_key("acct-1", "bot-1"))
    assert producer.flush(10) == 0

    text = run_gate(topics, "acct-1", "bot-1")
    assert text.returncode == 0, text.stderr
    assert "version 4" in text.stdout
    assert "fallback" in text.stdout and "back tomorrow" in text.stdout
    vision = run_gate(topics, "acct-1", "bot-1", "--category", "vision")
    assert "verdict for a vision call: allow" in vision.stdout
    unknown = run_gate(topics, "acct-1", "bot-new")
    assert "allowed by default" in unknown.stdout
    bad = run_gate(topics, "acct-1", "bot-1", "--category", "video")
    assert bad.returncode == 1
    assert "unknown category 'video'" in bad.stderr
    # a dry run: no cap hit went to the caphits topic
    consumer = Consumer({"bootstrap.servers": topics.bootstrap_servers, "group.id": "peek"})
    partitions = consumer.list_topics(t.caphits, timeout=10).topics[t.caphits].partitions
    ends = [
        consumer.get_watermark_offsets(TopicPartition(t.caphits, p), timeout=10)[1]
        for p in partitions
    ]
    consumer.close()
    assert ends == [0] * len(partitions)
