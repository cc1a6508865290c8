"""Faults, counted: each fault injected during a replay, several runs, compared with a clean reference.

One embedded stack per fault kind (Apache Kafka where it runs, a redis-server of its own), one worker, the same
small synthetic data set and model. A clean replay is the reference; then each run replays the data under a new
replay id at ``--rate`` tx/s, injects the fault by pid about ``--at`` of the way through, recovers as an operator
would (restart what died), and counts against the reference:

- lost: transactions without a final score in Redis, and reference alerts (tx, kind) missing on the topic;
- duplicated: alert ids and statistics records that a read-committed consumer sees more than once;
- wrong: final scores off the offline GCN by more than 1e-5, and alerts on the topic the reference lacks;
- recovery: seconds from the fault until every partition passed the replay's replay_end (after a loud stop: with
  the worker restarted, as an operator would);
- loud: the run ended in a stated error (worker exit 70 with its reason) rather than a result.

Faults: ``kill9`` (the only worker, at a random moment, restarted at once), ``precommit`` (the worker exits
right before committing a transaction that carries alerts, restarted), ``redis-stop`` (redis-server frozen 8 s),
``redis-restart`` (redis-server killed and restarted from its append-only file: exact, or a loud stop when the
last second of writes was lost), ``redis-empty`` (redis-server killed and restarted empty: the worker must stop
loudly), ``broker-bounce`` (the Apache Kafka broker killed and restarted on its data while the worker works
through a replay sent in full beforehand: the producer is not part of this fault).

    python benchmarks/bench_faults.py [--runs 5] [--faults kill9,precommit,...] [--scale 0.02]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from producer.plan import ReplayPlan, plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.delivery import CRASH_BEFORE_COMMIT
from stream_app.keys import ReplayKeys
from txmon.core.contracts import Alert, StepStats
from txmon.core.settings import Settings
from txmon.embedded import KafkaBroker, RedisServer
from txmon.pipeline.runner import Pipeline
from txmon.pipeline.worker import WorkerProcess
from txmon.testing.e2e import TopicReader, read_step_scores, train_small_gcn, unique_settings

PARTITIONS = 4
TOL = 1e-5
TIMEOUT = 180.0


def _count(reader: TopicReader, replay_id: str, kind: str) -> tuple[Counter, set]:
    reader.poll(200)
    if kind == "alerts":
        items = [Alert.model_validate_json(r.value) for r in reader.records]
        mine = [a for a in items if a.replay_id == replay_id]
        return Counter(a.alert_id for a in mine), {(a.tx_id, a.kind) for a in mine}
    steps = [StepStats.model_validate_json(r.value) for r in reader.records]
    return Counter(s.step for s in steps if s.replay_id == replay_id), set()


def _end_or_exit(p: Pipeline, worker: WorkerProcess, replay_id: str, timeout: float) -> None:
    """Wait until every partition passed the replay's replay_end, or the worker exited, or ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while worker.exit_code is None and time.monotonic() < deadline and \
            p.client.scard(ReplayKeys(replay_id).replay_end) < PARTITIONS:
        time.sleep(0.1)


def bounce_broker(p: Pipeline, broker: KafkaBroker, plan: ReplayPlan, app_id: str, at: float) -> float:
    """The replay on the broker first, then a worker on it, and the broker killed and restarted on its data once
    the worker has closed about ``at`` of the replay's steps (read in Redis): returns when the fault hit."""
    p.stop_workers()
    p.send(plan)
    closed = ReplayKeys(plan.replay_id).stats  # a step's statistics, written just before its commit
    p.start_workers(1, TIMEOUT, app_id=app_id)
    deadline = time.monotonic() + 60
    while p.client.hlen(closed) < at * len(plan) and time.monotonic() < deadline:
        time.sleep(0.005)
    t_fault = time.monotonic()
    broker.restart(kill=True)
    if p.client.hlen(closed) >= len(plan):
        raise RuntimeError("the replay ended before the broker was killed: no fault injected")
    return t_fault


