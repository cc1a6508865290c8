"""What the end-to-end tests and the pipeline benchmark need besides the runner (``txmon.pipeline``): settings
with topics of their own, small stored models, topic readers, waits, and Redis state read back.

Nothing here fakes a part of the pipeline: workers are started by ``txmon.pipeline.Pipeline``, the topics are
read back with a plain kafka-python consumer (``assign`` + ``seek_to_beginning``, no group), and every wait
is on an explicit completion signal with a deadline — never on consumer lag or end offsets, which Tansu
reports wrongly (docs/tansu.md).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import redis
from kafka import KafkaConsumer, TopicPartition

from model_store.arrival_train import fit_arrival_gcn, simulate_arrival
from model_store.graph import undirected_edge_index
from model_store.inference import Scaler, gcn_scores
from model_store.registry import ArrivalPart, ModelStore
from model_store.splits import temporal_split
from model_store.train import TrainConfig, fit_gcn
from replay.data.dataset import EllipticDataset
from stream_app.keys import ReplayKeys, StepKeys
from stream_app.scorer import LoadedModel
from txmon.core.settings import Settings
from txmon.pipeline.runner import Pipeline
from txmon.pipeline.worker import PROJECT_ROOT as REPO


class WaitTimeout(AssertionError):
    """A completion signal did not come in time (the message says which, and shows the worker's log)."""


# -- settings and model ------------------------------------------------------------------------------------------


def unique_settings(bootstrap: str, redis_url: str, model_dir: Path, tag: str | None = None,
                    **extra: object) -> Settings:
    """Settings with topic names of their own (the broker is shared) — what the worker will read from env."""
    tag = tag or uuid.uuid4().hex[:8]
    # model_validate runs Settings' __init__ (so TXMON_* variables are read, as with Settings(...)) on ``extra``,
    # which are other fields of Settings
    return Settings.model_validate({
        "kafka_bootstrap": bootstrap, "redis_url": redis_url, "model_dir": model_dir,
        "topic_transactions": f"e2e-{tag}.transactions", "topic_alerts": f"e2e-{tag}.alerts",
        "topic_stats": f"e2e-{tag}.stats", "topic_dead_letter": f"e2e-{tag}.dead-letter", **extra})


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TXMON_* setting, importing this checkout, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMON_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def gap_threshold(scores: np.ndarray, share: float, min_gap: float = 1e-4) -> float:
    """A threshold flagging about ``share`` of ``scores``, in the middle of a gap of at least ``min_gap``
    between two neighbouring scores: float32 rounding can then never move a score across it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    start = max(1, int(round(share * s.size)))
    for i in range(start, s.size):  # s[i - 1] > s[i]: flag the first i
        if s[i - 1] - s[i] >= min_gap:
            return float((s[i - 1] + s[i]) / 2)
    raise ValueError(f"no gap of {min_gap} below the top {share:.0%} of the scores")


def save_gcn(model_dir: Path, state_dict: dict, architecture: dict, threshold: float, mean: np.ndarray,
             std: np.ndarray, fingerprint: str, arrival: ArrivalPart | None = None, **metadata: object) -> str:
    """Save a GCN (with its arrival model, if given) in the model store, promoted as the latest gcn; return its
    version."""
    manifest = ModelStore(model_dir).save(
        "gcn", state_dict, architecture=architecture, threshold=threshold, metrics=dict(metadata),
        training={}, dataset_fingerprint=fingerprint, feature_mean=np.asarray(mean).tolist(),
        feature_std=np.asarray(std).tolist(), promote=True, arrival=arrival)
    return manifest.version


def offline_scores(model_dir: Path, ds: EllipticDataset) -> tuple[LoadedModel, np.ndarray]:
    """The stored model as the worker loads it, and its GCN scores on the full data set (the parity reference)."""
    model = LoadedModel.from_store(model_dir)
    scores = gcn_scores(model.gcn, model.scale(ds.features), undirected_edge_index(ds.edge_rows, ds.n_nodes))
    return model, scores


def offline_arrival(model: LoadedModel, ds: EllipticDataset) -> np.ndarray:
    """The arrival scores the worker gives every transaction of ``ds`` (model_store's offline simulation)."""
    return simulate_arrival(model.on_arrival.gcn, model.scale(ds.features), ds, np.unique(ds.steps)).scores


def train_small_gcn(ds: EllipticDataset, model_dir: Path) -> tuple[LoadedModel, np.ndarray]:
    """A tiny GCN (seed 0) and its arrival model (seed 1), 5 epochs, 16 wide, trained on the temporal split and
    stored as the latest; each threshold sits in a gap between its scores (about 10% flagged; the arrival model's
    simulated arrival scores), so float32 storage cannot move a score across it and alert sets are exact. Returns
    the stored model as the worker loads it and its offline scores."""
    split = temporal_split(ds)
    res = fit_gcn(ds, split, TrainConfig("gcn", epochs=5, hidden=16, seed=0, arrival=False))
    x = Scaler(np.array(res.feature_mean), np.array(res.feature_std)).transform(ds.features)
    # Seed 1: steps this small are one arrival window each, whose view is the whole step, so with the GCN's seed
    # the arrival model would be the GCN itself and tests could not tell which one the worker served.
    a = fit_arrival_gcn(ds, split, x, res.scores, epochs=5, lr=0.01, weight_decay=5e-4, hidden=16, dropout=0.5,
                        seed=1)
    arrival_scores = simulate_arrival(a.model, x, ds, np.unique(ds.steps)).scores
    part = a.part("all", {}, threshold=gap_threshold(arrival_scores, 0.10, min_gap=5e-4))
    save_gcn(model_dir, res.state_dict, res.architecture, gap_threshold(res.scores, 0.10, min_gap=5e-4),
             np.array(res.feature_mean), np.array(res.feature_std), ds.fingerprint, arrival=part)
    return offline_scores(model_dir, ds)


def isolated_redis(redis_url: str, db: int) -> tuple[str, redis.Redis]:
    """The session's redis-server on database ``db`` (one no other test module uses), emptied: (url, client)."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    return url, client


# -- reading topics -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    received: float  # time.time() when this reader got it

    def json(self) -> dict:
        return json.loads(self.value)


class TopicReader:
    """Every record of a topic from the beginning, accumulated across ``poll`` calls (no consumer group)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, fetch_max_wait_ms: int = 100,
                 committed: bool = True) -> None:
        """``committed``: read what committed transactions hold (what consumers see), else every record."""
        self.topic = topic
        self.records: list[Record] = []
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                      fetch_max_wait_ms=fetch_max_wait_ms, max_partition_fetch_bytes=4 * 2**20,
                                      isolation_level="read_committed" if committed else "read_uncommitted")
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)

    def poll(self, timeout_ms: int = 100) -> int:
        got = self.consumer.poll(timeout_ms=timeout_ms, max_records=50_000)
        now = time.time()
        n = 0
        for recs in got.values():
            for r in recs:
                self.records.append(Record(r.partition, r.offset, r.key, r.value, now))
                n += 1
        return n

    def close(self) -> None:
        self.consumer.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, readers: Iterable[TopicReader] = (),
             pipeline: Pipeline | None = None, interval: float = 0.05) -> float:
    """Poll ``readers`` until ``condition()`` holds; WaitTimeout (with the workers' logs) after ``timeout`` s.

    Returns the seconds waited. Raises at once if a worker of ``pipeline`` has died (WorkerDied).
    """
    readers = list(readers)
    t0 = time.monotonic()
    while True:
        for r in readers:
            r.poll(50)
        if condition():
            return time.monotonic() - t0
        if pipeline is not None:
            pipeline.check()
        if time.monotonic() - t0 > timeout:
            logs = "".join(f"\n{w.log_tail()}" for w in pipeline.running) if pipeline is not None else ""
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}{logs}")
        if not readers:
            time.sleep(interval)


