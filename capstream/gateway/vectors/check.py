"""Checking committed vector files against what :func:`generate` writes now."""

from __future__ import annotations

from pathlib import Path

from capstream.gateway.vectors.generate import DEFAULT_DIR, generate


def stale(directory: Path = DEFAULT_DIR) -> list[str]:
    """The vector files in ``directory`` that are missing or differ from :func:`generate`."""
    out = []
    for name, text in generate().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out