def one_run(fault: str, p: Pipeline, servers: list[RedisServer], plan: ReplayPlan, offline: np.ndarray,
            reference: set, rate: float, at: float, app_id: str, broker: KafkaBroker | None = None
            ) -> dict[str, object]:
    """One replay with ``fault`` injected; ``servers[-1]`` is the running redis-server (replaced when restarted)."""
    redis_server = servers[-1]
    replay_id = plan.replay_id
    if fault == "broker-bounce":
        assert broker is not None, "broker-bounce needs the embedded Apache Kafka broker"
        t_fault = bounce_broker(p, broker, plan, app_id, at)
        worker = p.running[0]
        worker.stopped = True  # it may stop (exit 70) when a batch cannot be published within its retry budget
        _end_or_exit(p, worker, replay_id, TIMEOUT)
        loud = ""
        if worker.exit_code is not None:  # said why; a restarted worker must then finish the replay exact
            why = [line for line in worker.log_path.read_text(errors="replace").splitlines() if "CRITICAL" in line]
            loud = f"exit {worker.exit_code}: {why[-1].split('stopping the worker: ')[-1][:160] if why else '?'}"
            if broker.log_path is not None:  # the broker's side of it, kept beside the worker's log
                shutil.copy(broker.log_path, worker.log_path.with_name(f"{worker.log_path.stem}-broker.log"))
                loud += f" (logs: {worker.log_path.parent})"
            worker.stop()
            p.start_workers(1, TIMEOUT, app_id=app_id)
        return _outcome(p, plan, offline, reference, t_fault, loud)
    worker = p.running[0]
    if fault == "precommit":  # the failpoint is an environment variable: a worker of its own
        worker.stop()
        worker = p.start_workers(1, TIMEOUT, app_id=app_id, TXMON_TEST_CRASH_BEFORE_COMMIT="3")[0]
        assert CRASH_BEFORE_COMMIT == "TXMON_TEST_CRASH_BEFORE_COMMIT"
    worker.stopped = True  # its death may be the fault itself
    sender = threading.Thread(target=p.send, args=(plan,), kwargs={"rate": rate}, daemon=True)
    t_fault = 0.0
    loud = ""
    sender.start()
    time.sleep(at * plan.count / rate * random.uniform(0.7, 1.3))
    if fault == "kill9":
        t_fault = time.monotonic()
        worker.kill()
    elif fault == "precommit":
        deadline = time.monotonic() + 60
        while worker.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.05)
        t_fault = time.monotonic()
    elif fault == "redis-stop":
        t_fault = time.monotonic()
        assert redis_server.pid is not None
        os.kill(redis_server.pid, signal.SIGSTOP)
        time.sleep(8.0)
        os.kill(redis_server.pid, signal.SIGCONT)
    elif fault == "redis-restart":
        t_fault = time.monotonic()
        redis_server.restart(kill=True)
        _end_or_exit(p, worker, replay_id, 15)  # a lost second of writes is found at the next batch
        if worker.exit_code is not None:
            text = worker.log_path.read_text(errors="replace")
            loud = "exit 70: Redis lost its latest writes" if worker.exit_code == 70 and \
                "lost its latest writes" in text else f"NOT loud: worker exit {worker.exit_code}"
            sender.join(TIMEOUT)
            p.start_workers(1, TIMEOUT, app_id=app_id)
            return {"loud": loud, "recovery_s": None, "lost": None, "dup": None, "wrong": None}
    elif fault == "redis-empty":
        t_fault = time.monotonic()
        port = redis_server.port
        assert redis_server.pid is not None
        os.kill(redis_server.pid, signal.SIGKILL)
        redis_server.stop()
        servers.append(RedisServer(port=port).start())  # started again, empty, on the same port
        deadline = time.monotonic() + 60
        while worker.exit_code is None and time.monotonic() < deadline:
            time.sleep(0.1)
        text = worker.log_path.read_text(errors="replace")
        loud = "exit 70: Redis lost its state" if worker.exit_code == 70 and "lost txmon's state" in text else \
            f"NOT loud: worker exit {worker.exit_code}"
        sender.join(TIMEOUT)
        p.start_workers(1, TIMEOUT, app_id=app_id)
        return {"loud": loud, "recovery_s": None, "lost": None, "dup": None, "wrong": None}
    if worker.exit_code is not None and fault != "redis-stop":  # restart at once, as an operator would
        worker.stop()
        p.start_workers(1, TIMEOUT, app_id=app_id)
    sender.join(TIMEOUT)
    return _outcome(p, plan, offline, reference, t_fault, loud)


