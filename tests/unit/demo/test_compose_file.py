"""docker-compose.kafka.yml against the code: the capstream services it runs are real
subcommands with valid flags and settings, and `docker compose config` accepts it where a
compose client exists (this machine has none with a daemon, so the file is checked here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer

from capstream.cli import app
from capstream.streams.local_kafka import kafka_version
from capstream.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.kafka.yml"
DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _capstream_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items() if "build" in s}


def _interpolated(env: dict[str, Any]) -> dict[str, str]:
    """The environment as compose gives it when no variable is set: ``${X:-d}`` -> ``d``."""
    return {k: DEFAULT.sub(lambda m: m.group(2) or "", str(v)) for k, v in env.items()}


def test_it_runs_kafka_clickhouse_and_every_long_running_capstream_service() -> None:
    services = _services()
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"  # the pom's pin
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    commands = {tuple(s["command"]) for s in _capstream_services().values()}
    assert {("worker",), ("sink",), ("notifier",), ("api",), ("topics", "create")} <= commands
    for name, s in services.items():
        image = s.get("image", "built:here")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image's tag"
        for needed in s.get("depends_on", {}):
            assert needed in services, f"{name} depends on a missing service {needed}"


def test_each_command_is_a_capstream_subcommand_with_valid_arguments() -> None:
    root = typer.main.get_command(app)
    for name, s in _capstream_services().items():
        args, cmd, path = list(s["command"]), root, ["capstream"]
        while hasattr(cmd, "get_command"):  # a group (typer ships its own copy of click)
            assert args, f"{name}: {' '.join(path)} needs a subcommand"
            sub = cmd.get_command(cmd.context_class(cmd), args[0])
            assert sub is not None, f"{name}: no such command {args[0]!r} under {path}"
            path.append(args.pop(0))
            cmd = sub
        cmd.make_context(" ".join(path), args)  # raises on an unknown flag or a bad value


def test_the_image_runs_the_capstream_command_and_ships_what_it_needs() -> None:
    dockerfile = ROOT / "Dockerfile"
    for s in _capstream_services().values():
        build = s["build"]
        context = build if isinstance(build, str) else build["context"]
        assert (ROOT / context).resolve() == ROOT and dockerfile.exists()
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["capstream"]' in text
    for copied in re.findall(r"^COPY (.+) \./?\S*$", text, flags=re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies a missing {path}"


def test_every_variable_is_a_setting_and_the_settings_validate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = {f"CAPSTREAM_{f.upper()}" for f in Settings.model_fields}
    for name, s in _capstream_services().items():
        env = _interpolated(s["environment"])
        assert set(env) <= fields, f"{name}: unknown variables {set(env) - fields}"
        for var in list(os.environ):
            if var.startswith("CAPSTREAM_"):
                monkeypatch.delenv(var)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        st = Settings(_env_file=None)
        assert st.bootstrap_servers == "kafka:29092"  # the broker's in-network listener
        assert st.clickhouse_dsn.startswith("http://") and st.clickhouse_password is not None
        assert st.api_host == "0.0.0.0"  # reachable through the published port
        assert st.smtp_host in _services(), "the notifier's SMTP host is a service"
    api = _services()["api"]
    assert f"8080:{Settings.model_fields['api_port'].default}" in api["ports"]


def test_docker_compose_config_accepts_it() -> None:
    plugin = shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    )
    if plugin and plugin.returncode == 0:
        cmd = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    else:
        pytest.skip("no docker compose client here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTREAM_")}
    r = subprocess.run([*cmd, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                       text=True, env=env, cwd=ROOT, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
