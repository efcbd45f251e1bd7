"""Compiles the hot path with mypyc (the list is in capstream/_native.py); the rest of the
packaging is in pyproject.toml.

``CAPSTREAM_PURE=1 pip install ...`` skips compiling. Without a working C compiler the
extensions are skipped (they are optional) and the same code runs as plain Python.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

from setuptools import setup

HERE = Path(__file__).resolve().parent


def _extensions() -> list[Any]:
    if os.environ.get("CAPSTREAM_PURE") == "1":
        return []
    from mypyc.build import mypycify

    native = runpy.run_path(str(HERE / "capstream" / "_native.py"))
    files = [native["source_of"](m).relative_to(HERE).as_posix() for m in native["COMPILED"]]
    # The project's mypy settings (strict, the pydantic plugin) are for checking; compiling
    # needs only the types of the listed modules, in a build environment that may lack the
    # third-party packages they import.
    flags = ["--config-file", os.devnull, "--ignore-missing-imports", "--follow-imports=silent"]
    extensions = mypycify([*flags, *files], opt_level="3", group_name=native["GROUP"])
    for ext in extensions:
        ext.optional = True
    return extensions


setup(ext_modules=_extensions())
