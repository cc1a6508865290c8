"""Fixtures for integration tests: a real redis-server and a real Tansu broker on loopback.

Both are started once per test session, lazily (only when a test asks for them), and stopped at
its end. Tests that use them carry ``@pytest.mark.integration``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from txmon.embedded import RedisServer, TansuBroker


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    with TansuBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def kafka_bootstrap(tansu: TansuBroker) -> str:
    return tansu.bootstrap


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
