"""README: where the design card's top-level streams/, processors/, sinks/ live (issue 18)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_readme_says_where_the_design_cards_top_level_packages_live() -> None:
    text = " ".join((ROOT / "README.md").read_text().split())
    for name in ("streams", "processors", "sinks"):
        assert f"`{name}/`" in text, name
        assert f"`capstream/{name}`" in text, name
        assert not (ROOT / name).exists(), f"a top-level {name}/ would contradict the README"
        assert importlib.import_module(f"capstream.{name}").__name__ == f"capstream.{name}"
    why = re.search(r"design card.{0,400}one importable package", text)
    assert why, "the README should say why: one importable package"
