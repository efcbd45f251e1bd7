"""Settings come from CAPSTREAM_* variables, hide secrets, and name every topic once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from capstream.streams.settings import Settings
from capstream.streams.topics import Topics, topic_specs


def test_settings_read_env_and_never_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPSTREAM_KAFKA_BOOTSTRAP", "k1:9092,k2:9093")
    monkeypatch.setenv("CAPSTREAM_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("CAPSTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    s = Settings()
    assert s.bootstrap_servers == "k1:9092,k2:9093"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.librdkafka_config()["sasl.password"] == "hunter2"


def test_default_clickhouse_is_embedded_chdb_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.clickhouse_dsn == f"chdb:///{(tmp_path / 'clickhouse').as_posix().lstrip('/')}"
    assert Settings(clickhouse_url="http://ch:8123/db").clickhouse_dsn == "http://ch:8123/db"


@pytest.mark.parametrize("bad", ["localhost", "host:port", ":9092"])
def test_bootstrap_without_port_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(kafka_bootstrap=bad)


def test_topics_are_named_once_with_compaction_where_state_lives() -> None:
    specs = {s.name: s for s in topic_specs(Settings(topic_prefix="x", usage_partitions=6))}
    t = Topics("x")
    assert specs[t.usage].partitions == 6
    for compacted in (t.control, t.policies, t.tenants, t.feed):
        assert specs[compacted].config["cleanup.policy"] == "compact"
    assert Topics.dlq(t.usage) in specs
    assert len(specs) == len(topic_specs(Settings(topic_prefix="x")))
