"""Generating the vector files: each file's cases to deterministic JSON, written to a folder."""

from __future__ import annotations

import json
from pathlib import Path

from capstream.gateway.vectors.gate_cases import gate_vectors
from capstream.gateway.vectors.price_cases import price_vectors
from capstream.gateway.vectors.record_cases import (
    cap_hit_vectors,
    control_state_vectors,
    conversation_sent_vectors,
    partition_vectors,
)
from capstream.gateway.vectors.usage_cases import usage_batch_vectors
from capstream.gateway.vectors.value_block_cases import value_block_vectors

FILES = (
    "partitions.json",
    "usage_batches.json",
    "control_states.json",
    "cap_hits.json",
    "gate_sequences.json",
    "conversation_sent.json",
    "prices.json",
    "value_blocks.json",
)
DEFAULT_DIR = Path("testdata/vectors")


def generate() -> dict[str, str]:
    """Every vector file's name -> its text (deterministic)."""
    docs = {
        "partitions.json": partition_vectors(),
        "usage_batches.json": usage_batch_vectors(),
        "control_states.json": control_state_vectors(),
        "cap_hits.json": cap_hit_vectors(),
        "gate_sequences.json": gate_vectors(),
        "conversation_sent.json": conversation_sent_vectors(),
        "prices.json": price_vectors(),
        "value_blocks.json": value_block_vectors(),
    }
    return {
        name: json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
        for name, doc in docs.items()
    }


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Write every vector file to ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
