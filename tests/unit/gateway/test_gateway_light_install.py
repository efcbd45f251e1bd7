"""``pip install capstream`` is light for a gateway: the SDK needs none of the server stack
(issue 18 item 12). Checked two ways: the declared dependencies, and a fresh interpreter
that cannot import any server-only module yet imports and uses the SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from capstream.cli import SERVER_MODULES

ROOT = Path(__file__).resolve().parents[3]
SERVER_DISTS = {
    "faust-streaming", "rocksdict", "aiokafka", "clickhouse-connect", "chdb", "fastapi",
    "uvicorn", "aiosmtplib", "aiosmtpd", "httpx", "prometheus-client",
}  # fmt: skip

_BLOCKED = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (light install)", name=name)
sys.meta_path.insert(0, Refuse())
"""

_USE_THE_SDK = """
from capstream.gateway import Gateway, ReplyBatcher, UsageRecorder, UsageEventError, murmur2
from capstream.gateway.wire import event_text
from capstream.core import FallbackLedger, gate
from capstream.streams.control_wire import state_from_record
print(murmur2(b"acct-1"))
print(sorted({m.split(".")[0] for m in sys.modules} & BLOCKED))
"""


def _name(requirement: str) -> str:
    for stop in "[<>=; ":
        requirement = requirement.split(stop)[0]
    return requirement.lower()


def test_the_base_install_leaves_the_server_stack_to_the_server_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert base.isdisjoint(SERVER_DISTS), base & SERVER_DISTS
    assert {_name(r) for r in extras["server"]} >= SERVER_DISTS
    # `make` installs '.[dev]': it must still bring everything the tests run
    assert "capstream[server]" in extras["dev"]
    assert "capstream[server]" in extras["bench"]


def test_the_gateway_sdk_imports_and_runs_without_any_server_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAPSTREAM_PURE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", _BLOCKED + _USE_THE_SDK, ",".join(sorted(SERVER_MODULES))],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]"


def test_a_server_command_on_a_light_install_says_which_extra_to_install() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAPSTREAM_PURE": "1"}
    code = _BLOCKED + "from capstream.cli import main\nsys.argv = ['capstream', 'api']\nmain()"
    r = subprocess.run(
        [sys.executable, "-c", code, ",".join(sorted(SERVER_MODULES))],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "pip install 'capstream[server]'" in " ".join(r.stderr.split())
