"""`txmon replay` end to end, on real parts: the suite's broker, redis-server and a worker subprocess (the running
stack), and the embedded stack the command starts itself. The report's numbers are recomputed here by plain
counting from the alert topic (read independently) and the data set's labels; two replays of one period give the
same report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from replay.data.elliptic import load_elliptic
from replay.synth import synthesize
from txmon.core.contracts import ALERT_KINDS, Alert
from txmon.core.elliptic_format import ILLICIT, UNKNOWN
from txmon.pipeline.runner import Pipeline
from txmon.testing.e2e import TopicReader, clean_env, isolated_redis, train_small_gcn, unique_settings, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.filterwarnings("ignore:Sparse:UserWarning")]

PARTITIONS = 4
FIRST, LAST = 35, 49
REDIS_DB = 7  # the session's redis-server, a database no other test uses


def _txmon(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txmon", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _comparable(report: dict) -> dict:
    """What must not change between two replays of one period: everything but the replay id, the caller's
    timings and the latencies (event→alert, and arrival alert→its resolution)."""
    out = {k: v for k, v in report.items() if k != "latency"}
    out["header"] = {k: v for k, v in report["header"].items() if k not in ("replay_id", "meta")}
    out["metrics"] = {**report["metrics"],
                      "early": [{k: v for k, v in e.items() if k != "ahead_s"} for e in report["metrics"]["early"]]}
    return out


def _counts(flagged: set[int], tx_ids: np.ndarray, illicit: np.ndarray) -> tuple[int, int, int]:
    hit = np.isin(tx_ids, np.fromiter(flagged, dtype=np.int64, count=len(flagged)))
    return int(np.sum(hit & illicit)), int(np.sum(hit & ~illicit)), int(np.sum(~hit & illicit))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("replay-data")
    synthesize(d, scale=0.02, seed=3)
    return d


def test_replay_report_is_repeatable_and_matches_the_alert_topic(data_dir: Path, kafka_bootstrap: str,
                                                                 redis_url: str, worker_overrides: dict[str, object],
                                                                 tmp_path: Path) -> None:
    ds = load_elliptic(data_dir, use_cache=False)
    train_small_gcn(ds, tmp_path / "models")
    url, client = isolated_redis(redis_url, REDIS_DB)
    client.close()
    settings = unique_settings(kafka_bootstrap, url, tmp_path / "models", tag=uuid.uuid4().hex[:8],
                               topic_partitions=PARTITIONS, **worker_overrides)
    tail: subprocess.Popen | None = None
    # The running stack: the session's services and one worker, stopped at the end.
    with Pipeline(settings, app_id=f"replay-cli-{uuid.uuid4().hex[:6]}", run_dir=tmp_path / "worker") as stack:
        (worker,) = stack.start_workers(1, 60)
        alerts = TopicReader(kafka_bootstrap, settings.topic_alerts, PARTITIONS)
        env = worker.env  # the commands below see the stack the worker serves
        try:
            # An alert consumer follows the live replay: `txmon alerts tail --json`, started before it.
            tail = subprocess.Popen([sys.executable, "-m", "txmon", "alerts", "tail", "--json", "--replay", "rep-a"],
                                    env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            tailed: list[str] = []
            notes: list[str] = []
            readers = [threading.Thread(target=lambda: tailed.extend(tail.stdout), daemon=True),
                       threading.Thread(target=lambda: notes.extend(tail.stderr), daemon=True)]
            for t in readers:
                t.start()
            wait_for(lambda: any("partitions 0,1,2,3" in n for n in notes), 60, "alerts tail to join its group")
            reports = {}
            for rid in ("rep-a", "rep-b"):
                r = _txmon("replay", "--data", str(data_dir), "--from-step", str(FIRST), "--to-step", str(LAST),
                           "--report", str(tmp_path / rid), "--replay-id", rid, env=env, cwd=tmp_path)
                assert r.returncode == 0, r.stdout + r.stderr + worker.log_tail()
                assert f"replay {rid}" in r.stdout and "txm:{" + rid + "}" in r.stdout
                reports[rid] = json.loads((tmp_path / rid / "report.json").read_text())
                html = (tmp_path / rid / "report.html").read_text()
                assert all((tmp_path / rid / png).is_file() and png in html for png in reports[rid]["plots"].values())

            # The same replay id again is refused: replays never share a namespace.
            again = _txmon("replay", "--data", str(data_dir), "--report", str(tmp_path / "x"), "--replay-id",
                           "rep-a", env=env, cwd=tmp_path)
            assert again.returncode != 0 and "already in Redis" in again.stderr
            worker.check_alive()
            wait_for(lambda: len(tailed) >= reports["rep-a"]["alerts"]["distinct"], 30,
                     "alerts tail to print rep-a's alerts")
            tail.send_signal(signal.SIGINT)
            assert tail.wait(10) == 130  # Ctrl-C: a clean stop
            for t in readers:
                t.join(5)
        finally:
            if tail is not None and tail.poll() is None:
                tail.kill()

    a, b = reports["rep-a"], reports["rep-b"]
    assert _comparable(a) == _comparable(b)
    followed = [Alert.model_validate_json(line) for line in tailed]
    assert {x.replay_id for x in followed} == {"rep-a"} and len(followed) == a["alerts"]["distinct"]
    assert a["header"]["meta"]["transactions sent"] == int(np.sum((ds.steps >= FIRST) & (ds.steps <= LAST)))

    # Recomputed from the alert topic and the labels by counting.
    wait_for(lambda: sum(json.loads(r.value)["replay_id"] == "rep-a" for r in alerts.records)
             >= a["alerts"]["distinct"], 30, "rep-a's alerts", [alerts])
    got = {al.alert_id: al for al in (Alert.model_validate_json(r.value) for r in alerts.records)
           if al.replay_id == "rep-a"}
    alerts.close()
    assert {x.alert_id for x in followed} == set(got)
    kinds = {k: {al.tx_id for al in got.values() if al.kind == k} for k in ALERT_KINDS}
    assert a["alerts"]["by_kind"] == {k: len(v) for k, v in kinds.items()}
    verdicts = {"arrival": kinds["arrival"], "final": (kinds["arrival"] | kinds["final"]) - kinds["retracted"]}
    in_period = (ds.steps >= FIRST) & (ds.steps <= LAST) & (ds.labels != UNKNOWN)
    per_step = {row["step"]: row for row in a["metrics"]["per_step"]}
    for verdict, flagged in verdicts.items():
        tp, fp, fn = _counts(flagged, ds.tx_ids[in_period], ds.labels[in_period] == ILLICIT)
        overall = a["metrics"]["overall"][verdict]
        assert (overall["tp"], overall["fp"], overall["fn"]) == (tp, fp, fn)
        assert overall["precision"] == pytest.approx(tp / (tp + fp))
        assert overall["recall"] == pytest.approx(tp / (tp + fn))
        for t in range(FIRST, LAST + 1):
            m = in_period & (ds.steps == t)
            row = per_step[t][verdict]
            assert (row["tp"], row["fp"], row["fn"]) == _counts(flagged, ds.tx_ids[m], ds.labels[m] == ILLICIT)
    assert Counter(s["step"] for s in a["steps"]) == Counter(range(FIRST, LAST + 1))


@pytest.mark.parametrize("broker_kind", ["kafka", "tansu"])
def test_replay_on_the_embedded_stack(data_dir: Path, tmp_path: Path, broker_kind: str) -> None:
    """No Kafka or Redis configured: the command starts a broker (Apache Kafka, or the Tansu fallback),
    redis-server and a worker, trains a model for the data set (the store is empty), replays, reports, and stops
    everything it started."""
    # TMPDIR: the services' and the worker's directories land under tmp_path, which tells their processes apart
    # from any other suite's on the machine.
    env = clean_env(TXMON_MODEL_DIR=str(tmp_path / "models"), TXMON_CACHE_DIR=str(tmp_path / "cache"),
                    TMPDIR=str(tmp_path), TXMON_EMBEDDED_BROKER=broker_kind)
    r = _txmon("replay", "--data", str(data_dir), "--from-step", "40", "--to-step", "45", "--report",
               str(tmp_path / "report"), "--epochs", "5", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    name = {"kafka": "Apache Kafka 4.", "tansu": "Tansu"}[broker_kind]
    assert f"embedded {name}" in " ".join(r.stdout.split())
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert (report["header"]["first_step"], report["header"]["last_step"]) == (40, 45)
    assert [s["step"] for s in report["steps"]] == list(range(40, 46))
    assert not _processes_in(tmp_path), "processes left behind"


def _processes_in(path: Path) -> dict[int, str]:
    """Live processes whose working directory is under ``path``: pid → command line."""
    out = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(path):
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return out
