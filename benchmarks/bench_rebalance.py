"""Benchmark: consumer-group formation and recovery after ``kill -9``, on Apache Kafka and on Tansu in one run.

For each broker (a fresh embedded one each), with the worker's settings (session timeout 6 s, heartbeat 1 s):

1. group formation: N workers (1, 2, 4) started at once in a new consumer group; seconds from the start until
   every one has logged Faust's ``Ready`` and the group's last rebalance has synced (the workers' logs);
2. recovery: two workers share the 4 partitions, a replay is sent at ``--rate`` tx/s, and one worker is
   killed with SIGKILL halfway; seconds from the kill until the survivor's group re-synced with all
   partitions and until it resumed (Faust's "Resuming flow"), minus the session timeout in which the group
   cannot notice; and whether the replay still completed with one statistics record per step and the same
   alert ids as an undisturbed replay of the same plan.

    python benchmarks/bench_rebalance.py [--brokers kafka,tansu] [--scale 0.05] [--rate 2000] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from producer.plan import plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.consumer import READY
from txmon.core.errors import TxmonError
from txmon.core.settings import Settings
from txmon.pipeline.completion import published_alerts
from txmon.pipeline.runner import Pipeline
from txmon.pipeline.worker import WorkerProcess
from txmon.testing.e2e import claimed_alert_ids, train_small_gcn, unique_settings

PARTITIONS = 4
SESSION_S = 6.0  # stream_app.app: broker_session_timeout
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def log_times(worker: WorkerProcess, needle: str) -> list[float]:
    """Unix times of the worker's log lines that contain ``needle``."""
    out = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        m = _STAMP.match(line)
        if m and needle in line:
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def fresh(settings: Settings, tag: str) -> Settings:
    """The same stack with topics of their own: a new group never re-reads another run's records."""
    return unique_settings(str(settings.kafka_bootstrap), str(settings.redis_url), settings.model_dir, tag=tag,
                           topic_partitions=PARTITIONS, fetch_wait_ms=settings.fetch_wait_ms,
                           processing_guarantee=settings.processing_guarantee)


def formation(settings: Settings, n: int, tag: str, timeout: float) -> float:
    """Seconds from starting ``n`` workers at once until all are ready and the group's last sync is done."""
    with Pipeline(fresh(settings, f"form-{tag}-{n}"), app_id=f"form-{tag}-{n}") as p:
        t0 = time.time()
        workers = [p.start_worker(web_port=0) for _ in range(n)]
        if not p.wait_ready(timeout):
            raise RuntimeError(f"{n} workers not ready in {timeout} s:\n{workers[-1].log_tail()}")
        time.sleep(2 * SESSION_S)  # a rebalance triggered by a late joiner would show up in here
        last_sync = max(max(log_times(w, "Successfully synced group"), default=t0) for w in workers)
        ready = max(max(log_times(w, READY), default=t0) for w in workers)
        p.stop_workers()
        return max(last_sync, ready) - t0


