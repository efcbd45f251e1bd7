"""The shared test vectors (testdata/vectors/): current, and passed by the Python SDK's own paths.

The vectors come from the reference code (fastavro codecs, ``core.gate``); these tests replay
them through what the SDK actually runs (the hand-written encoders of ``wire``, ``states``
and ``caphits``, and ``Gateway.gate`` with its inlined fast path and shared ledger). The
TypeScript SDK's tests replay the same files (sdk/typescript/test/vectors.test.ts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from capstream.core.limits import (
    MAX_CREDITS_MICRO,
    MAX_ID,
    MAX_MESSAGES,
    MAX_MODEL,
    MAX_OCCURRED_AT_MS,
    MAX_TOKENS,
    MIN_OCCURRED_AT_MS,
)
from capstream.core.models import CapHit, EnforcementState, ValueBlock
from capstream.errors import DecodeError
from capstream.gateway import (
    Gateway,
    NotDeliveredError,
    UnknownCategoryError,
    UsageEventError,
    UsageRecorder,
)
from capstream.gateway.ledger import expires_at, sent_key
from capstream.gateway.recorder import DEFAULT_CONVERSATIONS_TRACKED
from capstream.gateway.vectors import FILES, generate, stale, write
from capstream.gateway.vectors.value_block_cases import block_json
from capstream.gateway.wire import encode_batch_texts, encode_event
from capstream.streams.caphit_wire import encode_cap_hit
from capstream.streams.codecs import codec
from capstream.streams.control_wire import decode_state, encode_state, state_to_avro
from capstream.streams.partitioner import murmur2, partition_for
from capstream.streams.settings import Settings
from capstream.streams.usage_wire import encode_batch
from capstream.streams.value_blocks import decode_value_block, value_block_key

VECTORS = Path(__file__).resolve().parents[3] / "testdata" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def long(value: Any) -> Any:
    """Longs beyond 2**53 - 1 are decimal strings in the files."""
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value


def event_fields(event: dict[str, Any]) -> dict[str, Any]:
    fields = {k: long(v) for k, v in event.items()}
    attributes = event["attributes"]
    fields["attributes"] = dict(attributes) if isinstance(attributes, list) else attributes
    return fields


def test_the_committed_vectors_are_what_the_generator_writes_now() -> None:
    assert stale(VECTORS) == [], "stale vectors: run `capstream vectors generate` and commit"


def test_a_changed_or_missing_vector_file_is_reported_stale(tmp_path: Path) -> None:
    write(tmp_path)
    assert stale(tmp_path) == []
    path = tmp_path / "gate_sequences.json"
    path.write_text(path.read_text().replace('"skip"', '"allow"', 1))
    (tmp_path / "partitions.json").unlink()
    assert stale(tmp_path) == ["partitions.json", "gate_sequences.json"]


def test_the_generator_is_deterministic() -> None:
    assert generate() == generate()
    assert sorted(generate()) == sorted(FILES)


def test_murmur2_and_partitions_match_the_vectors() -> None:
    cases = load("partitions.json")["cases"]
    assert len(cases) > 150
    for case in cases:
        key = bytes.fromhex(case["key_hex"])
        assert murmur2(key) == case["murmur2"], key
        for n, p in case["partitions"].items():
            assert partition_for(key, int(n)) == p


def test_the_recorders_encoding_is_the_usage_batch_of_the_vectors() -> None:
    doc = load("usage_batches.json")
    assert codec("UsageBatch").fingerprint.hex() == doc["fingerprint_hex"]
    for case in doc["cases"]:
        events = [event_fields(e) for e in case["events"]]
        bodies = [encode_event(**e) for e in events]
        value = encode_batch(case["batch_id"], case["producer"], case["sent_at_ms"], bodies)
        assert value.hex() == case["hex"], case["name"]
        decoded = codec("UsageBatch").decode(value)
        assert decoded["events"] == events, case["name"]


def test_the_recorder_refuses_the_bad_events_naming_the_field() -> None:
    bad = load("usage_batches.json")["bad_events"]
    assert len(bad) >= 30
    for case in bad:
        fields = event_fields(case["event"])
        if case.get("lone_surrogate"):
            fields[case["field"]] = "\ud800"
        if "occurred_at_from_now_ms" in case:
            fields["occurred_at_ms"] = int(time.time() * 1000) + case["occurred_at_from_now_ms"]
        with pytest.raises(UsageEventError) as info:
            encode_event(**fields)
        assert info.value.field == case["field"], case
        if "message" in case:
            assert str(info.value) == case["message"]


def test_every_bound_of_core_limits_has_a_refusal_vector_and_an_accepted_one() -> None:
    doc = load("usage_batches.json")
    limits = doc["limits"]
    assert limits["max_tokens"] == MAX_TOKENS and limits["max_credits_micro"] == MAX_CREDITS_MICRO
    refused = {(c["field"], json.dumps(c["event"][c["field"]])) for c in doc["bad_events"]}
    for field, value in [
        ("account_id", "a" * (MAX_ID + 1)), ("bot_id", "b" * (MAX_ID + 1)),
        ("model", "m" * (MAX_MODEL + 1)), ("tokens_in", MAX_TOKENS + 1),
        ("tokens_out", MAX_TOKENS + 1), ("messages", MAX_MESSAGES + 1),
        ("credits_micro", MAX_CREDITS_MICRO + 1), ("occurred_at_ms", 0),
        ("occurred_at_ms", MIN_OCCURRED_AT_MS - 1), ("occurred_at_ms", MAX_OCCURRED_AT_MS),
    ]:  # fmt: skip
        assert (field, json.dumps(value)) in refused, field
    assert any("occurred_at_from_now_ms" in c for c in doc["bad_events"])
    largest = next(c for c in doc["cases"] if c["name"].startswith("the largest counts"))
    event = largest["events"][0]
    assert (event["tokens_in"], event["messages"], long(event["credits_micro"])) == (
        MAX_TOKENS, MAX_MESSAGES, MAX_CREDITS_MICRO,
    )  # fmt: skip


def test_the_recorder_derives_conversation_started_like_the_vectors() -> None:
    doc = load("usage_batches.json")
    assert doc["default_conversations_tracked"] == DEFAULT_CONVERSATIONS_TRACKED
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1", topic_prefix="vectors")
    for seq in doc["conversation_started"]:
        recorder = UsageRecorder(
            nowhere,
            conversations_tracked=seq["conversations_tracked"],
            producer_config={"log_level": 0},
        )
        try:
            for event, started in zip(seq["events"], seq["started"], strict=True):
                if started is None:
                    with pytest.raises(UsageEventError):
                        recorder.record(**event_fields(event))
                else:
                    assert recorder.record(**event_fields(event))
            value = encode_batch_texts("b", "p", 1, [body for _, body in recorder._queue])
            flags = [e["conversation_started"] for e in codec("UsageBatch").decode(value)["events"]]
            assert flags == [s for s in seq["started"] if s is not None], seq["name"]
        finally:
            with pytest.raises(NotDeliveredError):  # no broker: the events stay unconfirmed
                recorder.close(timeout=0.1)


def test_control_values_decode_to_the_vector_states_and_encode_back() -> None:
    doc = load("control_states.json")
    assert codec("EnforcementState").fingerprint.hex() == doc["fingerprint_hex"]
    for case in doc["cases"]:
        state = decode_state(bytes.fromhex(case["hex"]))
        assert state_to_avro(state) == {k: long(v) for k, v in case["state"].items()}
        assert encode_state(state).hex() == case["hex"], case["name"]


def test_bad_control_values_are_refused_with_the_vector_reason() -> None:
    bad = load("control_states.json")["bad"]
    assert {c["reason"] for c in bad} >= {"empty", "not_avro", "unknown_schema", "corrupt"}
    for case in bad:
        with pytest.raises(DecodeError) as info:
            decode_state(bytes.fromhex(case["hex"]))
        assert info.value.reason == case["reason"], case["name"]


def test_the_reporters_cap_hit_bytes_are_the_vectors() -> None:
    for case in load("cap_hits.json")["cases"]:
        hit = case["hit"]
        encoded = encode_cap_hit(
            CapHit(
                hit["account_id"], hit["bot_id"], hit["conversation_id"], hit["category"],
                hit["period"], hit["period_key"], hit["occurred_at_ms"], hit["hit_id"],
            )
        )  # fmt: skip
        assert encoded.hex() == case["hex"]


def test_what_gateways_sent_is_the_conversation_sent_of_the_vectors() -> None:
    doc = load("conversation_sent.json")
    sent_codec = codec("ConversationSent")
    assert sent_codec.fingerprint.hex() == doc["fingerprint_hex"]
    for case in doc["cases"]:
        sent = case["sent"]
        assert sent_codec.encode(sent).hex() == case["hex"]
        assert sent_codec.decode(bytes.fromhex(case["hex"])) == sent
        assert sent_key(sent["kind"], sent["account_id"], sent["bot_id"],
                        sent["conversation_id"], sent["period_key"]) == case["key"]  # fmt: skip
        assert expires_at(sent["kind"], sent["period_key"], sent["at_ms"]) == sent["expires_at_ms"]


class _View:
    closed = False

    def __init__(self, states: list[EnforcementState], blocks: tuple[ValueBlock, ...] = ()) -> None:
        self.states = {(s.account_id, s.bot_id): s for s in states}
        self.value_blocks: dict[str, dict[tuple[str, str, str], ValueBlock]] = {}
        for b in blocks:  # in order: the latest record of a key wins
            self.value_blocks.setdefault(b.account_id, {})[(b.bot_id, b.attribute, b.value)] = b


class _Reporter:
    def __init__(self) -> None:
        self.hits: list[CapHit] = []

    def report(self, hit: CapHit) -> bool:
        self.hits.append(hit)
        return True

    def close(self) -> None:
        pass


def verdict_json(v: Any) -> dict[str, Any]:
    hit = v.cap_hit
    return {
        "action": v.action,
        "model": v.model,
        "batching_interval_s": v.batching_interval_s,
        "text": v.text,
        "reason": v.reason,
        "reply_at_ms": v.reply_at_ms,
        "resumes_at_ms": v.resumes_at_ms,
        "cap_hit": None
        if hit is None
        else {
            "hit_id": hit.hit_id,
            "account_id": hit.account_id,
            "bot_id": hit.bot_id,
            "conversation_id": hit.conversation_id,
            "category": hit.category,
            "period": hit.period,
            "period_key": hit.period_key,
            "occurred_at_ms": hit.occurred_at_ms,
        },
    }


def test_the_gateway_answers_every_gate_sequence_like_the_vectors() -> None:
    doc = load("gate_sequences.json")
    actions: set[str] = set()
    for seq in doc["sequences"]:
        states = [decode_state(bytes.fromhex(s["hex"])) for s in seq["states"]]
        reporter = _Reporter()
        gateway = Gateway(
            Settings(kafka_bootstrap="127.0.0.1:1"),
            view=_View(states),  # type: ignore[arg-type]
            reporter=reporter,  # type: ignore[arg-type]
            ledger_entries=seq["ledger_entries"],
            default_model=doc["default_model"],
        )
        hits = 0
        for i, step in enumerate(seq["steps"]):
            call = (step["account_id"], step["bot_id"], step["conversation_id"], step["category"])
            if "error" in step["verdict"]:
                # one type and one text, whether or not the gateway holds a state for the bot
                with pytest.raises(UnknownCategoryError) as info:
                    gateway.gate(*call, step["now"])
                assert str(info.value) == step["verdict"]["message"]
                continue
            got = verdict_json(gateway.gate(*call, step["now"]))
            assert got == step["verdict"], f"{seq['name']}: step {i} {call} at {step['now']}"
            actions.add(got["action"])
            hits += got["cap_hit"] is not None
        assert len(reporter.hits) == hits, seq["name"]  # every capped attempt is reported
    assert actions == {"allow", "fallback", "skip", "paused"}


def test_value_block_records_decode_like_the_vectors_and_bad_ones_are_refused() -> None:
    doc = load("value_blocks.json")
    assert codec("ValueBlock").fingerprint.hex() == doc["fingerprint_hex"]
    for case in doc["records"]:
        b = decode_value_block(bytes.fromhex(case["hex"]))
        assert block_json(b) == case["block"]
        assert value_block_key(b.account_id, b.bot_id, b.attribute, b.value).decode() == case["key"]
    for case in doc["bad"]:
        with pytest.raises(DecodeError) as info:
            decode_value_block(bytes.fromhex(case["hex"]))
        assert info.value.reason == case["reason"], case["name"]


def test_the_gateway_refuses_blocked_values_like_the_vectors() -> None:
    doc = load("value_blocks.json")
    paused = 0
    for seq in doc["sequences"]:
        states = [decode_state(bytes.fromhex(s["hex"])) for s in seq["states"]]
        blocks = [decode_value_block(bytes.fromhex(h)) for h in seq["blocks"]]
        gateway = Gateway(
            Settings(kafka_bootstrap="127.0.0.1:1"),
            view=_View(states, tuple(blocks)),  # type: ignore[arg-type]
            reporter=_Reporter(),  # type: ignore[arg-type]
            share_ledger=False,
        )
        for i, step in enumerate(seq["steps"]):
            call = (step["account_id"], step["bot_id"], step["conversation_id"], step["category"])
            attributes = dict(step["attributes"])
            if "error" in step["verdict"]:
                with pytest.raises(UnknownCategoryError) as info:
                    gateway.gate(*call, step["now"], attributes=attributes)
                assert str(info.value) == step["verdict"]["message"]
                continue
            got = verdict_json(gateway.gate(*call, step["now"], attributes=attributes))
            assert got == step["verdict"], f"{seq['name']}: step {i} {call} at {step['now']}"
            paused += got["reason"] is not None and got["reason"].startswith("policy_block:")
    assert paused >= 5


def test_the_vectors_command_writes_then_checks_and_names_stale_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from capstream.cli import app
    from capstream.errors import CapstreamError

    runner = CliRunner()
    written = runner.invoke(app, ["vectors", "generate", "--out", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    assert runner.invoke(app, ["vectors", "check", "--dir", str(tmp_path)]).exit_code == 0
    (tmp_path / "cap_hits.json").write_text("{}")
    stale_run = runner.invoke(app, ["vectors", "check", "--dir", str(tmp_path)])
    assert isinstance(stale_run.exception, CapstreamError)
    assert "cap_hits.json" in str(stale_run.exception)
    assert "capstream vectors generate" in str(stale_run.exception)
