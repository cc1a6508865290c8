"""A Redis client that times every round trip into ``txmon_redis_roundtrip_seconds``."""

from __future__ import annotations

import time
from typing import Any

import redis
from redis.client import Pipeline

from stream_app.metrics import REDIS_ROUNDTRIP


class TimedPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        t0 = time.perf_counter()
        try:
            return super().execute(raise_on_error)
        finally:
            REDIS_ROUNDTRIP.observe(time.perf_counter() - t0)


class TimedRedis(redis.Redis):
    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return super().execute_command(*args, **options)
        finally:
            REDIS_ROUNDTRIP.observe(time.perf_counter() - t0)


def connect(url: str) -> TimedRedis:
    # from_url builds cls(...), a TimedRedis; redis-py annotates it as returning plain "Redis".
    return TimedRedis.from_url(url, decode_responses=False)  # type: ignore[return-value]