def recovery(settings: Settings, ds: EllipticDataset, rate: float, tag: str, timeout: float) -> dict[str, object]:
    """Kill one of two workers halfway through a paced replay; what the survivor took and whether the result holds."""
    reference = f"ref-{tag}"
    killed_run = f"kill-{tag}"
    with Pipeline(fresh(settings, f"rec-{tag}"), app_id=f"rec-{tag}") as p:
        p.start_workers(2, timeout)
        p.run(plan_replay(ds, replay_id=reference), rate=rate, timeout=timeout)
        plan = plan_replay(ds, replay_id=killed_run)
        victim, survivor = p.workers
        send_s = plan.count / rate
        t_kill = 0.0

        def progress(sent: int, total: int) -> None:
            nonlocal t_kill
            if not t_kill and sent >= total // 2:
                t_kill = time.time()
                victim.kill()

        t0 = time.monotonic()
        try:
            p.run(plan, rate=rate, timeout=timeout, progress=progress)
            elapsed: float | None = time.monotonic() - t0
        except TxmonError as e:  # a replay that never finishes is a result too (see the survivor's log)
            print(f"  {killed_run}: {e}\n  survivor's log: {survivor.log_path}")
            elapsed = None
        synced = [t for t in log_times(survivor, "Successfully synced group") if t > t_kill]
        resumed = [t for t in log_times(survivor, READY) if t > t_kill]  # its new assignment
        # exactly-once: the survivor fences the victim's transactional producers before it processes their
        # partitions (absent on Tansu, at-least-once)
        fenced = [t for t in log_times(survivor, "transactional producer") if t > t_kill]
        client = p.client
        same = claimed_alert_ids(client, killed_run) == {
            a.replace(reference, killed_run) for a in claimed_alert_ids(client, reference)}
        stats_steps = int(client.hlen(f"txm:{{{killed_run}}}:stats"))
        published = sum(published_alerts(client, killed_run).values())
        p.stop_workers()
    return {
        "synced_s": synced[0] - t_kill if synced else None,
        "resumed_s": resumed[0] - t_kill if resumed else None,
        "fenced_s": fenced[-1] - t_kill if fenced else None,
        "extra_s": None if elapsed is None else elapsed - send_s,
        "same_alerts": same,
        "steps": stats_steps,
        "published": published,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default="kafka,tansu")
    ap.add_argument("--workers", default="1,2,4", help="group sizes to form ('' for none)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="txmon-bench-rebalance-"))
    d = generate(args.scale, seed=0)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="rebal")
    train_small_gcn(ds, tmp / "models")
    print(f"data: {ds.n_nodes:,} tx over {len(np.unique(ds.steps))} steps; replay at {args.rate:,.0f} tx/s "
          f"({ds.n_nodes / args.rate:.1f} s); session timeout {SESSION_S:g} s; {args.repeat} runs each, medians")
    for broker in args.brokers.split(","):
        settings = Settings(kafka_bootstrap=None, redis_url=None, model_dir=tmp / "models", embedded_broker=broker,
                            topic_partitions=PARTITIONS)
        with Pipeline(settings, app_id="bench-rebalance") as stack:  # one broker and redis-server for the lot
            attached = stack.settings  # its Kafka, Redis and the fetch wait workers need on this broker
            name = stack.stack.broker_name if stack.stack else broker
            for n in (int(x) for x in args.workers.split(",") if x):
                runs = [formation(attached, n, f"{broker}-{i}", args.timeout) for i in range(args.repeat)]
                print(f"{name}: group of {n} formed in {statistics.median(runs):.1f} s "
                      f"(runs: {', '.join(f'{r:.1f}' for r in runs)})")
            results = [recovery(attached, ds, args.rate, f"{broker}-{i}", args.timeout) for i in range(args.repeat)]
            for key, what in (("synced_s", "group re-synced"), ("resumed_s", "survivor resumed"),
                              ("fenced_s", "survivor's producers of the taken partitions ready")):
                vals = [r[key] for r in results if r[key] is not None]
                if vals:
                    med = statistics.median(vals)  # type: ignore[type-var]
                    print(f"{name}: kill -9 of 1 of 2 workers → {what} after {med:.1f} s median, "
                          f"{med - SESSION_S:+.1f} s after the session timeout (runs: "
                          f"{', '.join(f'{v:.1f}' for v in vals)})")  # type: ignore[str-format]
                else:
                    print(f"{name}: kill -9 → {what}: not seen in the survivor's log")
            done = [r["extra_s"] for r in results if r["extra_s"] is not None]
            print(f"{name}: {len(done)} of {len(results)} replays with a kill finished, "
                  f"{statistics.median(done) if done else float('nan'):.1f} s after their last send (median); "  # type: ignore[type-var]
                  f"same alert ids as the undisturbed replay: "
                  f"{[r['same_alerts'] for r in results]}; statistics records per run: {[r['steps'] for r in results]}")


if __name__ == "__main__":
    main()
