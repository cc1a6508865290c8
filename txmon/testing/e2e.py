"""Plumbing for the end-to-end tests and the pipeline benchmark: a real worker subprocess, topic readers, waits.

Nothing here fakes a part of the pipeline: the worker is ``python -m txmon worker`` in its own process
(session), the topics are read back with a plain kafka-python consumer (``assign`` + ``seek_to_beginning``,
no group), and every wait is on an explicit completion signal with a deadline — never on consumer lag or
end offsets, which Tansu reports wrongly (docs/tansu.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from kafka import KafkaConsumer, TopicPartition

from model_store.graph import undirected_edge_index
from model_store.inference import gcn_scores
from model_store.registry import ModelStore
from model_store.splits import temporal_split
from model_store.train import TrainConfig, fit_gcn
from replay.data.dataset import EllipticDataset
from stream_app.keys import ReplayKeys, StepKeys
from stream_app.metrics_read import Scrape, scrape
from stream_app.scorer import LoadedModel
from txmon.core.settings import Settings
from txmon.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


class WaitTimeout(AssertionError):
    """A completion signal did not come in time (the message says which, and shows the worker's log)."""


# -- settings and model ------------------------------------------------------------------------------------------


def unique_settings(bootstrap: str, redis_url: str, model_dir: Path, tag: str | None = None,
                    **extra: object) -> Settings:
    """Settings with topic names of their own (the broker is shared) — what the worker will read from env."""
    tag = tag or uuid.uuid4().hex[:8]
    return Settings(kafka_bootstrap=bootstrap, redis_url=redis_url, model_dir=model_dir,
                    topic_transactions=f"e2e-{tag}.transactions", topic_alerts=f"e2e-{tag}.alerts",
                    topic_stats=f"e2e-{tag}.stats", topic_dead_letter=f"e2e-{tag}.dead-letter", **extra)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TXMON_* setting, importing this checkout, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXMON_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def worker_env(settings: Settings, app_id: str, **extra: str) -> dict[str, str]:
    """The environment of a worker serving ``settings`` in consumer group ``app_id``."""
    env = clean_env()
    env.update(
        TXMON_KAFKA_BOOTSTRAP=str(settings.kafka_bootstrap),
        TXMON_REDIS_URL=str(settings.redis_url),
        TXMON_MODEL_DIR=str(settings.model_dir),
        TXMON_MODEL_VERSION=settings.model_version,
        TXMON_TOPIC_TRANSACTIONS=settings.topic_transactions,
        TXMON_TOPIC_ALERTS=settings.topic_alerts,
        TXMON_TOPIC_STATS=settings.topic_stats,
        TXMON_TOPIC_DEAD_LETTER=settings.topic_dead_letter,
        TXMON_TOPIC_PARTITIONS=str(settings.topic_partitions),
        TXMON_WORKER_APP_ID=app_id,
        TXMON_BATCH_MAX=str(settings.batch_max),
        TXMON_BATCH_WAIT_S=str(settings.batch_wait_s),
        TXMON_MAX_RECORD_BYTES=str(settings.max_record_bytes),
        TXMON_WEB_PORT=str(free_port()),  # several workers on one machine: never Faust's fixed 6066
    )
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
             std: np.ndarray, fingerprint: str, **metadata: object) -> str:
    """Save a GCN in the model store (promoted as the latest gcn); return its version."""
    manifest = ModelStore(model_dir).save(
        "gcn", state_dict, architecture=architecture, threshold=threshold, metrics=dict(metadata),
        training={}, dataset_fingerprint=fingerprint, feature_mean=np.asarray(mean).tolist(),
        feature_std=np.asarray(std).tolist(), promote=True)
    return manifest.version


def offline_scores(model_dir: Path, ds: EllipticDataset) -> tuple[LoadedModel, np.ndarray]:
    """The stored model as the worker loads it, and its GCN scores on the full data set (the parity reference)."""
    model = LoadedModel.from_store(model_dir)
    scores = gcn_scores(model.gcn, model.scale(ds.features), undirected_edge_index(ds.edge_rows, ds.n_nodes))
    return model, scores


def train_small_gcn(ds: EllipticDataset, model_dir: Path) -> tuple[LoadedModel, np.ndarray]:
    """A tiny GCN (5 epochs, 16 wide, seed 0) trained on the temporal split and stored as the latest; its threshold
    sits in a gap between scores (about 10% flagged), so float32 storage cannot move a score across it and alert
    sets are exact. Returns the stored model as the worker loads it and its offline scores."""
    res = fit_gcn(ds, temporal_split(ds), TrainConfig("gcn", epochs=5, hidden=16, seed=0))
    save_gcn(model_dir, res.state_dict, res.architecture, gap_threshold(res.scores, 0.10, min_gap=5e-4),
             np.array(res.feature_mean), np.array(res.feature_std), ds.fingerprint)
    return offline_scores(model_dir, ds)


