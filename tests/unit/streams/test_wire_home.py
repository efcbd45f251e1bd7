"""The wire format has one home (``capstream.streams``): the server side reads and writes
bytes without the gateway SDK, and the hand-written codecs' enum tables are the schemas'."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from capstream.streams.codecs import SCHEMA_DIR
from capstream.streams.usage_wire import CATEGORIES, PERIODS

PACKAGE = Path(__file__).resolve().parents[3] / "capstream"
SERVER_SIDE = ("processors", "sinks", "api", "streams", "core")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _gateway_imports(package: str) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for line, name in _imported_modules(path)
        if name == "capstream.gateway" or name.startswith("capstream.gateway.")
    ]


@pytest.mark.parametrize("package", SERVER_SIDE)
def test_the_server_side_imports_nothing_from_the_gateway_sdk(package: str) -> None:
    assert _gateway_imports(package) == []


def test_the_import_walk_sees_every_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import capstream.gateway.wire\n"
        "from capstream import gateway\n"
        "from capstream.gateway.partitioner import murmur2\n"
        "def f():\n    from capstream.gateway import Gateway\n"
    )
    names = [name for _, name in _imported_modules(module)]
    gateway = [n for n in names if n.startswith("capstream.gateway")]
    assert gateway == [
        "capstream.gateway.wire",
        "capstream.gateway",
        "capstream.gateway.partitioner",
        "capstream.gateway.partitioner.murmur2",
        "capstream.gateway",
        "capstream.gateway.Gateway",
    ]


def _symbols(name: str) -> tuple[str, ...]:
    return tuple(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["symbols"])


def test_the_category_and_period_tables_are_the_schemas_symbols_in_order() -> None:
    assert _symbols("Category") == CATEGORIES
    assert _symbols("CapPeriod") == PERIODS
