"""A worker that stops on an error exits non-zero with the error on stderr (issue 21.4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from capstream.cli import app
from capstream.processors import worker as worker_module


class _Crashing:
    """Stands in for Faust's worker: runs, crashes, and ends with SystemExit(1) as Faust does."""

    crash_reason: BaseException | None = None

    def __init__(self, processors: Any, **kw: Any) -> None:
        self.processors = processors

    def execute_from_commandline(self) -> None:
        self.crash_reason = RuntimeError("producing to t.control failed: broker gone")
        raise SystemExit(1)


class _Clean(_Crashing):
    def execute_from_commandline(self) -> None:
        raise SystemExit(0)


@pytest.mark.parametrize(("fake", "code"), [(_Crashing, 1), (_Clean, 0)])
def test_capstream_worker_exits_non_zero_with_the_reason_after_a_crash(
    fake: type, code: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(worker_module, "_Worker", fake)
    monkeypatch.setenv("CAPSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CAPSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setattr(worker_module, "create_topics", lambda settings, **kw: {})
    monkeypatch.setattr(worker_module.gc, "set_threshold", lambda *a: None)
    result = CliRunner().invoke(app, ["worker", "--metrics-port", "-1"])
    if code:
        assert isinstance(result.exception, worker_module.WorkerCrashedError)
        assert "broker gone" in str(result.exception)
    else:
        assert result.exit_code == 0, result.output


def test_the_cli_entry_point_turns_the_crash_into_exit_1_and_a_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from capstream import cli

    monkeypatch.setattr(worker_module, "_Worker", _Crashing)
    monkeypatch.setenv("CAPSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CAPSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setattr(worker_module, "create_topics", lambda settings, **kw: {})
    monkeypatch.setattr(worker_module.gc, "set_threshold", lambda *a: None)
    monkeypatch.setattr("sys.argv", ["capstream", "worker", "--metrics-port", "-1"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    assert "broker gone" in capsys.readouterr().err
