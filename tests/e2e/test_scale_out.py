"""Scale-out on real parts: two workers in one consumer group over a 4-partition topic, one Redis.

The same small data set is replayed twice into one Redis: once through a single worker, once through two
workers of another consumer group (both joined and holding partitions before the replay starts). Every step
must be finalised exactly once — one statistics record per step, and the finalisations counted by the two
workers' own metrics add up to the number of steps — and the final verdicts (arrival or final alert, not
retracted) must be those of the single worker and of the offline GCN; so must every alert, arrival ones
included, since an arrival score does not depend on how the stream was split.
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
from txmon.core.contracts import ALERT_KINDS, Alert, StepStats
from txmon.pipeline.runner import Pipeline
from txmon.testing.e2e import TopicReader, isolated_redis, train_small_gcn, unique_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]

PARTITIONS = 4
TIMEOUT = 120.0
REDIS_DB = 6  # the session's redis-server, a database no other test uses


def _verdicts(alerts: list[Alert], replay_id: str) -> set[int]:
    kinds: dict[str, set[int]] = {k: set() for k in ALERT_KINDS}
    for a in alerts:
        if a.replay_id == replay_id:
            kinds[a.kind].add(a.tx_id)
    return (kinds["arrival"] | kinds["final"]) - kinds["retracted"]


@pytest.mark.parametrize("broker_kind", ["broker", "tansu"], ids=["kafka", "tansu"])
def test_two_workers_share_the_partitions_and_finalise_every_step_once(
        broker_kind: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    service = request.getfixturevalue(broker_kind)  # the suite's broker, and the Tansu fallback
    kafka_bootstrap: str = service.bootstrap
    d = generate(0.02, seed=5)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="scale")
    model, offline = train_small_gcn(ds, tmp_path / "models")
    flagged_offline = set(ds.tx_ids[offline >= model.threshold].tolist())
    n_steps = len(np.unique(ds.steps))

    url, client = isolated_redis(redis_url, REDIS_DB)
    client.close()
    tag = uuid.uuid4().hex[:8]
    settings = unique_settings(kafka_bootstrap, url, tmp_path / "models", tag=tag, topic_partitions=PARTITIONS,
                               **service.worker_settings)
    with Pipeline(settings, run_dir=tmp_path) as p:  # the session's services; stops the workers at the end
        assert p.partitions == PARTITIONS
        alerts = TopicReader(kafka_bootstrap, settings.topic_alerts, PARTITIONS)
        stats = TopicReader(kafka_bootstrap, settings.topic_stats, PARTITIONS)

        def replay(replay_id: str) -> None:
            expected = sum(p.run(plan_replay(ds, replay_id=replay_id), timeout=TIMEOUT).published.values())
            wait_for(lambda: sum(a.json()["replay_id"] == replay_id for a in alerts.records) >= expected
                     and len({r.json()["step"] for r in stats.records if r.json()["replay_id"] == replay_id})
                     >= n_steps, TIMEOUT, f"the alerts and statistics of {replay_id}", [alerts, stats], p)

        try:
            (single,) = p.start_workers(1, TIMEOUT, app_id=f"so-{tag}-one")
            replay("so-single")
            assert single.stop() == 0

            # The second worker's first assignment comes with the rebalance that splits the partitions 2 + 2.
            pair = p.start_workers(2, TIMEOUT, app_id=f"so-{tag}-two")
            replay("so-pair")

            events = [w.metrics().total("txmon_events_processed_total") for w in pair]
            finalised = [w.metrics().total("txmon_steps_finalised_total") for w in pair]
            assert all(e > 0 for e in events), f"a worker processed nothing: {events}"
            assert sum(events) >= ds.n_nodes  # at-least-once: a rebalance may redeliver, never lose
            assert sum(finalised) == n_steps, f"finalisations per worker: {finalised}"
            per_step = Counter(StepStats.model_validate_json(r.value).step for r in stats.records
                               if r.json()["replay_id"] == "so-pair")
            assert set(per_step) == set(np.unique(ds.steps).tolist()) and set(per_step.values()) == {1}

            got = [Alert.model_validate_json(r.value) for r in alerts.records]
            ids = Counter(a.alert_id for a in got)
            assert not [i for i, n in ids.items() if n > 1]
            assert _verdicts(got, "so-pair") == _verdicts(got, "so-single") == flagged_offline
            # Arrival scores do not depend on who processed what (arrival windows): every alert is the same.
            kinds = {rid: {(a.tx_id, a.kind, round(a.arrival_score, 6)) for a in got if a.replay_id == rid}
                     for rid in ("so-single", "so-pair")}
            assert kinds["so-pair"] == kinds["so-single"]
            for w in pair:
                assert w.stop() == 0, w.log_tail()
        finally:
            alerts.close()
            stats.close()
