"""The compiled hot path: which code runs, and the guard against stale binaries."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from capstream import _native

MODULES = ("pkg.core.a", "pkg.core.b")


def _tree(root: Path, *, compiled: tuple[str, ...], checkout: bool = True) -> None:
    if checkout:
        (root / "setup.py").write_text("")
    for module in MODULES:
        source = _native.source_of(module, root)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("X = 1\n")
        os.utime(source, (1_000, 1_000))
    for module in compiled:
        base = root.joinpath(*module.split("."))
        binary = base.with_name(base.name + EXTENSION_SUFFIXES[0])
        binary.write_bytes(b"\x7fELF")
        os.utime(binary, (2_000, 2_000))


def test_a_pure_install_has_nothing_stale(tmp_path: Path) -> None:
    _tree(tmp_path, compiled=())
    assert _native.stale(MODULES, tmp_path) == []


def test_binaries_newer_than_their_sources_are_used(tmp_path: Path) -> None:
    _tree(tmp_path, compiled=MODULES)
    assert _native.stale(MODULES, tmp_path) == []


def test_a_source_edited_after_the_build_makes_the_build_stale(tmp_path: Path) -> None:
    _tree(tmp_path, compiled=MODULES)
    os.utime(_native.source_of("pkg.core.b", tmp_path), (3_000, 3_000))
    assert _native.stale(MODULES, tmp_path) == ["pkg.core.b"]


def test_a_half_compiled_tree_is_stale(tmp_path: Path) -> None:
    _tree(tmp_path, compiled=("pkg.core.a",))
    assert _native.stale(MODULES, tmp_path) == ["pkg.core.b"]


def test_an_installed_wheel_is_never_stale(tmp_path: Path) -> None:
    _tree(tmp_path, compiled=MODULES, checkout=False)
    os.utime(_native.source_of("pkg.core.b", tmp_path), (3_000, 3_000))  # unpacked later
    assert _native.stale(MODULES, tmp_path) == []


def _loaded_from(env: dict[str, str]) -> str:
    code = (
        "import sys, capstream.core, capstream._native as n;"
        "print(sys.modules['capstream.core.evaluate'].__file__, n.compiled())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_capstream_pure_runs_every_listed_module_from_source() -> None:
    file, compiled = _loaded_from({"CAPSTREAM_PURE": "1"}).split()
    assert file.endswith("evaluate.py")
    assert compiled == "False"


def test_the_running_code_is_the_build_when_it_is_current() -> None:
    file, compiled = _loaded_from({"CAPSTREAM_PURE": ""}).split()
    built = _native.binary_of("capstream.core.evaluate") is not None
    assert compiled == str(built and not _native.stale())
    assert file.endswith(".py") != (compiled == "True")
