"""The core's public surface: exports, and purity (no I/O frameworks imported)."""

from __future__ import annotations

import subprocess
import sys

import capstream.core as core


def test_everything_in_all_is_exported_and_public_names_are_listed() -> None:
    for name in core.__all__:
        assert hasattr(core, name), name
    public = {n for n in vars(core) if not n.startswith("_") and n[0].isupper()}
    modules = {n for n, v in vars(core).items() if type(v) is type(core)}
    assert public - modules <= set(core.__all__)


def test_core_imports_no_kafka_faust_clickhouse_pydantic_or_web_framework() -> None:
    code = (
        "import sys, capstream.core; "
        "bad = {'faust', 'aiokafka', 'confluent_kafka', 'clickhouse_connect', 'chdb', "
        "'pydantic', 'fastapi', 'starlette', 'fastavro'}; "
        "print(sorted(bad & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_vocabulary_values_match_the_wire_names() -> None:
    assert [c.value for c in core.Category] == ["text", "vision", "audio", "documents"]
    assert [m.value for m in core.Metric] == ["tokens", "messages", "conversations", "credits"]
    assert [p.value for p in core.Plan] == ["free", "starter", "pro", "enterprise"]
    assert [t.value for t in core.Throttle] == ["off", "smart", "strict"]
    assert [lang.value for lang in core.Language] == ["en", "ur", "ms", "ar", "bn", "id", "zh"]
    assert [s.value for s in core.PolicyScope] == ["bot", "account_each_bot", "account_total"]
    assert issubclass(core.PolicyError, core.CoreError)
