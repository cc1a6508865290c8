"""Exactly-once on Apache Kafka: a worker dies between processing a batch and committing its transaction.

The worker exits at once (as ``kill -9`` would: no cleanup, no abort) right before it commits its third
transaction that carries alerts, with those alerts already written to the alert topic, uncommitted, and
their ids claimed in Redis. A second worker of the same consumer group then takes the partitions over. A
read-committed consumer must see each alert of the replay exactly once, the same alerts a clean replay of
the same data gives, one statistics record per step, and every transaction's final score equal to the
offline GCN; a read-uncommitted consumer sees the aborted alerts too, which shows the crash hit the window.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from producer.plan import plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.delivery import CRASH_BEFORE_COMMIT
from txmon.core.contracts import Alert, StepStats
from txmon.embedded.kafka_broker import KafkaBroker
from txmon.embedded.tansu_broker import TansuBroker
from txmon.pipeline.completion import published_alerts
from txmon.pipeline.runner import Pipeline
from txmon.testing.e2e import (
    TopicReader,
    isolated_redis,
    read_step_scores,
    train_small_gcn,
    unique_settings,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]

PARTITIONS = 4
TIMEOUT = 120.0
TOL = 1e-5
REDIS_DB = 8  # the session's redis-server, a database no other test uses


def _alerts(reader: TopicReader, replay_id: str) -> list[Alert]:
    return [a for a in (Alert.model_validate_json(r.value) for r in reader.records) if a.replay_id == replay_id]


def test_a_worker_killed_before_its_commit_loses_and_duplicates_nothing(
        broker: KafkaBroker | TansuBroker, redis_url: str, tmp_path: Path) -> None:
    if isinstance(broker, TansuBroker):
        pytest.skip("Tansu has no transactions: at-least-once there (docs/tansu.md)")
    d = generate(0.02, seed=7)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="eos")
    model, offline = train_small_gcn(ds, tmp_path / "models")
    n_steps = len(np.unique(ds.steps))
    url, client = isolated_redis(redis_url, REDIS_DB)
    tag = uuid.uuid4().hex[:8]
    # Micro-batches of about one tx_batch record: the failpoint's third batch with alerts comes in the middle of
    # the replay, however fast the worker takes a backlog.
    settings = unique_settings(broker.bootstrap, url, tmp_path / "models", tag=tag, topic_partitions=PARTITIONS,
                               batch_max=64)
    committed = TopicReader(broker.bootstrap, settings.topic_alerts, PARTITIONS)
    everything = TopicReader(broker.bootstrap, settings.topic_alerts, PARTITIONS, committed=False)
    stats = TopicReader(broker.bootstrap, settings.topic_stats, PARTITIONS)
    readers = [committed, everything, stats]
    try:
        with Pipeline(settings, run_dir=tmp_path) as p:
            # The reference: a clean replay through its own consumer group.
            (clean,) = p.start_workers(1, TIMEOUT, app_id=f"eos-{tag}-clean")
            # alerts=True: until its alerts are committed (replay_end is recorded with the last batch, before its
            # commit; a worker stopped in between leaves that batch to the group's next worker, and this group
            # has none)
            p.run(plan_replay(ds, replay_id="clean"), timeout=TIMEOUT, alerts=True)
            assert clean.stop() == 0

            (doomed,) = p.start_workers(1, TIMEOUT, app_id=f"eos-{tag}", **{CRASH_BEFORE_COMMIT: "3"})
            doomed.stopped = True  # its exit is the point, not a failure of the run
            plan = plan_replay(ds, replay_id="crash")
            p.send(plan)
            wait_for(lambda: doomed.exit_code is not None, TIMEOUT, "the worker's failpoint")
            assert doomed.exit_code == 137, doomed.log_tail()
            p.start_workers(1, TIMEOUT, app_id=f"eos-{tag}")  # the same group: takes the partitions over
            p.wait_replay_end("crash", TIMEOUT)
            published = sum(published_alerts(client, "crash").values())
            wait_for(lambda: len(_alerts(committed, "crash")) >= published
                     and len({r.json()["step"] for r in stats.records if r.json()["replay_id"] == "crash"}) >= n_steps,
                     TIMEOUT, "the replay's alerts and statistics", readers, p)

            got = _alerts(committed, "crash")
            ids = Counter(a.alert_id for a in got)
            assert [i for i, n in ids.items() if n > 1] == [], "a read-committed consumer saw an alert twice"
            assert len(ids) == published
            clean_alerts = {(a.tx_id, a.kind, round(a.arrival_score, 6)) for a in _alerts(committed, "clean")}
            assert {(a.tx_id, a.kind, round(a.arrival_score, 6)) for a in got} == clean_alerts

            uncommitted = Counter(a.alert_id for a in _alerts(everything, "crash"))
            assert any(n > 1 for n in uncommitted.values()), "the crash left no aborted alert on the topic"

            per_step = Counter(StepStats.model_validate_json(r.value).step for r in stats.records
                               if r.json()["replay_id"] == "crash")
            assert set(per_step) == set(np.unique(ds.steps).tolist()) and set(per_step.values()) == {1}
            for sp in plan:
                sc = read_step_scores(client, "crash", sp.step, sp.rows.size)
                assert sc.scored.all() and np.abs(sc.fin - offline[sp.rows]).max() <= TOL
    finally:
        for r in readers:
            r.close()
        client.close()
