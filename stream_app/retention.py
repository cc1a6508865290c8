"""Keeping a replay's graph only while it is needed.

A replay's node records (features: ~690 of the ~890 bytes a transaction costs in Redis) and neighbour sets
serve scoring and step close only. Once every partition has passed the replay's ``replay_end`` and a grace
period ``TXMON_REPLAY_GRAPH_TTL_S`` is over — long enough for a crashed worker's batches to be processed
again, which needs them — they are deleted. What users read back stays: alerts, statistics, arrival and final
scores, the edge log and the tx id index (the ``/tx`` view reads neighbours from those), the claims. Events
for a pruned replay are refused (dead-lettered): its steps are closed and their inputs gone.
"""

from __future__ import annotations

import logging
import time

import redis

from stream_app.keys import ENDED, ReplayKeys, StepKeys

log = logging.getLogger(__name__)
UNLINK_BATCH = 1000


def mark_ended(client: redis.Redis, replay_id: str, at: float) -> None:
    """Record when every partition had passed the replay's replay_end (the first time only)."""
    client.zadd(ENDED, {replay_id: at}, nx=True)


def prune_ended(client: redis.Redis, ttl_s: float, now: float | None = None) -> dict[str, int]:
    """Prune every replay that ended more than ``ttl_s`` ago; returns replay id -> keys deleted. Idempotent:
    workers may run it at the same time."""
    cutoff = (time.time() if now is None else now) - ttl_s
    done = {}
    for raw in client.zrangebyscore(ENDED, "-inf", cutoff):
        replay_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        done[replay_id] = prune_replay(client, replay_id)
        client.zrem(ENDED, replay_id)
        log.info("replay %s: graph pruned (%d keys), %g s after its end", replay_id, done[replay_id], ttl_s)
    return done


def prune_replay(client: redis.Redis, replay_id: str) -> int:
    """Flag the replay as pruned (writers refuse it from now on), then delete its steps' node records and
    neighbour sets; returns the keys deleted."""
    client.set(ReplayKeys(replay_id).pruned, b"1")
    prefix = StepKeys(replay_id, 0).prefix.replace(":0}", ":*}")  # every step: txm:{<id>:*}:
    pattern = prefix.replace("{", "\\{").replace("}", "\\}")
    deleted = 0
    for family in ("node:*", "nb:*"):
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern + family, count=10_000):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    return deleted


def is_pruned(client: redis.Redis, replay_id: str) -> bool:
    return bool(client.exists(ReplayKeys(replay_id).pruned))