def _outcome(p: Pipeline, plan: ReplayPlan, offline: np.ndarray, reference: set, t_fault: float,
             loud: str) -> dict[str, object]:
    """Wait for the replay's end and count what consumers see against the reference."""
    replay_id = plan.replay_id
    p.wait_replay_end(replay_id, TIMEOUT)
    recovery = time.monotonic() - t_fault
    client = p.client
    alerts = TopicReader(p.bootstrap, p.settings.topic_alerts, PARTITIONS)
    stats = TopicReader(p.bootstrap, p.settings.topic_stats, PARTITIONS)
    try:
        deadline = time.monotonic() + 60
        while True:
            ids, kinds = _count(alerts, replay_id, "alerts")
            per_step, _ = _count(stats, replay_id, "stats")
            if (kinds >= reference and len(per_step) >= len(plan)) or time.monotonic() > deadline:
                break
    finally:
        alerts.close()
        stats.close()
    missing_scores = wrong_scores = 0
    for sp in plan:
        sc = read_step_scores(client, replay_id, sp.step, sp.rows.size)
        missing_scores += int(np.sum(np.isnan(sc.fin)))
        wrong_scores += int(np.sum(np.abs(sc.fin - offline[sp.rows]) > TOL))
    return {
        "loud": loud,
        "recovery_s": recovery,
        "lost": missing_scores + len(reference - kinds),
        "dup": sum(n - 1 for n in ids.values() if n > 1) + sum(n - 1 for n in per_step.values() if n > 1),
        "wrong": wrong_scores + len(kinds - reference),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--faults", default="kill9,precommit,redis-stop,redis-restart,redis-empty,broker-bounce")
    ap.add_argument("--scale", type=float, default=0.02)
    ap.add_argument("--rate", type=float, default=1000.0, help="replay rate, tx/s")
    ap.add_argument("--at", type=float, default=0.4, help="when to inject, as a share of the replay's send time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    random.seed(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="txmon-bench-faults-"))
    d = generate(args.scale, seed=3)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="faults")
    model, offline = train_small_gcn(ds, tmp / "models")
    print(f"data: {ds.n_nodes:,} tx over {len(np.unique(ds.steps))} steps, replayed at {args.rate:,.0f} tx/s; "
          f"{args.runs} runs a fault")
    print("| fault | runs | lost | duplicated | wrong | loud stops | recovery s (median, max) |")
    print("|---|---|---|---|---|---|---|")
    reasons: list[str] = []
    for fault in args.faults.split(","):
        servers = [RedisServer().start()]
        try:
            results = run_fault(fault, servers, ds, offline, args, tmp)
        finally:
            for server in servers:
                server.stop()
        counted = [r for r in results if r["lost"] is not None]
        rec = [float(r["recovery_s"]) for r in counted]  # type: ignore[arg-type]
        loud = [str(r["loud"]) for r in results if r["loud"]]
        cells = [str(sum(int(r[k]) for r in counted)) if counted else "–"  # type: ignore[call-overload]
                 for k in ("lost", "dup", "wrong")]
        recovery = f"{statistics.median(rec):.1f}, {max(rec):.1f}" if rec else "–"
        quiet = "; ".join(s for s in loud if s.startswith("NOT"))
        print(f"| {fault} | {len(results)} | {' | '.join(cells)} | "
              f"{sum(s.startswith('exit 70') for s in loud)} of {len(results)}{' ' + quiet if quiet else ''}"
              f" | {recovery} |", flush=True)
        reasons.extend(f"{fault}: {why} ({n}×)" for why, n in Counter(loud).items() if why.startswith("exit"))
    for line in reasons:  # after the table: what each loud stop said
        print(f"- {line}")


def run_fault(fault: str, servers: list[RedisServer], ds: EllipticDataset, offline: np.ndarray,
              args: argparse.Namespace, tmp: Path) -> list[dict[str, object]]:
    """A clean reference replay, then ``args.runs`` replays with the fault, on a broker of their own."""
    tag = uuid.uuid4().hex[:8]
    app_id = f"faults-{tag}"
    embedded = Settings(kafka_bootstrap=None, redis_url=servers[0].url, model_dir=tmp / "models")
    with Pipeline(embedded, run_dir=tmp / fault) as stack:  # starts the broker (Redis is ours)
        needs = stack.stack.worker_settings if stack.stack else {}
        settings = unique_settings(stack.bootstrap, servers[0].url, tmp / "models", tag=tag,
                                   topic_partitions=PARTITIONS, **needs)
        with Pipeline(settings, run_dir=tmp / fault / "runs") as p:
            p.start_workers(1, TIMEOUT, app_id=app_id)
            p.run(plan_replay(ds, replay_id=f"ref-{tag}"), timeout=TIMEOUT)
            reader = TopicReader(p.bootstrap, settings.topic_alerts, PARTITIONS)
            time.sleep(1.0)
            _, reference = _count(reader, f"ref-{tag}", "alerts")
            reader.close()
            results = []
            for i in range(args.runs):
                plan = plan_replay(ds, replay_id=f"{fault}-{tag}-{i}")
                broker = stack.stack.broker if stack.stack else None
                results.append(one_run(fault, p, servers, plan, offline, reference, args.rate, args.at, app_id,
                                       broker if isinstance(broker, KafkaBroker) else None))
                if not p.running:
                    p.start_workers(1, TIMEOUT, app_id=app_id)
            p.stop_workers()
    return results

if __name__ == "__main__":
    main()
