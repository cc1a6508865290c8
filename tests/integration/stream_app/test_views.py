"""The worker's web views as plain functions over a real redis-server (the HTTP layer: test_end_to_end)."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stream_app import views
from stream_app.processor import Processor
from stream_app.routing import record_published, route
from txmon.core.contracts import ALERT_KINDS
from txmon.embedded import free_port
from txmon.testing.records import MAX_BYTES, msg, step_end, tx

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]


def _replay_chain(proc: Processor, close: bool) -> None:
    """Step 1 of replay 'r': tx 1001 → 1002 → 1003 (seq 0, 1, 2); every one alerts (threshold 0)."""
    batch = [msg(tx(seq=0), offset=0), msg(tx(seq=1, inputs_from=[(1001, 0)]), offset=1),
             msg(tx(seq=2, inputs_from=[(1002, 1)]), offset=2)]
    if close:
        batch.append(msg(step_end(step=1), offset=3))
    record_published(proc, route(proc, batch, MAX_BYTES))


def test_a_transaction_before_and_after_its_step_closes(proc: Processor) -> None:
    _replay_chain(proc, close=False)
    open_ = views.transaction(proc.redis, 1002, None, 0.5)  # the newest replay by default
    assert (open_["replay_id"], open_["step"], open_["seq"], open_["step_closed"]) == ("r", 1, 1, False)
    assert 0 <= open_["arrival_score"] <= 1 and open_["final_score"] is None
    assert open_["alerts"] == ["arrival"]
    assert sorted(n["tx_id"] for n in open_["neighbours"]) == [1001, 1003]

    record_published(proc, route(proc, [msg(step_end(step=1), offset=3)], MAX_BYTES))
    closed = views.transaction(proc.redis, 1002, "r", 0.5)
    assert closed["step_closed"] and 0 <= closed["final_score"] <= 1
    assert all(n["final_score"] is not None for n in closed["neighbours"])
    end = views.transaction(proc.redis, 1003, "r", 0.5)
    assert [n["tx_id"] for n in end["neighbours"]] == [1002]
    assert (end["threshold"], end["arrival_threshold"]) == (0.5, 0.5)  # a version without an arrival model
    assert views.transaction(proc.redis, 1003, "r", 0.5, 0.7)["arrival_threshold"] == 0.7


@pytest.mark.parametrize(("tx_id", "replay", "status", "fragment"), [
    ("999", None, 404, "transaction 999 is not in replay 'r'"),
    ("abc", None, 400, "positive integer"),
    ("0", None, 400, "positive 64-bit"),
    (str(2**63), None, 400, "positive 64-bit"),
    ("1001", "nope", 404, "no replay 'nope'"),
    ("1001", "bad{id}", 400, "replay id"),
])
def test_bad_transaction_lookups(proc: Processor, tx_id: str, replay: str | None, status: int, fragment: str) -> None:
    _replay_chain(proc, close=False)
    with pytest.raises(views.ViewError) as e:
        views.transaction(proc.redis, views.parse_tx_id(tx_id), replay, 0.5)
    assert e.value.status == status and fragment in e.value.message


def test_nothing_processed_yet(redis_client: redis.Redis) -> None:
    for call in (lambda: views.transaction(redis_client, 1, None, 0.5), lambda: views.latest_stats(redis_client, None)):
        with pytest.raises(views.ViewError) as e:
            call()
        assert e.value.status == 404 and "no replay" in e.value.message
    assert views.latest_alerts(redis_client, 10) == []


def test_latest_alerts_newest_first_with_filters(proc: Processor) -> None:
    _replay_chain(proc, close=True)
    everything = views.latest_alerts(proc.redis, 50)
    assert {a["kind"] for a in everything} <= set(ALERT_KINDS) and len(everything) >= 3
    assert [a["tx_id"] for a in views.latest_alerts(proc.redis, 50, "arrival")] == [1003, 1002, 1001]
    assert len(views.latest_alerts(proc.redis, 2)) == 2
    assert views.latest_alerts(proc.redis, 50, replay_id="other") == []
    for bad in (lambda: views.latest_alerts(proc.redis, 5, "maybe"), lambda: views.parse_limit("x"),
                lambda: views.parse_limit("0"), lambda: views.parse_limit("100000")):
        with pytest.raises(views.ViewError) as e:
            bad()
        assert e.value.status == 400


def test_latest_stats(proc: Processor) -> None:
    _replay_chain(proc, close=False)
    with pytest.raises(views.ViewError) as e:
        views.latest_stats(proc.redis, "r")
    assert e.value.status == 404 and "no finalised step" in e.value.message
    record_published(proc, route(proc, [msg(step_end(step=1), offset=3)], MAX_BYTES))
    s = views.latest_stats(proc.redis, None)
    assert (s["replay_id"], s["step"], s["nodes_step"], s["edges_step"]) == ("r", 1, 3, 2)
    assert views.latest_stats(proc.redis, "r", 1) == s
    with pytest.raises(views.ViewError) as e:
        views.latest_stats(proc.redis, "r", 2)
    assert e.value.status == 404


def test_health(redis_client: redis.Redis) -> None:
    ok = views.health(redis_client, "gcn-v1", 100.0, 103.5)
    assert ok == {"status": "ok", "redis": "ok", "model_version": "gcn-v1", "uptime_s": 3.5}
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0))  # redis-py would retry a refused connection for ~4 s
    with pytest.raises(views.ViewError) as e:
        views.health(dead, "gcn-v1", 100.0, 101.0)
    assert e.value.status == 503 and "Redis is unreachable" in e.value.message


def test_health_answers_503_once_redis_lost_the_state(proc: Processor) -> None:
    """Redis restarted empty (here: flushed) under a running worker: /health says so; the worker's check raises."""
    from stream_app.state import StateLost

    assert views.health(proc.redis, "v", 0.0, 1.0, proc.instance)["status"] == "ok"
    proc.check_state()
    proc.redis.flushdb()
    with pytest.raises(views.ViewError) as e:
        views.health(proc.redis, "v", 0.0, 1.0, proc.instance)
    assert e.value.status == 503 and "lost txmon's state" in e.value.message
    with pytest.raises(StateLost, match="txm:instance is gone"):
        proc.check_state()
    assert Processor(proc.redis, proc.model).instance != proc.instance  # a worker started now begins anew


def test_a_redis_that_lost_its_latest_writes_stops_the_worker(proc: Processor) -> None:
    """A restart from a persistence file older than the last writes: the write count goes back."""
    from stream_app.keys import WRITES
    from stream_app.state import StateLost

    proc.check_state()
    proc.check_state()
    proc.redis.decrby(WRITES, 2)  # as if the last two batches' writes were lost
    with pytest.raises(StateLost, match="lost its latest writes"):
        proc.check_state()
