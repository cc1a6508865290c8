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
