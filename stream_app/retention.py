"""Keeping a replay's state only while it is needed.

A replay's node records (features: ~690 of the ~890 bytes a transaction costs in Redis) and neighbour sets
serve scoring and step close only. Once every partition has passed the replay's ``replay_end`` and a grace
period ``TXMON_REPLAY_GRAPH_TTL_S`` is over — long enough for a crashed worker's batches to be processed
again, which needs them — they are deleted. What users read back stays: alerts, statistics, arrival and final
scores, the edge log and the tx id index (the ``/tx`` view reads neighbours from those), the claims. After
``TXMON_REPLAY_RETENTION_S`` the rest of the replay goes too (its alerts and statistics remain on their Kafka
topics), all but a tombstone. Events for a pruned or deleted replay are refused (dead-lettered): its steps are
closed and their inputs gone.
"""

from __future__ import annotations

import logging
import time

import redis

from stream_app.keys import ENDED, REPLAYS, ReplayKeys, StepKeys

log = logging.getLogger(__name__)
UNLINK_BATCH = 1000


def mark_ended(client: redis.Redis, replay_id: str, at: float) -> None:
    """Record when every partition had passed the replay's replay_end (the first time only)."""
    client.zadd(ENDED, {replay_id: at}, nx=True)


def prune_ended(client: redis.Redis, ttl_s: float, retention_s: float | None = None,
                now: float | None = None) -> dict[str, int]:
    """Prune the graph of every replay that ended more than ``ttl_s`` ago, and delete every replay that ended
    more than ``retention_s`` ago (None: never); returns replay id -> keys deleted. Idempotent: workers may
    run it at the same time."""
    now = time.time() if now is None else now
    done: dict[str, int] = {}
    if retention_s is not None:
        for replay_id in _ended_before(client, now - retention_s):
            done[replay_id] = delete_replay(client, replay_id)
            log.info("replay %s: deleted (%d keys), %g s after its end", replay_id, done[replay_id], retention_s)
    for replay_id in _ended_before(client, now - ttl_s):
        if not client.exists(ReplayKeys(replay_id).pruned):
            done[replay_id] = prune_replay(client, replay_id)
            log.info("replay %s: graph pruned (%d keys), %g s after its end", replay_id, done[replay_id], ttl_s)
    return done


def _ended_before(client: redis.Redis, cutoff: float) -> list[str]:
    return [raw.decode() if isinstance(raw, bytes) else str(raw)
            for raw in client.zrangebyscore(ENDED, "-inf", cutoff)]


def prune_replay(client: redis.Redis, replay_id: str) -> int:
    """Flag the replay as pruned (writers refuse it from now on), then delete its steps' node records and
    neighbour sets; returns the keys deleted."""
    client.set(ReplayKeys(replay_id).pruned, b"1")
    steps = _pattern(StepKeys(replay_id, 0).prefix.replace(":0}", ":*}"))  # every step: txm:{<id>:*}:
    return _unlink(client, steps + "node:*") + _unlink(client, steps + "nb:*")


def delete_replay(client: redis.Redis, replay_id: str) -> int:
    """Delete everything of the replay but a tombstone (its pruned flag: late events stay refused)."""
    rk = ReplayKeys(replay_id)
    client.set(rk.pruned, b"1")
    deleted = _unlink(client, _pattern(StepKeys(replay_id, 0).prefix.replace(":0}", ":*}")) + "*")
    deleted += _unlink(client, _pattern(rk.prefix) + "*", keep=rk.pruned.encode())
    client.zrem(ENDED, replay_id)
    client.zrem(REPLAYS, replay_id)
    return deleted


def _pattern(prefix: str) -> str:
    """A key prefix as a SCAN pattern (its hash-tag braces escaped)."""
    return prefix.replace("{", "\\{").replace("}", "\\}")


def _unlink(client: redis.Redis, pattern: str, keep: bytes | None = None) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=10_000):
        if key == keep:
            continue
        batch.append(key)
        if len(batch) >= UNLINK_BATCH:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def is_pruned(client: redis.Redis, replay_id: str) -> bool:
    return bool(client.exists(ReplayKeys(replay_id).pruned))
