"""Gateways refuse one blocked attribute value (issue 24 item 3) through the real pipeline: a
per-end-user policy with a block, created over HTTP; alice goes over the threshold, the real
worker publishes her value block to the value-blocks topic, and a Python gateway and a
TypeScript gateway refuse alice's next call (paused, until the block's end) and allow bob's.
Real broker, real worker process, the TypeScript SDK in a node process."""

from __future__ import annotations

from pathlib import Path

from admin_api import tenant
from fastapi.testclient import TestClient
from test_scoped_policies import CATALOG, HEAVY_USERS, use
from test_typescript_sdk import Driver, ts_sdk  # noqa: F401 (ts_sdk: a fixture)
from test_worker_harness import TopicLog, WorkerProcess, wait_for

from capstream.core.models import ValueBlock
from capstream.gateway import Gateway, UsageRecorder
from capstream.streams.settings import Settings
from capstream.streams.topics import Topics
from capstream.streams.value_blocks import decode_value_block


def test_gateways_of_both_sdks_refuse_the_blocked_end_user_and_allow_the_others(
    deployment: Settings,
    api: TestClient,
    ts_sdk: Path,  # noqa: F811
) -> None:
    topics = Topics(deployment.topic_prefix)
    blocks = TopicLog(deployment, topics.value_blocks)
    worker = WorkerProcess(deployment)
    gateway = Gateway(deployment, share_ledger=False)
    ts = Driver(ts_sdk, deployment)
    try:
        auth = tenant(api, "acme", "bot-1")
        r = api.post("/v1/accounts/acme/policies", headers=auth, json=HEAVY_USERS)
        assert r.status_code == 201, r.text
        wait_for(lambda: worker.metric(CATALOG) >= 1, 30, "the policy at the worker")
        assert gateway.wait_ready(30)
        assert ts.call("ready")["ready"]
        alice, bob = {"end_user": "alice"}, {"end_user": "bob"}
        assert gateway.gate("acme", "bot-1", "c", "text", attributes=alice).action == "allow"

        with UsageRecorder(deployment, linger_ms=1) as rec:
            use(rec, "bob", 400)
            for _ in range(3):
                use(rec, "alice", 400)  # alice: 1,200, over at her third

        def published() -> list[ValueBlock]:
            return [decode_value_block(v) for _, v in blocks.of(topics.value_blocks) if v]

        wait_for(lambda: len(published()) == 1, 30, "alice's value block on the topic")
        (block,) = published()
        assert (block.account_id, block.bot_id, block.attribute, block.value, block.policy_id) == (
            "acme", "bot-1", "end_user", "alice", "heavy-users",
        )  # fmt: skip
        until = block.blocked_until_ms

        wait_for(
            lambda: gateway.gate("acme", "bot-1", "c", "text", attributes=alice).action == "paused",
            30,
            "the Python gateway to refuse alice",
        )
        refused = gateway.gate("acme", "bot-1", "c", "text", attributes=alice)
        assert (refused.reason, refused.resumes_at_ms) == ("policy_block:heavy-users", until)
        assert gateway.gate("acme", "bot-1", "c", "text", attributes=bob).action == "allow"
        assert gateway.gate("acme", "bot-1", "c", "text").action == "allow"  # no attributes

        call = ("acme", "bot-1", "c", "text", None)
        wait_for(
            lambda: ts.gate((*call, alice))[0]["action"] == "paused",
            30,
            "the TypeScript gateway to refuse alice",
        )
        ts_alice, ts_bob = ts.gate((*call, alice), (*call, bob))
        assert (ts_alice["reason"], ts_alice["resumes_at_ms"]) == (
            "policy_block:heavy-users",
            until,
        )
        assert ts_bob["action"] == "allow"
    finally:
        ts.close()
        gateway.close()
        worker.stop()
        blocks.close()
