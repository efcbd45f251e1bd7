"""The processors end to end on the real broker (wall clock): produce usage, read decisions.

One worker subprocess serves the whole module; each test uses its own accounts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_worker_harness import Config, ControlLog, TopicLog, WorkerProcess, wait_for

from capstream.core import CapHit, FallbackLedger, gate
from capstream.gateway import CapHitReporter, UsageRecorder
from capstream.gateway.wire import encode_event
from capstream.streams.avro_bytes import long_bytes, string_bytes
from capstream.streams.codecs import codec
from capstream.streams.records import DeadLetterRecord, FeedRowRecord, NotificationRecord
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, create_topics
from capstream.streams.usage_wire import encode_batch

HOUR = 3600


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=Path(tmp_path_factory.mktemp("worker")),
        usage_partitions=4,
        control_partitions=4,
    )
    create_topics(settings)
    return settings


@pytest.fixture(scope="module")
def worker(deployment: Settings) -> Iterator[WorkerProcess]:
    w = WorkerProcess(deployment)
    yield w
    assert w.stop() == 0, w.log()


@pytest.fixture(scope="module")
def control(deployment: Settings) -> Iterator[ControlLog]:
    log = ControlLog(deployment)
    yield log
    log.close()


@pytest.fixture(scope="module")
def recorder(deployment: Settings) -> Iterator[UsageRecorder]:
    with UsageRecorder(deployment, linger_ms=1) as r:
        yield r


@pytest.fixture
def config(deployment: Settings, worker: WorkerProcess) -> Config:
    return Config(deployment, worker)


def record(rec: UsageRecorder, account: str, bot: str = "bot-1", **amounts: object) -> None:
    fields: dict[str, object] = {"category": "text", "model": "m", "messages": 1, **amounts}
    assert rec.record(
        event_id=uuid.uuid4().hex, account_id=account, bot_id=bot, conversation_id="c-1",
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    assert rec.flush(10) == 0


def test_an_hourly_token_policy_blocks_for_its_duration_and_the_block_ends_by_itself(
    config: Config, control: ControlLog, recorder: UsageRecorder
) -> None:
    acct = f"a-{uuid.uuid4().hex[:8]}"
    config.policy(acct, "tok", metric="tokens", threshold=1_000, window_seconds=HOUR,
                  scope="bot", bot_id="bot-1", block={"duration_seconds": 3})  # fmt: skip
    record(recorder, acct, tokens_in=600)
    first = control.wait(acct, "bot-1", lambda s: True)
    assert first.blocked_until_ms is None
    sent = time.time() * 1000
    record(recorder, acct, tokens_in=600)  # 1,200 >= 1,000 within the hour
    blocked = control.wait(acct, "bot-1", lambda s: s.blocked_until_ms is not None)
    assert blocked.block_policy_id == "tok"
    assert abs(blocked.blocked_until_ms - (sent + 3_000)) < 2_000  # type: ignore[operator]
    verdict = gate(blocked, "text", "c-1", blocked.updated_at_ms + 1, FallbackLedger())
    assert verdict.action == "paused"
    # No further usage: the worker's timer publishes the end of the block by itself (the
    # bot's last own state; then the bot follows its account's state again).
    ended = control.wait(acct, "bot-1", lambda s: s.version > blocked.version, timeout=15, own=True)
    assert control.wait(acct, "bot-1", lambda s: s.bot_id == "*").blocked_until_ms is None
    assert ended.blocked_until_ms is None
    assert ended.updated_at_ms >= blocked.blocked_until_ms  # type: ignore[operator]
    assert ended.updated_at_ms - blocked.blocked_until_ms < 1_500  # type: ignore[operator]


def test_an_account_wide_policy_counts_every_bot_and_blocks_them_all(
    config: Config, control: ControlLog, recorder: UsageRecorder
) -> None:
    acct = f"a-{uuid.uuid4().hex[:8]}"
    config.policy(acct, "all", metric="messages", threshold=5, window_seconds=HOUR,
                  scope="account_total", block={"duration_seconds": 600})  # fmt: skip
    for i in range(5):
        record(recorder, acct, bot=f"bot-{i % 2}")
    for bot in ("bot-0", "bot-1", "*"):
        s = control.wait(acct, bot, lambda s: s.blocked_until_ms is not None)
        assert s.block_policy_id == "all"


def test_an_alert_is_sent_at_most_once_per_window(
    deployment: Settings, config: Config, recorder: UsageRecorder, control: ControlLog
) -> None:
    acct = f"a-{uuid.uuid4().hex[:8]}"
    notes = TopicLog(deployment, Topics(deployment.topic_prefix).notifications)
    try:
        alert = {"recipients": ["ops@x.test"]}
        config.policy(acct, "heads-up", metric="messages", threshold=3, window_seconds=HOUR,
                      scope="bot", bot_id="bot-1", alert=alert)  # fmt: skip
        for _ in range(10):
            record(recorder, acct)
        record(recorder, acct, bot="bot-2")  # a state for bot-2 marks the end of the stream
        control.wait(acct, "bot-2", lambda s: True)

        def mine() -> list[NotificationRecord]:
            topic = Topics(deployment.topic_prefix).notifications
            alerts = [NotificationRecord.from_bytes(v) for _, v in notes.of(topic)]
            return [n for n in alerts if n.account_id == acct]

        # The notifications topic is read by its own consumer: wait for the alert, then
        # long enough for a second one (all 10 events were decided) to show up too.
        deadline = time.monotonic() + 30
        while not mine() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        # the default warning levels: 50% (2 of 3) warns once; 80% and 90% round to the
        # threshold itself and are left out. (Notifications are keyed by id, so the two may
        # sit on different partitions: their order across partitions is not defined.)
        assert sorted((n.kind, n.policy_id, n.recipients) for n in mine()) == [
            ("policy_alert", "heads-up", ["ops@x.test"]),
            ("policy_warning", "heads-up", ["ops@x.test"]),
        ]
    finally:
        notes.close()


def test_a_daily_text_cap_puts_the_bot_in_fallback_and_a_media_cap_skips(
    config: Config, control: ControlLog, recorder: UsageRecorder
) -> None:
    acct = f"a-{uuid.uuid4().hex[:8]}"
    config.settings(acct, plan="starter", fallback_message="Back {{TIMEFRAME}}!",
                    caps={"text": {"daily_micro": 10_000},
                          "vision": {"monthly_micro": 5_000}})  # fmt: skip
    record(recorder, acct, credits_micro=6_000)
    record(recorder, acct, category="vision", credits_micro=5_000)
    vision = control.wait(acct, "bot-1", lambda s: "vision" in s.caps)
    ledger = FallbackLedger()
    assert gate(vision, "vision", "c-1", vision.updated_at_ms, ledger).action == "skip"
    assert gate(vision, "text", "c-1", vision.updated_at_ms, ledger).action == "allow"
    record(recorder, acct, credits_micro=4_000)  # 10,000: the daily text cap
    capped = control.wait(acct, "bot-1", lambda s: "text" in s.caps)
    assert capped.caps["text"].period == "daily"
    first = gate(capped, "text", "c-1", capped.updated_at_ms, ledger)
    assert (first.action, first.text) == ("fallback", "Back tomorrow!")
    assert gate(capped, "text", "c-1", capped.updated_at_ms, ledger).action == "skip"


def test_monthly_wins_when_both_caps_are_hit_at_once(
    config: Config, control: ControlLog, recorder: UsageRecorder
) -> None:
    acct = f"a-{uuid.uuid4().hex[:8]}"
    config.settings(acct, plan="pro",
                    caps={"text": {"daily_micro": 5_000, "monthly_micro": 5_000}})  # fmt: skip
    record(recorder, acct, credits_micro=5_000)
    capped = control.wait(acct, "bot-1", lambda s: "text" in s.caps)
    assert capped.caps["text"].period == "monthly"
    assert capped.fallback_text_monthly != capped.fallback_text_daily


def test_lowering_a_threshold_below_current_usage_blocks_at_once(
    config: Config, control: ControlLog, recorder: UsageRecorder
) -> None:
    acct = f"a-{uuid.uuid4().hex[:8]}"
    fields = {"metric": "tokens", "window_seconds": HOUR, "scope": "bot", "bot_id": "bot-1",
              "block": {"duration_seconds": 600}}  # fmt: skip
    config.policy(acct, "p", threshold=10_000, **fields)
    record(recorder, acct, tokens_in=700)
    first = control.wait(acct, "bot-1", lambda s: True)
    assert first.blocked_until_ms is None
    config.policy(acct, "p", threshold=500, **fields)  # no new usage after this
    blocked = control.wait(acct, "bot-1", lambda s: s.blocked_until_ms is not None)
    assert blocked.block_policy_id == "p"
    config.admin.delete_policy(acct, "p")  # deleting the blocking policy lifts its block
    # bot-1's last own state (then a tombstone: it follows its account's state again)
    lifted = control.wait(acct, "bot-1", lambda s: s.version > blocked.version, own=True)
    assert lifted.blocked_until_ms is None
    assert control.wait(acct, "bot-1", lambda s: s.bot_id == "*").blocked_until_ms is None


def test_a_bad_record_goes_to_the_dlq_and_the_good_ones_around_it_count(
    deployment: Settings, config: Config, control: ControlLog, recorder: UsageRecorder
) -> None:
    topics = Topics(deployment.topic_prefix)
    acct = f"a-{uuid.uuid4().hex[:8]}"
    dlq = TopicLog(deployment, Topics.dlq(topics.usage))
    try:
        config.policy(acct, "p", metric="tokens", threshold=1_000, window_seconds=HOUR,
                      scope="bot", bot_id="bot-1", block={"duration_seconds": 600})  # fmt: skip
        record(recorder, acct, tokens_in=500)
        config.admin.raw(topics.usage, acct.encode(), b"\xc3\x01 certainly not avro")
        now = int(time.time() * 1000)
        good = encode_event("g1", acct, "bot-1", "c-1", "text", "m", 500, 0, 1, False, 0, now, None)
        negative = b"".join(  # UsageRecorder refuses negative amounts: build the body by hand
            [*map(string_bytes, ("n1", acct, "bot-1", "c-1")), b"\x00", string_bytes("m"),
             long_bytes(-5), long_bytes(0), long_bytes(1), b"\x00", long_bytes(0),
             long_bytes(now), b"\x00"]
        )  # fmt: skip
        config.admin.raw(topics.usage, acct.encode(), encode_batch("b", "t", now, [negative, good]))
        blocked = control.wait(acct, "bot-1", lambda s: s.blocked_until_ms is not None)
        assert blocked.block_policy_id == "p"  # 500 + 500: both good events counted
        letters = wait_for(lambda: len(dlq.records) >= 2 and dlq.records, 20, "two dead letters")
        dead = [DeadLetterRecord.from_bytes(v) for _, _, v in letters]
        assert sorted(d.reason for d in dead) == ["negative_amount", "unknown_schema"]
        raw_garbage = next(d for d in dead if d.reason == "unknown_schema")
        assert raw_garbage.raw_value == b"\xc3\x01 certainly not avro"
        assert raw_garbage.source_topic == topics.usage and raw_garbage.offset >= 0
        refused = next(d for d in dead if d.reason == "negative_amount")
        assert refused.raw_value is not None
        assert codec("UsageBatch").decode(refused.raw_value)["events"][0]["event_id"] == "n1"
    finally:
        dlq.close()
    assert config.worker.metric("capstream_processor_dead_letters_total") >= 2


def test_cap_hits_roll_up_in_one_feed_row_per_conversation_and_day(
    deployment: Settings, config: Config
) -> None:
    topics = Topics(deployment.topic_prefix)
    acct = f"a-{uuid.uuid4().hex[:8]}"
    feed = TopicLog(deployment, topics.feed)
    reporter = CapHitReporter(deployment)
    try:
        config.settings(acct, plan="free", timezone="Asia/Karachi")
        now = int(time.time() * 1000)
        day = time.strftime("%Y-%m-%d", time.gmtime(now / 1000 + 5 * 3600))
        for i, hit_id in enumerate(["h1", "h2", "h2", "h3"]):  # h2 retried by the gateway
            reporter.report(CapHit(acct, "bot-1", "conv-7", "text", "daily", day, now + i, hit_id))
        assert reporter.flush() == 0

        def latest() -> FeedRowRecord | None:
            rows = [FeedRowRecord.from_bytes(v) for _, v in feed.of(topics.feed) if v]
            mine = [r for r in rows if r.account_id == acct]
            return mine[-1] if mine and mine[-1].attempts == 3 else None

        row = wait_for(latest, 20, "the feed row with 3 attempts")
        assert (row.conversation_id, row.local_day, row.category) == ("conv-7", day, "text")
        assert row.message == "AI reply paused — daily AI replies credit exhausted (3 attempts)"
        assert row.cta == "Upgrade to Starter →"
    finally:
        reporter.close()
        feed.close()


def test_the_metrics_endpoint_counts_events_and_decision_latency(worker: WorkerProcess) -> None:
    m = worker.metrics()
    assert m["capstream_processor_events_total"] > 10
    assert m['capstream_processor_published_total{kind="state"}'] > 5
    assert m["capstream_processor_decision_latency_seconds_count"] > 0
    assert any(k.startswith("capstream_processor_lag{") for k in m)