# -- Redis state -----------------------------------------------------------------------------------------------------


def claimed_alert_ids(client: redis.Redis, replay_id: str) -> set[str]:
    """Alert ids claimed in Redis for a replay (claimed before they are sent, so the topic must hold them all)."""
    prefix = ReplayKeys(replay_id).prefix
    pattern = prefix.replace("{", "\\{").replace("}", "\\}") + "alert:*"
    out = set()
    for k in client.scan_iter(match=pattern, count=10_000):
        tx, kind = k.decode()[len(prefix) + len("alert:"):].split(":")
        out.add(f"{replay_id}:{tx}:{kind}")
    return out


@dataclass(frozen=True)
class StepScores:
    seen: np.ndarray  # bool per seq
    scored: np.ndarray  # bool per seq
    arr: np.ndarray  # float32 per seq (NaN past the stored length)
    fin: np.ndarray


def read_step_scores(client: redis.Redis, replay_id: str, step: int, n: int) -> StepScores:
    """Bitmaps and arrival/final scores of seqs 0..n-1 of a step, straight from the keys the worker writes."""
    k = StepKeys(replay_id, step)
    # a binary client: values are bytes
    seen, scored, arr, fin = cast(list[bytes | None], client.mget([k.seen, k.scored, k.arr, k.fin]))

    def bools(raw: bytes | None) -> np.ndarray:
        b = np.unpackbits(np.frombuffer(raw or b"", dtype=np.uint8)).astype(bool)
        return np.pad(b, (0, max(0, n - b.size)))[:n]

    def floats(raw: bytes | None) -> np.ndarray:
        f = np.frombuffer(raw or b"", dtype="<f4")[:n].astype(np.float64)
        return np.pad(f, (0, n - f.size), constant_values=np.nan)

    return StepScores(bools(seen), bools(scored), floats(arr), floats(fin))
