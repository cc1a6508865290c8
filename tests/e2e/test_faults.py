"""Faults an operator meets, on real parts: the worker must lose nothing it has not done, and say so when it cannot.

Each test runs a small replay through a worker on the suite's broker and a redis-server of its own (so that
the fault touches nothing else), injects the fault by pid, and compares what consumers see with the offline
GCN: every transaction's final score, one statistics record per step, the final verdicts, no duplicate.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from producer.plan import plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from txmon.core.contracts import ALERT_KINDS, Alert, StepStats
from txmon.embedded import RedisServer
from txmon.embedded.kafka_broker import KafkaBroker
from txmon.embedded.tansu_broker import TansuBroker
from txmon.pipeline.completion import published_alerts, replay_done
from txmon.pipeline.runner import Pipeline
from txmon.testing.e2e import TopicReader, read_step_scores, train_small_gcn, unique_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]

PARTITIONS = 4
TIMEOUT = 120.0
TOL = 1e-5


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _dataset(seed: int, scale: float = 0.02) -> EllipticDataset:
    d = generate(scale, seed=seed)
    return EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges,
                           fingerprint=f"faults-{seed}")


def _verdicts(alerts: list[Alert]) -> set[int]:
    kinds: dict[str, set[int]] = {k: set() for k in ALERT_KINDS}
    for a in alerts:
        kinds[a.kind].add(a.tx_id)
    return (kinds["arrival"] | kinds["final"]) - kinds["retracted"]


def test_redis_stopped_longer_than_its_client_timeout_loses_nothing(
        broker: KafkaBroker | TansuBroker, own_redis: RedisServer, worker_overrides: dict[str, object],
        tmp_path: Path) -> None:
    """redis-server frozen (SIGSTOP) for 8 s mid-replay, longer than redis-py's 5 s timeout: the worker retries
    the failing batch with backoff instead of moving past it, and the replay ends exact."""
    ds = _dataset(11)
    model, offline = train_small_gcn(ds, tmp_path / "models")
    tag = uuid.uuid4().hex[:8]
    settings = unique_settings(broker.bootstrap, own_redis.url, tmp_path / "models", tag=tag,
                               topic_partitions=PARTITIONS, **worker_overrides)
    alerts = TopicReader(broker.bootstrap, settings.topic_alerts, PARTITIONS)
    stats = TopicReader(broker.bootstrap, settings.topic_stats, PARTITIONS)
    client = redis.Redis.from_url(own_redis.url)
    try:
        with Pipeline(settings, run_dir=tmp_path) as p:
            (worker,) = p.start_workers(1, TIMEOUT, app_id=f"faults-{tag}")
            plan = plan_replay(ds, replay_id="frozen")
            sender = threading.Thread(target=p.send, args=(plan,), kwargs={"rate": 1000.0}, daemon=True)
            sender.start()
            time.sleep(1.5)  # mid-replay: about 1,500 of the replay's transactions sent
            assert own_redis.pid is not None
            os.kill(own_redis.pid, signal.SIGSTOP)
            try:
                time.sleep(8.0)
            finally:
                os.kill(own_redis.pid, signal.SIGCONT)
            sender.join(TIMEOUT)
            assert not sender.is_alive()
            p.wait_replay_end("frozen", TIMEOUT)
            published = sum(published_alerts(client, "frozen").values())
            n_steps = len(plan)
            wait_for(lambda: len(alerts.records) >= published
                     and len({r.json()["step"] for r in stats.records}) >= n_steps,
                     TIMEOUT, "the replay's alerts and statistics", [alerts, stats], p)
            assert worker.exit_code is None, worker.log_tail()
            assert "retrying in" in worker.log_path.read_text(), "the fault never reached the worker"

            got = [Alert.model_validate_json(r.value) for r in alerts.records]
            if settings.processing_guarantee != "at_least_once":
                assert not [i for i, n in Counter(a.alert_id for a in got).items() if n > 1]
            assert _verdicts(got) == set(ds.tx_ids[offline >= model.threshold].tolist())
            per_step = Counter(StepStats.model_validate_json(r.value).step for r in stats.records)
            assert set(per_step) == {sp.step for sp in plan}
            if settings.processing_guarantee != "at_least_once":
                assert set(per_step.values()) == {1}
            for sp in plan:
                sc = read_step_scores(client, "frozen", sp.step, sp.rows.size)
                assert sc.scored.all() and np.abs(sc.fin - offline[sp.rows]).max() <= TOL
    finally:
        alerts.close()
        stats.close()
        client.close()


def test_redis_restarted_empty_stops_the_worker_with_a_clear_error(
        broker: KafkaBroker | TansuBroker, worker_overrides: dict[str, object], tmp_path: Path) -> None:
    """redis-server killed mid-replay and started again, empty, on the same port: the worker must not score on
    against a partial graph (it did, silently, before): it stops with code 70 and says why."""
    ds = _dataset(12)
    train_small_gcn(ds, tmp_path / "models")
    first = RedisServer().start()
    again: RedisServer | None = None
    try:
        tag = uuid.uuid4().hex[:8]
        settings = unique_settings(broker.bootstrap, first.url, tmp_path / "models", tag=tag,
                                   topic_partitions=PARTITIONS, **worker_overrides)
        with Pipeline(settings, run_dir=tmp_path) as p:
            (worker,) = p.start_workers(1, TIMEOUT, app_id=f"faults-{tag}")
            worker.stopped = True  # its exit is the expected outcome, not a failure of the sender's checks
            plan = plan_replay(ds, replay_id="emptied")
            sender = threading.Thread(target=p.send, args=(plan,), kwargs={"rate": 1000.0}, daemon=True)
            sender.start()
            time.sleep(1.5)
            assert first.pid is not None
            port = first.port
            os.kill(first.pid, signal.SIGKILL)
            first.stop()
            again = RedisServer(port=port).start()
            wait_for(lambda: worker.exit_code is not None, 60.0, "the worker to stop")
            assert worker.exit_code == 70, worker.log_tail()
            assert "Redis lost txmon's state" in worker.log_path.read_text()
            sender.join(TIMEOUT)
    finally:
        first.stop()
        if again is not None:
            again.stop()


def test_a_broker_restarted_without_its_data_never_makes_the_worker_skip_records(
        own_redis: RedisServer, tmp_path: Path) -> None:
    """The broker killed and started again empty on the same port (topics and committed offsets lost), then a
    new replay: the worker must process every record of it, or stop with the reason — never skip a block
    silently (what it did on Tansu before). Apache Kafka only: a broker of its own, killed by pid."""
    from producer.send import send_replay

    first = KafkaBroker()
    try:
        first.start()
    except Exception as e:  # noqa: BLE001 - no Java here: the suite's Tansu path has no transactions to lose
        pytest.skip(f"Apache Kafka cannot run here: {e}")
    again: KafkaBroker | None = None
    ds = _dataset(13)
    model, offline = train_small_gcn(ds, tmp_path / "models")
    try:
        tag = uuid.uuid4().hex[:8]
        settings = unique_settings(first.bootstrap, own_redis.url, tmp_path / "models", tag=tag,
                                   topic_partitions=PARTITIONS, batch_retry_s=10.0)
        client = redis.Redis.from_url(own_redis.url)
        with Pipeline(settings, run_dir=tmp_path) as p:
            (worker,) = p.start_workers(1, TIMEOUT, app_id=f"faults-{tag}")
            p.run(plan_replay(ds, replay_id="before"), timeout=TIMEOUT)
            port = first.port
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
            first.stop()
            again = KafkaBroker(port=port).start()
            worker.stopped = True  # it may stop (code 70) on purpose; checked below
            plan = plan_replay(ds, replay_id="after")
            send_replay(plan, again.bootstrap, settings)  # creates the topics again
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline and worker.exit_code is None and \
                    not replay_done(client, "after"):
                time.sleep(0.2)
            if worker.exit_code is not None:  # stopped: it must say why, and a restarted worker does it all
                assert worker.exit_code == 70, worker.log_tail()
                # Why: its group's offsets are gone, or the batch it held when the broker died cannot be
                # committed on the new one (aiokafka retries that inside itself; the retry budget ends it).
                log = worker.log_path.read_text()
                assert any(why in log for why in ("lost its data", "no committed offset", "did not finish within")), \
                    worker.log_tail()
                p.start_workers(1, TIMEOUT, app_id=f"faults-{tag}")
                p.wait_replay_end("after", TIMEOUT)
            for sp in plan:  # every record of the new replay processed: complete, exact final scores
                sc = read_step_scores(client, "after", sp.step, sp.rows.size)
                assert sc.seen.all() and sc.scored.all(), f"step {sp.step}: records skipped"
                assert np.abs(sc.fin - offline[sp.rows]).max() <= TOL
            # and its outputs committed on the new broker: one statistics record per step, the offline verdicts
            stats = TopicReader(again.bootstrap, settings.topic_stats, PARTITIONS)
            alerts = TopicReader(again.bootstrap, settings.topic_alerts, PARTITIONS)
            try:
                published = sum(published_alerts(client, "after").values())
                wait_for(lambda: len(stats.records) >= len(plan) and len(alerts.records) >= published, TIMEOUT,
                         "the new replay's statistics and alerts", [stats, alerts], p)
                per_step = Counter(StepStats.model_validate_json(r.value).step for r in stats.records)
                assert set(per_step) == {sp.step for sp in plan} and set(per_step.values()) == {1}
                got = [Alert.model_validate_json(r.value) for r in alerts.records]
                assert _verdicts(got) == set(ds.tx_ids[offline >= model.threshold].tolist())
            finally:
                stats.close()
                alerts.close()
        client.close()
    finally:
        first.stop()
        if again is not None:
            again.stop()


def test_a_broker_killed_and_restarted_with_its_data_loses_and_duplicates_nothing(
        own_redis: RedisServer, tmp_path: Path) -> None:
    """The broker killed (-9) mid-replay and started again on its data directory, as an operator restarts it: the
    worker reconnects, its open transaction is aborted, and it resumes from the committed offsets — every alert
    once for a read-committed consumer, one statistics record per step, every final score exact, no restart of
    the worker needed. Apache Kafka only: a broker of its own, killed by pid."""
    broker = KafkaBroker()
    try:
        broker.start()
    except Exception as e:  # noqa: BLE001 - no Java here
        pytest.skip(f"Apache Kafka cannot run here: {e}")
    ds = _dataset(16, scale=0.05)  # ~10k transactions: a few seconds of work to interrupt
    model, offline = train_small_gcn(ds, tmp_path / "models")
    tag = uuid.uuid4().hex[:8]
    settings = unique_settings(broker.bootstrap, own_redis.url, tmp_path / "models", tag=tag,
                               topic_partitions=PARTITIONS, batch_retry_s=60.0)
    client = redis.Redis.from_url(own_redis.url)
    readers: list[TopicReader] = []
    try:
        with Pipeline(settings, run_dir=tmp_path) as p:
            plan = plan_replay(ds, replay_id="bounced")
            p.send(plan)  # the whole replay on the broker first: the worker's progress is all there is to cut
            alerts = TopicReader(broker.bootstrap, settings.topic_alerts, PARTITIONS)
            stats = TopicReader(broker.bootstrap, settings.topic_stats, PARTITIONS)
            readers = [alerts, stats]
            (worker,) = p.start_workers(1, TIMEOUT, app_id=f"faults-{tag}")
            wait_for(lambda: len(stats.records) >= 3, TIMEOUT, "the worker's first statistics", readers, p,
                     interval=0.01)
            broker.restart(kill=True)
            cut_at = len({r.json()["step"] for r in stats.records})
            assert cut_at < len(plan), "the replay ended before the broker was killed: no fault injected"
            p.wait_replay_end("bounced", TIMEOUT)
            published = sum(published_alerts(client, "bounced").values())
            wait_for(lambda: len(alerts.records) >= published and len({r.json()["step"] for r in stats.records})
                     >= len(plan), TIMEOUT, "the replay's alerts and statistics", readers, p)
            assert worker.exit_code is None, worker.log_tail()

            got = [Alert.model_validate_json(r.value) for r in alerts.records]
            assert not [i for i, n in Counter(a.alert_id for a in got).items() if n > 1], "an alert seen twice"
            assert len(got) == published
            assert _verdicts(got) == set(ds.tx_ids[offline >= model.threshold].tolist())
            per_step = Counter(StepStats.model_validate_json(r.value).step for r in stats.records)
            assert set(per_step) == {sp.step for sp in plan} and set(per_step.values()) == {1}
            for sp in plan:
                sc = read_step_scores(client, "bounced", sp.step, sp.rows.size)
                assert sc.scored.all() and np.abs(sc.fin - offline[sp.rows]).max() <= TOL, f"step {sp.step}"
    finally:
        for r in readers:
            r.close()
        client.close()
        broker.stop()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_redis_restarted_from_its_append_only_file_keeps_the_graph_or_stops_loudly(
        broker: KafkaBroker | TansuBroker, own_redis: RedisServer, worker_overrides: dict[str, object],
        tmp_path: Path, how: str) -> None:
    """redis-server restarted mid-replay from its AOF (appendfsync everysec): after a clean stop nothing is lost
    and the replay ends exact; after kill -9 up to a second of writes may be gone, and then the worker must stop
    with the reason (its write count went back) — never publish a result computed on the partial graph."""
    ds = _dataset(14)
    model, offline = train_small_gcn(ds, tmp_path / "models")
    tag = uuid.uuid4().hex[:8]
    settings = unique_settings(broker.bootstrap, own_redis.url, tmp_path / "models", tag=tag,
                               topic_partitions=PARTITIONS, **worker_overrides)
    client = redis.Redis.from_url(own_redis.url)
    try:
        with Pipeline(settings, run_dir=tmp_path) as p:
            (worker,) = p.start_workers(1, TIMEOUT, app_id=f"faults-{tag}")
            worker.stopped = True  # after a kill -9 it may stop on purpose; checked below
            plan = plan_replay(ds, replay_id="restarted")
            sender = threading.Thread(target=p.send, args=(plan,), kwargs={"rate": 1000.0}, daemon=True)
            sender.start()
            time.sleep(1.5)
            own_redis.restart(kill=how == "kill9")
            sender.join(TIMEOUT)
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline and worker.exit_code is None and \
                    not replay_done(client, "restarted"):
                time.sleep(0.2)
            if worker.exit_code is not None:
                assert how == "kill9", f"a clean restart lost data: {worker.log_tail()}"
                assert worker.exit_code == 70 and "lost its latest writes" in worker.log_path.read_text(), \
                    worker.log_tail()
                return
            for sp in plan:
                sc = read_step_scores(client, "restarted", sp.step, sp.rows.size)
                assert sc.scored.all() and np.abs(sc.fin - offline[sp.rows]).max() <= TOL, f"step {sp.step}"
            assert worker.exit_code is None
    finally:
        client.close()
