"""Integration fixtures: one real Kafka broker per test session, fresh topics per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from admin_api import ADMIN
from fastapi.testclient import TestClient

from capstream.api.app import create_app
from capstream.api.keys import AdminKey, hash_secret
from capstream.streams.local_kafka import LocalKafka, free_port
from capstream.streams.settings import Settings
from capstream.streams.topics import create_topics


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker's bootstrap servers: ``CAPSTREAM_KAFKA_BOOTSTRAP`` or a local one we start."""
    external = os.environ.get("CAPSTREAM_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = LocalKafka(Path(tmp_path_factory.mktemp("broker")), free_port(), free_port())
    broker.up(timeout=120)
    try:
        yield broker.bootstrap
    finally:
        broker.down()


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings of a fresh deployment: its own topic prefix and data dir."""
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        data_dir=tmp_path / "data",
        usage_partitions=4,
        control_partitions=4,
    )


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """Create every topic of ``settings`` and return the settings."""
    create_topics(settings)
    return settings


@pytest.fixture
def group_id() -> Callable[[], str]:
    return lambda: f"g-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """A fresh deployment: its own topic prefix, 2 usage partitions, every topic created."""
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}",
                        data_dir=tmp_path / "w1", usage_partitions=2)  # fmt: skip
    create_topics(settings)
    return settings


@pytest.fixture
def api(deployment: Settings) -> Iterator[TestClient]:
    """The API on ``deployment``, with the admin key ``admin_api.ADMIN``."""
    with TestClient(create_app(deployment, admin=AdminKey(hash_secret(ADMIN)))) as client:
        yield client
