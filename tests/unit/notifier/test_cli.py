"""`capstream notifier --metrics-port`: a port, 0 = a free one, -1 = no endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from capstream.cli import app
from capstream.notifier import service


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int | None]:
    """The metrics_port each run of the notifier was given (the notifier itself not run)."""
    monkeypatch.setenv("CAPSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CAPSTREAM_NOTIFIER_METRICS_PORT", raising=False)
    given: list[int | None] = []

    def run_notifier(settings: Any, *, metrics_port: int | None = 0) -> dict[str, int]:
        assert settings.data_dir == tmp_path
        given.append(metrics_port)
        return {"sent": 0}

    monkeypatch.setattr(service, "run_notifier", run_notifier)
    return given


@pytest.mark.parametrize(
    ("args", "expected"),
    [([], 0), (["--metrics-port", "9464"], 9464), (["--metrics-port", "0"], 0)],
)
def test_the_port_is_passed_to_the_notifier(
    ports: list[int | None], args: list[str], expected: int
) -> None:
    result = CliRunner().invoke(app, ["notifier", *args])
    assert result.exit_code == 0, result.output
    assert ports == [expected]
    assert "notifier stopped: {'sent': 0}" in result.output


def test_minus_one_turns_the_endpoint_off(ports: list[int | None]) -> None:
    assert CliRunner().invoke(app, ["notifier", "--metrics-port", "-1"]).exit_code == 0
    assert ports == [None]


def test_the_port_can_come_from_the_environment(
    ports: list[int | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTREAM_NOTIFIER_METRICS_PORT", "9500")
    assert CliRunner().invoke(app, ["notifier"]).exit_code == 0
    monkeypatch.setenv("CAPSTREAM_NOTIFIER_METRICS_PORT", "-1")
    assert CliRunner().invoke(app, ["notifier"]).exit_code == 0
    assert ports == [9500, None]


@pytest.mark.parametrize("bad", ["-2", "65536", "abc"])
def test_a_port_out_of_range_is_refused_before_starting(ports: list[int | None], bad: str) -> None:
    result = CliRunner().invoke(app, ["notifier", "--metrics-port", bad])
    assert result.exit_code == 2
    assert "--metrics-port" in result.output
    assert ports == []
