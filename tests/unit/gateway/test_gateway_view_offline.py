"""Without a reachable broker the view is not ready, grows stale, and fails as configured."""

from __future__ import annotations

import time

import pytest

from capstream.gateway import (
    CONTROL_UNAVAILABLE,
    CapHitReporter,
    ControlView,
    Gateway,
    GatewayError,
)
from capstream.streams.local_kafka import free_port
from capstream.streams.settings import Settings

QUIET = {"log_level": 0}


@pytest.fixture
def nowhere() -> Settings:
    return Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", topic_prefix="offline")


def test_fail_closed_gateway_pauses_until_the_view_is_current(nowhere: Settings) -> None:
    view = ControlView(
        nowhere, on_disconnect="closed", max_disconnected_s=0.2, consumer_config=QUIET
    )
    reporter = CapHitReporter(nowhere, producer_config=QUIET)
    with Gateway(nowhere, view=view, reporter=reporter) as gateway:
        assert gateway.gate("acct-1", "bot-1", "c1", "text") is CONTROL_UNAVAILABLE
        assert not view.wait_ready(0.5)
        assert view.staleness_s >= 0.5


def test_fail_open_gateway_answers_from_what_it_knows(nowhere: Settings) -> None:
    view = ControlView(nowhere, max_disconnected_s=0.1, consumer_config=QUIET)
    reporter = CapHitReporter(nowhere, producer_config=QUIET)
    with Gateway(nowhere, view=view, reporter=reporter) as gateway:
        time.sleep(0.3)
        assert not view.ready
        assert not view.closed
        verdict = gateway.gate("acct-1", "bot-1", "c1", "text")
        assert (verdict.action, verdict.model, verdict.batching_interval_s) == (
            "allow",
            "claude-sonnet-4-6",
            3,
        )


def test_view_options_are_checked(nowhere: Settings) -> None:
    with pytest.raises(GatewayError, match="on_disconnect"):
        ControlView(nowhere, on_disconnect="maybe")  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="positive"):
        ControlView(nowhere, max_disconnected_s=0)
