"""pytest imports test modules and their helpers by basename (``rootdir``-relative imports
are not used here): two files of one name anywhere under tests/ stop the whole collection
with "import file mismatch", so every name is unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py")
    assert [n for n, k in names.items() if k > 1] == []
