"""The suite's layout and its service fixtures.

Folders: ``unit/`` (no services: plain functions, fakes allowed), ``integration/`` (a real redis-server and a
real broker on loopback), ``e2e/`` (worker processes as well); each mirrors the package it tests. Tests in
``integration/`` and ``e2e/`` are marked ``integration`` (and ``e2e``) by their folder; a unit test that asks
for a service fixture is a collection error.

The redis-server and the broker (Apache Kafka; Tansu for the fallback's smoke tests) are started once per
test session, lazily (only when a test asks for them), and stopped at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from txmon.core.settings import Settings
from txmon.embedded import KafkaBroker, RedisServer, TansuBroker, embedded_broker

HERE = Path(__file__).parent
SERVICE_FIXTURES = {"redis_server", "broker", "tansu", "redis_url", "kafka_bootstrap", "tansu_bootstrap",
                    "redis_client", "proc"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unit_with_services = []
    for item in items:
        folder = Path(item.path).relative_to(HERE).parts[0] if Path(item.path).is_relative_to(HERE) else ""
        if folder in ("integration", "e2e"):
            item.add_marker(pytest.mark.integration)
            if folder == "e2e":
                item.add_marker(pytest.mark.e2e)
        elif folder == "unit":
            used = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if used or item.get_closest_marker("integration"):
                unit_with_services.append(f"{item.nodeid} ({', '.join(sorted(used)) or 'marked integration'})")
    if unit_with_services:
        raise pytest.UsageError("unit tests may not use real services; move these to tests/integration/:\n  "
                                + "\n  ".join(unit_with_services))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaBroker | TansuBroker]:
    """The suite's broker: Apache Kafka wherever it can run (TXMON_EMBEDDED_BROKER=tansu for the fallback)."""
    with embedded_broker(Settings()) as b:
        yield b


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    """Tansu, for the smoke tests that keep the no-Java fallback working."""
    with TansuBroker() as b:
        yield b


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def kafka_bootstrap(broker: KafkaBroker | TansuBroker) -> str:
    return broker.bootstrap


@pytest.fixture(scope="session")
def tansu_bootstrap(tansu: TansuBroker) -> str:
    return tansu.bootstrap


@pytest.fixture(scope="session")
def worker_overrides(broker: KafkaBroker | TansuBroker) -> dict[str, object]:
    """Settings workers on the suite's broker need (on Tansu: at-least-once, a short fetch wait)."""
    return dict(broker.worker_settings)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a freshly emptied database."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def proc(redis_client: redis.Redis):  # noqa: ANN201
    """A stream Processor on the test's Redis with a tiny random GCN; threshold 0, so every scored
    transaction alerts."""
    import numpy as np
    import torch

    from model_store.inference import Scaler
    from model_store.models.gcn import GCN
    from stream_app.processor import Processor
    from stream_app.scorer import LoadedModel
    from txmon.core.elliptic_format import N_FEATURES

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    scaler = Scaler(rng.normal(size=N_FEATURES), np.abs(rng.normal(size=N_FEATURES)) + 0.5)
    # window_size 1: every transaction is scored as soon as it and those before it have arrived
    return Processor(redis_client, LoadedModel(GCN(N_FEATURES, hidden=8).eval(), scaler, 0.0, "gcn-test"),
                     window_size=1)