def isolated_redis(redis_url: str, db: int) -> tuple[str, redis.Redis]:
    """The session's redis-server on database ``db`` (one no other test module uses), emptied: (url, client)."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    return url, client


# -- the worker process ----------------------------------------------------------------------------------------------


def session_pids(sid: int) -> set[int]:
    """Live processes (zombies excluded) in session ``sid``: the worker runs in a session of its own."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            pids.add(int(stat.parent.name))
    return pids


class WorkerProcess:
    """``python -m txmon worker`` in a session of its own, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path, args: Iterable[str] = (),
                 command: list[str] | None = None) -> None:
        """``command``: run this instead of ``python -m txmon worker`` (e.g. a wrapper that patches a setting)."""
        self.log_path = log_path
        self.started = time.time()
        port = env.get("TXMON_WEB_PORT", "0")
        self.web_url = f"http://127.0.0.1:{port}" if port != "0" else None  # /health, /tx/{id}, /metrics ...
        cwd.mkdir(parents=True, exist_ok=True)  # Faust writes <app id>-data here
        cmd = command or [sys.executable, "-m", "txmon", "worker"]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([*cmd, *args], env=env, cwd=cwd,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return f"--- worker log {self.log_path} (last {lines} lines) ---\n" + "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise WaitTimeout(f"the worker exited with code {self.proc.returncode}\n{self.tail()}")

    def ready(self) -> bool:
        """Faust logged that it joined its group and has its partitions."""
        try:
            return b"[^Worker]: Ready" in self.log_path.read_bytes()
        except OSError:
            return False

    def metrics(self) -> Scrape:
        """A scrape of the worker's /metrics."""
        assert self.web_url, "the worker runs without its web server"
        return scrape(f"{self.web_url}/metrics", time.monotonic(), timeout=10.0)

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        """(status, body) of a GET on the worker's web server; errors are answers too, not exceptions."""
        assert self.web_url, "the worker runs without its web server"
        try:
            with urllib.request.urlopen(self.web_url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the exit code (SIGKILL and WaitTimeout if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise WaitTimeout(f"the worker did not stop within {timeout:g} s of SIGTERM\n{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL the worker's whole session (a clean-up path: never leave a process behind)."""
        for pid in session_pids(self.proc.pid) | ({self.proc.pid} if self.proc.poll() is None else set()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)


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

    def __init__(self, bootstrap: str, topic: str, partitions: int, fetch_max_wait_ms: int = 100) -> None:
        self.topic = topic
        self.records: list[Record] = []
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                      fetch_max_wait_ms=fetch_max_wait_ms, max_partition_fetch_bytes=4 * 2**20)
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
             worker: WorkerProcess | None = None, interval: float = 0.05) -> float:
    """Poll ``readers`` until ``condition()`` holds; WaitTimeout (with the worker's log) after ``timeout`` s.

    Returns the seconds waited. Raises at once if the worker has died.
    """
    readers = list(readers)
    t0 = time.monotonic()
    while True:
        for r in readers:
            r.poll(50)
        if condition():
            return time.monotonic() - t0
        if worker is not None:
            worker.check_alive()
        if time.monotonic() - t0 > timeout:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}"
                              + (f"\n{worker.tail()}" if worker else ""))
        if not readers:
            time.sleep(interval)


# -- Redis state -----------------------------------------------------------------------------------------------------


def replay_done(client: redis.Redis, replay_id: str, partitions: int) -> bool:
    """Every partition has passed the replay's replay_end: all its events and step closes are processed."""
    return client.scard(ReplayKeys(replay_id).replay_end) >= partitions


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
    seen, scored, arr, fin = client.mget([k.seen, k.scored, k.arr, k.fin])

    def bools(raw: bytes | None) -> np.ndarray:
        b = np.unpackbits(np.frombuffer(raw or b"", dtype=np.uint8)).astype(bool)
        return np.pad(b, (0, max(0, n - b.size)))[:n]

    def floats(raw: bytes | None) -> np.ndarray:
        f = np.frombuffer(raw or b"", dtype="<f4")[:n].astype(np.float64)
        return np.pad(f, (0, n - f.size), constant_values=np.nan)

    return StepScores(bools(seen), bools(scored), floats(arr), floats(fin))
