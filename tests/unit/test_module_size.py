"""Every module of capstream fits in a reader's head: at most 400 lines (issue 22)."""

from __future__ import annotations

from pathlib import Path

import capstream

ROOT = Path(capstream.__file__).resolve().parent
MAX_LINES = 400


def test_no_module_is_over_400_lines() -> None:
    over = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert over == {}
