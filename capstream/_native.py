"""Which modules are compiled with mypyc, and a guard against running stale binaries.

The hot path (the decision core; a worker's decoding, applying and encoding of decisions;
the gateway SDK's event encoding) is plain, strictly typed Python that ``pip install`` also
compiles with mypyc (``setup.py``): the same code runs 1.5-2x faster. An extension module
is imported in preference to the ``.py`` next to it, so after a source edit an in-place
(editable) build would run the old code.
:func:`install` checks that every compiled module is newer than its source; if one is not,
or if ``CAPSTREAM_PURE=1`` is set, every listed module is imported from source instead
(all or none: compiled modules call each other directly, not through ``sys.modules``).
Rebuild with ``make build`` or ``pip install -e .``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

COMPILED: tuple[str, ...] = (
    "capstream.core.caps",
    "capstream.core.clock",
    "capstream.core.enforcement",
    "capstream.core.errors",
    "capstream.core.evaluate",
    "capstream.core.feed",
    "capstream.core.forecast",
    "capstream.core.limits",
    "capstream.core.gate",
    "capstream.core.messages",
    "capstream.core.models.decisions",
    "capstream.core.models.event",
    "capstream.core.models.policy",
    "capstream.core.models.tenant",
    "capstream.core.models.vocabulary",
    "capstream.core.notifications",
    "capstream.core.periods",
    "capstream.core.policies",
    "capstream.core.recompute",
    "capstream.core.resume",
    "capstream.core.scoped_state",
    "capstream.core.scopes",
    "capstream.core.series",
    "capstream.core.settings_view",
    "capstream.core.state",
    "capstream.core.state_codec",
    "capstream.core.usage",
    "capstream.core.usage_base",
    "capstream.core.usage_bytes",
    "capstream.core.windows",
    "capstream.gateway.wire",
    "capstream.processors.catalog",
    "capstream.processors.outbox",
    "capstream.processors.partition",
    "capstream.streams.avro_bytes",
    "capstream.streams.caphit_wire",
    "capstream.streams.control_wire",
    "capstream.streams.partitioner",
    "capstream.streams.usage_decode",
    "capstream.streams.usage_reroute",
    "capstream.streams.usage_results",
    "capstream.streams.usage_strict",
    "capstream.streams.usage_wire",
    "capstream.simulation.run",
)
"""Modules mypyc compiles (setup.py reads this list)."""

GROUP = "capstream.native"
"""mypyc's shared library of the group: ``capstream/native__mypyc.<ext>``."""

_ROOT = Path(__file__).resolve().parent.parent
_log = logging.getLogger("capstream")


def source_of(module: str, root: Path = _ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def binary_of(module: str, root: Path = _ROOT) -> Path | None:
    """The compiled extension of ``module`` next to its source, if there is one."""
    base = root.joinpath(*module.split("."))
    for suffix in EXTENSION_SUFFIXES:
        path = base.with_name(base.name + suffix)
        if path.exists():
            return path
    return None


def stale(modules: Sequence[str] = COMPILED, root: Path = _ROOT) -> list[str]:
    """Modules whose binary is missing or older than the source, if any is compiled.

    Only a source checkout (``setup.py`` next to the package) can go stale: an installed
    wheel's files are built together, and their mtimes are those of the unpacking.
    """
    if not (root / "setup.py").is_file():
        return []
    binaries = {m: binary_of(m, root) for m in modules}
    if not any(binaries.values()):
        return []  # a pure install: nothing can be stale
    out = []
    for module, binary in binaries.items():
        if binary is None or binary.stat().st_mtime < source_of(module, root).stat().st_mtime:
            out.append(module)
    return out


def compiled() -> bool:
    """Does this process run the compiled hot path?"""
    module = sys.modules.get("capstream.core.evaluate")
    file = getattr(module, "__file__", None) or ""
    return not file.endswith(".py") and binary_of("capstream.core.evaluate") is not None


class _FromSource(MetaPathFinder):
    """Imports the listed modules from their ``.py`` files, never from a binary."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILED:
            return None
        return spec_from_file_location(fullname, source_of(fullname))


def install() -> None:
    """Called once by ``capstream/__init__``, before any listed module is imported."""
    if any(isinstance(f, _FromSource) for f in sys.meta_path):
        return
    if os.environ.get("CAPSTREAM_PURE") != "1":
        old = stale()
        if not old:
            return
        _log.warning(
            "capstream: the compiled modules are older than their sources (%s); running the "
            "pure-Python code instead. Rebuild them with `make build` or `pip install -e .`.",
            ", ".join(old[:3]) + (", ..." if len(old) > 3 else ""),
        )
    sys.meta_path.insert(0, _FromSource())
