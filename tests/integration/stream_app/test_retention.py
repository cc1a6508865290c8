"""Retention: an ended replay's graph is pruned after its grace period; what users read back stays."""

from __future__ import annotations

import pytest
import redis

from stream_app import views
from stream_app.keys import ENDED, ReplayKeys, StepKeys
from stream_app.processor import Processor
from stream_app.retention import prune_ended, prune_replay
from stream_app.routing import record_published, route
from txmon.core.contracts import DeadLetter
from txmon.testing.records import MAX_BYTES, msg, replay_end, step_end, tx

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]


def _replay(proc: Processor, replay_id: str) -> None:
    """Step 1: tx 1001 → 1002 → 1003, closed, and the replay's end on its one partition."""
    batch = [msg(tx(seq=0, replay_id=replay_id), offset=0),
             msg(tx(seq=1, inputs_from=[(1001, 0)], replay_id=replay_id), offset=1),
             msg(tx(seq=2, inputs_from=[(1002, 1)], replay_id=replay_id), offset=2),
             msg(step_end(replay_id=replay_id, step=1, count=3), offset=3),
             msg(replay_end(replay_id=replay_id), offset=4)]
    assert record_published(proc, route(proc, batch, MAX_BYTES))


def test_an_ended_replay_is_pruned_after_its_grace_period_and_stays_readable(
        proc: Processor, redis_client: redis.Redis) -> None:
    for rid in ("a", "a-1", "a.b"):  # ids that share a prefix: only "a" may go
        _replay(proc, rid)
    keys = StepKeys("a", 1)
    before = views.transaction(redis_client, 1002, "a", 0.5)
    assert redis_client.exists(keys.node(0), keys.nb(1)) == 2
    ended = redis_client.zscore(ENDED, "a")
    assert ended is not None
    assert prune_ended(redis_client, ttl_s=60, now=ended + 30) == {}  # inside the grace period: kept
    redis_client.zrem(ENDED, "a-1", "a.b")
    assert set(prune_ended(redis_client, ttl_s=60, now=ended + 61)) == {"a"}
    assert redis_client.exists(keys.node(0), keys.nb(0), keys.nb(1), keys.nb(2)) == 0
    for other in ("a-1", "a.b"):
        assert redis_client.exists(StepKeys(other, 1).node(0), StepKeys(other, 1).nb(1)) == 2
    after = views.transaction(redis_client, 1002, "a", 0.5)
    assert after == before  # scores, alerts, neighbours: read from what stays
    assert views.latest_stats(redis_client, "a")["nodes_step"] == 3
    assert prune_replay(redis_client, "a") == 0  # again: nothing left to delete


def test_events_and_markers_of_a_pruned_replay_are_dead_lettered(proc: Processor,
                                                                 redis_client: redis.Redis) -> None:
    _replay(proc, "r")
    prune_replay(redis_client, "r")
    fresh = Processor(proc.redis, proc.model)  # a worker that never saw the replay
    out = route(fresh, [msg(tx(seq=3), offset=5), msg(step_end(step=2, count=1), offset=6)], MAX_BYTES)
    reasons = [DeadLetter.model_validate_json(v).reason for _, v in out.dead_letters]
    assert len(reasons) == 2 and all("has ended and its graph was pruned" in r for r in reasons)
    assert not out.stats and out.processed == 0
    assert not redis_client.exists(StepKeys("r", 1).node(0))  # nothing written back
    assert redis_client.exists(ReplayKeys("r").pruned)


def test_a_replay_past_its_retention_is_deleted_but_a_tombstone(proc: Processor, redis_client: redis.Redis) -> None:
    from stream_app.keys import REPLAYS

    for rid in ("old", "old-2"):
        _replay(proc, rid)
    ended = redis_client.zscore(ENDED, "old")
    redis_client.zadd(ENDED, {"old-2": ended + 1000})  # ended later: within its retention
    assert set(prune_ended(redis_client, ttl_s=0, retention_s=500, now=ended + 1100)) == {"old", "old-2"}
    left = [k for k in redis_client.scan_iter(count=10_000) if b"{old}" in k or b"{old:" in k]
    assert left == [ReplayKeys("old").pruned.encode()]  # the tombstone alone
    assert redis_client.zscore(ENDED, "old") is None and redis_client.zscore(REPLAYS, "old") is None
    assert views.latest_stats(redis_client, "old-2")["nodes_step"] == 3  # the other replay: pruned, readable
    out = route(Processor(proc.redis, proc.model), [msg(tx(seq=0, replay_id="old"), offset=9)], MAX_BYTES)
    assert out.dead_letters and out.processed == 0  # late events stay refused
