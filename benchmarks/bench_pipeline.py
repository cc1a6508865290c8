"""Benchmark: the whole pipeline on the embedded stack — producer → embedded broker → worker subprocess(es) → Redis.

Phases, each on the same embedded stack (broker, redis-server) and ``--workers`` ``python -m txmon worker``
processes, run by ``txmon.pipeline.Pipeline``:

1. warm-up: a one-step replay, waited for, so the worker has joined its group and loaded its model;
2. throughput: the full synthetic replay sent as fast as possible (``send_replay`` without a rate, as
   ``txmon produce --max``); tx/s from the first send to the receipt of the last step's statistics record;
   Redis memory per transaction from INFO ``used_memory`` before and after; CPU µs a transaction of each
   process (a worker with its fit process, the broker, redis-server, this process: producer and readers) and,
   with several workers, the busiest worker's CPU over the mean;
3. latency: ``--paced-steps`` steps around the largest one at ``--rate`` tx/s; event→alert latency of the
   arrival alerts (alert.processing_time − alert.event_time, and receipt on the alert topic − event_time);
   step close of the largest step (its step_end acknowledged → its statistics computed / received);
4. the same step close in-process (``finalise`` on the stored step), and the naive per-event path:
   the Processor fed one event at a time (one Redis round trip set and one GCN forward per transaction) on
   the first ``--naive`` events of the largest step, extrapolated, against the pipeline's end-to-end rate.

The model is the shipped GCN architecture (3 layers, 100 wide) with random weights and a threshold at the
``--alert-share`` upper quantile of its offline scores: scoring costs the same as a trained one's. The table
at the end sets the figures against their targets (issue 13's and the earlier ones).

    python benchmarks/bench_pipeline.py [--scale 1.0] [--rate 5000] [--also-rates 2000,3000] [--paced-steps 10]
                                        [--naive 2000] [--profile /tmp/worker.svg] [--fetch-wait-ms 500]
                                        [--record-format batch|json] [--compare-json]
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
import torch
from bench_stream_core import memory_breakdown  # benchmarks/, this script's directory, is on sys.path

from model_store.graph import undirected_edge_index
from model_store.inference import Scaler, gcn_scores
from model_store.models.gcn import GCN
from producer.plan import plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.claims import Origin
from stream_app.consumer import DEFAULT_FETCH_WAIT_MS
from stream_app.fit_pool import FitPool
from stream_app.keys import StepKeys
from stream_app.processor import Processor
from stream_app.scorer import LoadedModel
from stream_app.step_close import finalise
from txmon.core.settings import Settings
from txmon.pipeline.runner import Pipeline
from txmon.testing.e2e import TopicReader, claimed_alert_ids, save_gcn, wait_for
from txmon.testing.gc_log import full_collections, log_full_collections
from txmon.testing.procs import cpu_seconds

PARTITIONS = 4
# Issue 13's targets (throughput: 25,000 the stretch), and the earlier ones: the naive ratio, memory, the close.
TARGETS = {"throughput": 15_000, "worker_us": 50, "producer_us": 25, "p99_ms": 250, "balance": 1.25, "ratio": 10,
           "bytes_per_tx": 1_000, "close_ms": 150}

# The worker as `txmon worker` runs it, plus a one-line log per route call, i.e. per partition of a micro-batch
# (wall time, transactions processed, seconds in route, records), and its full garbage collections, which stop
# the loop (txmon.testing.gc_log).
INSTRUMENTED_WORKER = """
import os, sys, time
import stream_app.app as app_module
from txmon.testing.gc_log import log_full_collections
_route, _log = app_module.route, open(os.environ["BENCH_BATCH_LOG"], "a", buffering=1)
def route(processor, batch, max_record_bytes, *rest):
    t = time.perf_counter()
    out = _route(processor, batch, max_record_bytes, *rest)
    _log.write(f"{time.time():.4f} {out.processed} {time.perf_counter() - t:.6f} {len(batch)}\\n")
    return out
app_module.route = route
log_full_collections(os.environ["BENCH_GC_LOG"])
sys.argv = ["txmon", "worker"]
from txmon.cli import main
main()
"""


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class CpuMeter:
    """CPU seconds of the pipeline's processes and of the whole machine between two points in time."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.t0 = time.time()
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.start["this process (producer, readers)"] = time.process_time()
        self.machine0 = machine_busy_seconds()
        self.per_tx: dict[str, float] = {}  # µs of CPU a transaction, by process (set by report with ``tx``)
        self.balance: float | None = None  # the busiest worker's CPU over the workers' mean (several workers)

    def report(self, end: float | None = None, tx: int | None = None) -> str:
        """CPU per process in % of a core; with ``tx``, also µs of CPU per transaction, and with several workers
        the balance (the busiest worker's CPU over the workers' mean)."""
        wall = (end or time.time()) - self.t0
        used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        used["this process (producer, readers)"] = time.process_time() - self.start["this process (producer, readers)"]
        machine = machine_busy_seconds() - self.machine0
        others = machine - sum(used.values())
        parts = ", ".join(f"{name} {100 * u / wall:.0f}%" for name, u in used.items())
        line = (f"CPU over {wall:.1f} s, in % of one core: {parts}; everything else on the machine "
                f"{100 * max(others, 0) / wall:.0f}%; the machine's {os.cpu_count()} cores were "
                f"{100 * machine / (wall * (os.cpu_count() or 1)):.0f}% busy")
        if tx:
            self.per_tx = {name: 1e6 * u / tx for name, u in used.items()}
            line += "\n  CPU per transaction: " + ", ".join(f"{name} {v:.0f} µs" for name, v in self.per_tx.items())
            workers = [u for name, u in used.items() if name.startswith("worker")]
            if len(workers) > 1:
                self.balance = max(workers) / statistics.mean(workers)
                line += (f"; workers' shares {', '.join(f'{100 * u / sum(workers):.0f}%' for u in workers)}, "
                         f"busiest / mean {self.balance:.2f}")
        return line


def batch_log(path: Path, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Transactions and route seconds of the route calls (a partition's share of a micro-batch each) the worker
    finished between ``start`` and ``end``."""
    rows = np.loadtxt(path, ndmin=2) if path.exists() and path.stat().st_size else np.zeros((0, 4))
    sel = (rows[:, 0] >= start) & (rows[:, 0] <= end)
    return rows[sel, 1], rows[sel, 2]


@dataclass
class Collector:
    """A thread reading the stats and alert topics from the beginning, stamping each record's receipt time."""

    bootstrap: str
    stats_topic: str
    alerts_topic: str
    stats: list = field(default_factory=list)  # (received, dict)
    alerts: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        readers = [TopicReader(self.bootstrap, t, PARTITIONS, fetch_max_wait_ms=20)
                   for t in (self.stats_topic, self.alerts_topic)]
        self._ready.set()
        seen = [0, 0]
        try:
            while not self._stop.is_set():
                for i, (r, sink) in enumerate(zip(readers, (self.stats, self.alerts), strict=True)):
                    r.poll(20)
                    for rec in r.records[seen[i]:]:
                        sink.append((rec.received, rec.json()))
                    seen[i] = len(r.records)
        finally:
            for r in readers:
                r.close()

    def stats_of(self, replay_id: str) -> list[tuple[float, dict]]:
        return [(t, s) for t, s in list(self.stats) if s["replay_id"] == replay_id]

    def alerts_of(self, replay_id: str) -> list[tuple[float, dict]]:
        return [(t, a) for t, a in list(self.alerts) if a["replay_id"] == replay_id]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Profiler:
    """``py-spy record`` on the worker; prints the heaviest frames from its collapsed stacks."""

    def __init__(self, pid: int, svg: Path) -> None:
        self.svg, self.raw = svg, svg.with_suffix(".folded")
        svg.parent.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # the venv's, when not on PATH
        self.procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--nonblocking",
                                        "--format", fmt, "-o", str(out)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for fmt, out in (("flamegraph", self.svg), ("raw", self.raw))]

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(2)  # SIGINT: py-spy writes its output and exits
        for p in self.procs:
            p.wait(60)

    def report(self, top: int = 18) -> None:
        if not self.raw.exists():
            print("  (py-spy wrote no profile: is ptrace allowed?)")
            return
        samples = []  # (frames, count)
        for line in self.raw.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            # "Class.function (path/file.py:line)" -> "Class.function (file.py)"
            samples.append(([re.sub(r"\((?:.*/)?([^/:()]+)(?::\d+)?\)$", r"(\1)", f) for f in stack.split(";")],
                            int(n)))
        total = sum(n for _, n in samples) or 1
        own: collections.Counter[str] = collections.Counter()
        for frames, n in samples:
            own[frames[-1]] += n
        print(f"  {total:,} samples (100 Hz, threads while not idle); flame graph: {self.svg}")
        print("  self time (leaf frames):")
        for f, n in own.most_common(top):
            print(f"    {100 * n / total:5.1f}%  {f}")
        print("  inclusive time of the worker's parts:")
        keys = ("score (app.py)", "route (routing.py)", "Processor.process_batch (processor.py)",
                "NodeBatch.from_events (graph_store.py)", "GraphStore.write_batch (graph_store.py)",
                "StepGraph.adjacency (graph_store.py)", "hop_rows (graph.py)", "induced (scorer.py)",
                "score (scorer.py)", "top_neighbours (scorer.py)", "GraphStore.store_arrival (graph_store.py)",
                "claim (alerts.py)", "Processor.on_step_end (processor.py)", "finalise (step_close.py)",
                "step_stats (step_close.py)", "fit_power_law (fits.py)", "_decode_features (contracts.py)",
                "Redis.execute_command (client.py)", "Pipeline.execute (client.py)", "Topic.send (topics.py)")
        for k in keys:
            n = sum(c for frames, c in samples if k in frames)
            if n:
                print(f"    {100 * n / total:5.1f}%  {k}")


def same_outputs(client: redis.Redis, collector: Collector, a: str, b: str, steps: list[int], timeout: float,
                 pipeline: Pipeline) -> str:
    """Whether replays ``a`` and ``b`` of the same data raised the same alerts (every field but the ids and the
    clock), the same statistics (but the clock) and the same final scores, bit for bit."""
    def alerts(replay_id: str) -> list[str]:
        claimed = claimed_alert_ids(client, replay_id)
        wait_for(lambda: claimed <= {x["alert_id"] for _, x in collector.alerts_of(replay_id)}, timeout,
                 f"replay {replay_id}'s alerts", pipeline=pipeline)
        once = {x["alert_id"]: x for _, x in collector.alerts_of(replay_id)}
        return sorted(json.dumps({k: v for k, v in x.items()
                                  if k not in ("alert_id", "replay_id", "event_time", "processing_time")},
                                 sort_keys=True) for x in once.values())

    def stats(replay_id: str) -> list[str]:
        return sorted(json.dumps({k: v for k, v in x.items() if k not in ("replay_id", "computed_at")},
                                 sort_keys=True) for _, x in collector.stats_of(replay_id))

    def finals(replay_id: str) -> list[bytes | None]:
        return [client.get(StepKeys(replay_id, s).fin) for s in steps]

    first = alerts(a)
    got = [first == alerts(b), stats(a) == stats(b), finals(a) == finals(b)]
    return (f"alerts ({len(first):,}) identical: {got[0]}; statistics identical: {got[1]}; final scores of "
            f"every step identical: {got[2]}")


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1e3, q)) if values else float("nan")


def work_done(workers: list) -> list[tuple[float, float]]:
    """Per worker, from its /metrics: (steps it closed, arrival alerts it raised) — where the scoring went."""
    out = []
    for w in workers:
        m = w.metrics()
        out.append((m.total("txmon_steps_finalised_total"), m.total("txmon_alerts_total", kind="arrival")))
    return out


def slow_down(pid: int) -> subprocess.Popen:
    """Pin every thread of ``pid`` to the last CPU and start a busy loop pinned there; returns the loop's process."""
    cpu = max(os.sched_getaffinity(0))
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                           preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    print(f"--slow-worker: pid {pid} pinned to CPU {cpu}, busy loop pid {hog.pid} there")
    return hog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="synthetic data set size (1.0 = Elliptic's 203,769 tx)")
    ap.add_argument("--rate", type=float, default=5_000, help="paced rate for the latency phase, tx/s")
    ap.add_argument("--also-rates", type=lambda v: [float(x) for x in v.split(",")], default=[],
                    help="more paced rates to measure, comma-separated (reported, not in the table)")
    ap.add_argument("--paced-steps", type=int, default=10,
                    help="steps in the latency phase (around the largest); 0 skips it")
    ap.add_argument("--naive", type=int, default=2_000, help="events for the per-event path")
    ap.add_argument("--alert-share", type=float, default=0.02, help="threshold = this upper quantile of scores")
    ap.add_argument("--batch-max", type=int, default=None, help="TXMON_BATCH_MAX for the worker")
    ap.add_argument("--batch-wait-s", type=float, default=None, help="TXMON_BATCH_WAIT_S for the worker")
    ap.add_argument("--fetch-wait-ms", type=int, default=None,
                    help="TXMON_FETCH_WAIT_MS for the worker (default: Faust's 1500 on Kafka, 100 on Tansu)")
    ap.add_argument("--broker", choices=["kafka", "tansu"], default=None,
                    help="the embedded broker (default: TXMON_EMBEDDED_BROKER, i.e. Apache Kafka where it runs)")
    ap.add_argument("--guarantee", choices=["exactly_once", "at_least_once"], default=None,
                    help="TXMON_PROCESSING_GUARANTEE for the workers (default: the broker's, exactly_once on Kafka)")
    ap.add_argument("--workers", type=int, default=1, help="workers in the consumer group (4 partitions)")
    ap.add_argument("--plain-worker", action="store_true",
                    help="run `python -m txmon worker` itself (no batch log, no --fetch-wait-ms)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the worker in phase 2; flame graph here")
    ap.add_argument("--slow-worker", action="store_true",
                    help="pin the last worker to the last CPU and run a busy loop there: one worker on a busier "
                         "core, as on a shared machine, to see where the work goes when a worker falls behind")
    ap.add_argument("--record-format", choices=["batch", "json"], default="batch",
                    help="how the producer sends transactions (TXMON_RECORD_FORMAT)")
    ap.add_argument("--compare-json", action="store_true",
                    help="after the throughput phase, the same full replay sent as JSON records (the format before "
                         "tx_batch), on the same stack and workers: the baseline beside it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dump-latency", type=Path, default=None,
                    help="write the paced phase's arrival alerts (sent, emitted, received) and step closes here (JSON)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for a phase")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="txmon-bench-pipeline-"))
    t0 = time.perf_counter()
    d = generate(args.scale, seed=args.seed)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="bench")
    counts = np.bincount(ds.steps.astype(np.int64), minlength=50)
    largest = int(np.argmax(counts))
    torch.manual_seed(args.seed)
    gcn = GCN(ds.features.shape[1]).eval()
    scaler = Scaler.fit(ds.features)
    offline = gcn_scores(gcn, scaler.transform(ds.features), undirected_edge_index(ds.edge_rows, ds.n_nodes))
    threshold = float(np.quantile(offline, 1 - args.alert_share))
    save_gcn(tmp / "models", gcn.state_dict(), {**gcn.architecture(), "feature_set": "all"}, threshold,
             scaler.mean, scaler.std, ds.fingerprint)
    print(f"data: {ds.n_nodes:,} tx, {ds.n_edges:,} edges, 49 steps, largest step {largest} "
          f"({counts[largest]:,} tx); model: random GCN {gcn.architecture()}, threshold {threshold:.4f} "
          f"(set-up {time.perf_counter() - t0:.1f} s)")

    collector = profiler = hog = None
    results: dict[str, float] = {}
    # Always the embedded stack, whatever TXMON_* say; the topics are the settings' (a fresh broker).
    settings = Settings(kafka_bootstrap=None, redis_url=None, model_dir=tmp / "models", topic_partitions=PARTITIONS,
                        record_format=args.record_format,
                        **({"embedded_broker": args.broker} if args.broker else {}),
                        **({"batch_max": args.batch_max} if args.batch_max else {}),
                        **({"batch_wait_s": args.batch_wait_s} if args.batch_wait_s else {}),
                        **({"fetch_wait_ms": args.fetch_wait_ms} if args.fetch_wait_ms else {}),
                        **({"processing_guarantee": args.guarantee} if args.guarantee else {}))
    with Pipeline(settings, app_id="bench-worker", run_dir=tmp) as pipeline:
        try:
            client = pipeline.client
            command = None if args.plain_worker else [sys.executable, "-c", INSTRUMENTED_WORKER]
            # one after the other: each joins the group once the last is ready
            workers = pipeline.start_workers(args.workers, args.timeout, command=command,
                                             BENCH_BATCH_LOG=str(tmp / "batches.log"),
                                             BENCH_GC_LOG=str(tmp / "gc.log"))
            worker = workers[0]
            if args.slow_worker:
                hog = slow_down(workers[-1].pid)
            collector = Collector(pipeline.bootstrap, settings.topic_stats, settings.topic_alerts)
            broker = pipeline.stack.broker_name if pipeline.stack else "Kafka"
            assert pipeline.stack and pipeline.stack.broker and pipeline.stack.redis  # the embedded stack, above
            services = {"broker": pipeline.stack.broker.pid, "redis": pipeline.stack.redis.pid}

            def run(replay_id: str, what: str, first: int | None = None, last: int | None = None,
                    rate: float | None = None, progress=None):  # noqa: ANN001, ANN202
                """Send a replay, wait until the worker has passed its replay_end and its statistics records have
                been received: (plan, wall time of the first send, send summary)."""
                plan = plan_replay(ds, first, last, replay_id)
                start = time.time()
                summary = pipeline.run(plan, rate=rate, timeout=args.timeout, progress=progress).summary
                wait_for(lambda: len(collector.stats_of(replay_id)) >= len(plan), args.timeout, what,
                         pipeline=pipeline)
                return plan, start, summary

            # 1. warm-up
            t = time.monotonic()
            run("warmup", "the warm-up replay", 1, 1)
            print(f"\nworker ready: warm-up step processed {time.monotonic() - worker.started_at:.1f} s after its "
                  f"start ({time.monotonic() - t:.1f} s after the warm-up was sent)")

            # 2. throughput, unpaced
            # The producer runs in this process, beside readers that keep every record they read: a full collection
            # of that heap (246 ms by the paced phase) stopped the sends, and the alerts of the transactions it held
            # back looked late (`txmon produce` alone collects in 10-17 ms). So each phase starts with the heap
            # frozen, and this process's full collections are printed beside the worker's.
            log_full_collections(tmp / "gc-bench.log")
            gc.freeze()
            client.memory_purge()
            mem0 = client.info("memory")["used_memory"]
            if args.profile:
                profiler = Profiler(worker.pid, args.profile)
                time.sleep(1.0)  # py-spy attaches
            pids = {f"worker {i + 1}" if len(workers) > 1 else "worker": w.pid for i, w in enumerate(workers)}
            meter = CpuMeter({**pids, **services})
            work0 = work_done(workers)
            plan, start, summary = run("full", "the full replay")
            cpu_full = meter.report(tx=plan.count)
            results["worker_us"] = sum(v for k, v in meter.per_tx.items() if k.startswith("worker"))
            results["producer_us"] = meter.per_tx["this process (producer, readers)"]
            if meter.balance is not None:
                results["balance"] = meter.balance
            work = [tuple(b - a for a, b in zip(w0, w1, strict=True))
                    for w0, w1 in zip(work0, work_done(workers), strict=True)]
            if profiler:
                profiler.stop()
            stats = collector.stats_of("full")
            end = max(t for t, _ in stats)
            last_computed = max(s["computed_at"] for _, s in stats)
            mem1 = client.info("memory")["used_memory"]
            n = summary.events
            results["throughput"] = n / (end - start)
            results["bytes_per_tx"] = (mem1 - mem0) / n
            breakdown = memory_breakdown(client, StepKeys("full", largest), int(counts[largest]))
            print(f"\nthroughput: {n:,} tx in {end - start:.1f} s = {results['throughput']:,.0f} tx/s end to end "
                  f"(first send → last statistics record received)")
            print(f"  producer: {summary.rate:,.0f} tx/s ({summary.seconds:.1f} s, {summary.mb_per_s:.1f} MB/s); "
                  f"worker done {last_computed - start:.1f} s after the first send, "
                  f"{last_computed - (start + summary.seconds):.1f} s after the last")
            sizes, secs = batch_log(tmp / "batches.log", start, end)
            if sizes.size:
                print(f"  worker: {sizes.size:,} route calls (a partition's share of a micro-batch each), "
                      f"{sizes.mean():,.0f} transactions on average (median "
                      f"{np.median(sizes):,.0f}, max {sizes.max():,.0f}); route() busy {secs.sum():.1f} s of "
                      f"{end - start:.1f} s ({100 * secs.sum() / (end - start):.0f}%), {1e6 * secs.sum() / n:,.0f} µs "
                      f"per tx; the rest is Faust, the Kafka clients and waiting; "
                      f"{full_collections(tmp / 'gc.log', start, end)}")
            print(f"  {cpu_full}")
            print(f"  this process (producer, readers): {full_collections(tmp / 'gc-bench.log', start, end)}")
            if len(workers) > 1:
                print("  work per worker: steps closed " + " / ".join(f"{c:.0f}" for c, _ in work)
                      + ", arrival alerts " + " / ".join(f"{a:.0f}" for _, a in work))
            print(f"  redis: {results['bytes_per_tx']:,.0f} bytes per transaction (used_memory delta "
                  f"{(mem1 - mem0) / 2**20:,.1f} MiB); largest step by key family (MEMORY USAGE / tx): "
                  + ", ".join(f"{k} {v:,.1f}" for k, v in breakdown.items()))

            if args.compare_json:  # the baseline: the producer switched to JSON, the workers as they are
                as_sent = pipeline.settings
                pipeline.settings = as_sent.model_copy(update={"record_format": "json"})
                try:
                    meter = CpuMeter({**pids, **services})
                    plan_j, start_j, summary_j = run("full-json", "the full replay as JSON records")
                    cpu_json = meter.report(tx=plan_j.count)
                finally:
                    pipeline.settings = as_sent
                end_j = max(t for t, _ in collector.stats_of("full-json"))
                results["throughput_json"] = summary_j.events / (end_j - start_j)
                print(f"\nbaseline, the same replay as JSON records: {results['throughput_json']:,.0f} tx/s end to end "
                      f"(producer {summary_j.rate:,.0f} tx/s); {args.record_format} records "
                      f"{results['throughput'] / results['throughput_json']:.2f}x that")
                print(f"  {cpu_json}")
                print("  " + same_outputs(client, collector, "full", "full-json", [sp.step for sp in plan],
                                          args.timeout, pipeline))

            # 3. latency, paced
            k = min(args.paced_steps, 49)
            first = max(1, min(largest - k // 2, 49 - k + 1))
            last = first + k - 1
            cum = dict(zip(range(first, last + 1), np.cumsum(counts[first:last + 1]).tolist(), strict=True))

            def paced(rate: float) -> float:
                """One paced replay of steps first..last; prints its latencies, returns the p99 in ms."""
                replay_id = f"paced-{rate:.0f}"
                acked: dict[int, float] = {}

                def progress(sent: int, total: int) -> None:
                    now = time.time()
                    for s, c in cum.items():
                        if sent == c:  # the last call at a step's count comes after its step_end was flushed
                            acked[s] = now

                gc.freeze()  # what the readers have kept so far (see the throughput phase)
                meter = CpuMeter({**pids, **services})
                plan, start, summary = run(replay_id, "the paced replay", first, last, rate=rate, progress=progress)
                done = time.time()
                cpu = meter.report(done, tx=plan.count)
                claimed = claimed_alert_ids(client, replay_id)
                wait_for(lambda: claimed <= {a["alert_id"] for _, a in collector.alerts_of(replay_id)},
                         args.timeout, "the paced replay's alerts", pipeline=pipeline)
                arrival = [(t, a) for t, a in collector.alerts_of(replay_id) if a["kind"] == "arrival"]
                lat = [a["processing_time"] - a["event_time"] for _, a in arrival]
                recv = [t - a["event_time"] for t, a in arrival]
                stat_of = {s["step"]: (t, s) for t, s in collector.stats_of(replay_id)}
                t_recv, s_big = stat_of[largest]
                print(f"\nlatency: steps {first}-{last} ({summary.events:,} tx) at {summary.rate:,.0f} tx/s "
                      f"(target {rate:,.0f}); {len(arrival):,} arrival alerts")
                sizes, secs = batch_log(tmp / "batches.log", start, done)
                if sizes.size:
                    print(f"  worker: {sizes.size:,} route calls, {sizes.mean():,.0f} transactions on average, route() "
                          f"p50 {np.median(secs) * 1e3:,.0f} ms, p99 {np.percentile(secs, 99) * 1e3:,.0f} ms per "
                          f"batch, busy {100 * secs.sum() / (done - start):.0f}% of the {done - start:.1f} s; "
                          f"{full_collections(tmp / 'gc.log', start, done)}")
                print(f"  {cpu}")
                print(f"  this process (producer, readers): {full_collections(tmp / 'gc-bench.log', start, done)}")
                print(f"  event → alert emitted (processing_time − event_time): p50 {percentile_ms(lat, 50):,.0f} "
                      f"ms, p99 {percentile_ms(lat, 99):,.0f} ms, max {percentile_ms(lat, 100):,.0f} ms")
                print(f"  event → alert received from the alert topic: p50 {percentile_ms(recv, 50):,.0f} ms, "
                      f"p99 {percentile_ms(recv, 99):,.0f} ms, max {percentile_ms(recv, 100):,.0f} ms")
                print(f"  step close, step {largest} ({counts[largest]:,} tx): step_end acknowledged → statistics "
                      f"computed {(s_big['computed_at'] - acked[largest]) * 1e3:,.0f} ms, → received "
                      f"{(t_recv - acked[largest]) * 1e3:,.0f} ms")
                closes = [stat_of[s][1]["computed_at"] - acked[s] for s in acked if s in stat_of]
                print(f"  all paced steps, step_end acknowledged → statistics computed: median "
                      f"{np.median(closes) * 1e3:,.0f} ms, max {max(closes) * 1e3:,.0f} ms")
                # Where the tail comes from: transactions sent while a step was being closed wait for it.
                spans = [(acked[s], stat_of[s][1]["computed_at"]) for s in acked if s in stat_of]
                sent = np.array([a["event_time"] for _, a in arrival])
                during = np.zeros(sent.size, dtype=bool)
                for a, b in spans:
                    during |= (sent >= a) & (sent <= b)
                lat_a = np.array(lat)
                if during.any() and (~during).any():
                    print(f"  sent while a step was closing: {100 * during.mean():.0f}% of the arrival alerts, "
                          f"{100 * during[lat_a >= np.percentile(lat_a, 95)].mean():.0f}% of the slowest 5%; "
                          f"p99 {np.percentile(lat_a[during], 99) * 1e3:,.0f} ms for those, "
                          f"{np.percentile(lat_a[~during], 99) * 1e3:,.0f} ms for the others")
                if args.dump_latency:
                    args.dump_latency.write_text(json.dumps({
                        "rate": rate, "arrival": [(a["event_time"], a["processing_time"], t) for t, a in arrival],
                        "step_end_acked": acked, "stats": {s: (t, st["computed_at"]) for s, (t, st) in stat_of.items()},
                    }))
                return percentile_ms(lat, 99)

            if k > 0:  # --paced-steps 0 skips the latency phase
                results["p99_ms"] = paced(args.rate)
                for rate in args.also_rates:
                    paced(rate)

            # 4. in-process: step close and the naive per-event path
            model = LoadedModel.from_store(tmp / "models")
            proc = Processor(redis.Redis.from_url(pipeline.redis_url), model)
            fit_pool = FitPool()
            fit_pool.start()
            time.sleep(2.0)  # as in a worker, the fit process is up before the first close
            close_ms = {}
            for name, pool in (("fits in a process of their own, as the worker does", fit_pool),
                               ("fits in-line", None)):
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    finalise(proc.store, model, "full", largest, proc.window, Origin.direct(), b"bench",
                             fit_pool=pool)
                    times.append(time.perf_counter() - t)
                close_ms[name] = float(np.median(times) * 1e3)
            fit_pool.close()
            results["close_ms"] = next(iter(close_ms.values()))
            print(f"\nstep close in-process (finalise of step {largest}, {counts[largest]:,} tx, median of 3): "
                  + "; ".join(f"{v:,.0f} ms with {k}" for k, v in close_ms.items()))
            sp = plan_replay(ds, largest, largest, "naive").steps[0]
            events = [sp.event(s) for s in range(min(args.naive, sp.count))]
            if events:  # --naive 0 skips it
                one = Processor(proc.redis, model, window_size=1)  # each event scored alone: one forward each
                t = time.perf_counter()
                for e in events:
                    one.process_batch([e])
                naive = len(events) / (time.perf_counter() - t)
                results["ratio"] = results["throughput"] / naive
                print(f"naive per-event path (Processor.process_batch on single events, first {len(events):,} tx "
                      f"of step {largest}): {naive:,.0f} tx/s → the full replay would take {n / naive:,.0f} s")
        finally:
            if hog is not None:
                hog.kill()  # ours: started by slow_down
                hog.wait()
            if profiler:
                for p in profiler.procs:
                    if p.poll() is None:
                        p.kill()
            if collector:
                collector.close()
            for i, code in enumerate(pipeline.stop_workers()):
                print(f"\nworker {i + 1} stopped with exit code {code}")
    if profiler:
        print("\nworker profile during the throughput phase (py-spy):")
        profiler.report()

    print("\n| metric | measured | target | |")
    print("|---|---|---|---|")
    n_workers = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    rows = [
        (f"end-to-end throughput, {n_workers}", f"{results['throughput']:,.0f} tx/s",
         f">= {TARGETS['throughput']:,} tx/s (stretch 25,000)", results["throughput"] >= TARGETS["throughput"]),
        (f"worker CPU a transaction, full replay ({'all workers' if args.workers > 1 else 'its fit process incl.'})",
         f"{results['worker_us']:,.0f} µs", f"<= {TARGETS['worker_us']} µs",
         results["worker_us"] <= TARGETS["worker_us"]),
        ("producer CPU a transaction (this process: its readers incl.)", f"{results['producer_us']:,.0f} µs",
         f"<= {TARGETS['producer_us']} µs", results["producer_us"] <= TARGETS["producer_us"]),
        (f"p99 event→alert at {args.rate:,.0f} tx/s",
         f"{results['p99_ms']:,.0f} ms" if "p99_ms" in results else "not run (--paced-steps 0)",
         f"<= {TARGETS['p99_ms']} ms", results["p99_ms"] <= TARGETS["p99_ms"] if "p99_ms" in results else None),
        ("busiest / mean worker CPU, full replay",
         f"{results['balance']:.2f}" if "balance" in results else "one worker (run with --workers 2)",
         f"<= {TARGETS['balance']}", results["balance"] <= TARGETS["balance"] if "balance" in results else None),
        ("vs naive per-event path", f"{results['ratio']:,.1f}x" if "ratio" in results else "not run (--naive 0)",
         f">= {TARGETS['ratio']}x", results["ratio"] >= TARGETS["ratio"] if "ratio" in results else None),
        ("Redis memory per transaction", f"{results['bytes_per_tx']:,.0f} B", f"<= {TARGETS['bytes_per_tx']:,} B",
         results["bytes_per_tx"] <= TARGETS["bytes_per_tx"]),
        (f"step close, {counts[largest]:,}-tx step (in-process)", f"{results['close_ms']:,.0f} ms",
         f"<= {TARGETS['close_ms']} ms", results["close_ms"] <= TARGETS["close_ms"]),
    ]
    for name, got, want, ok in rows:
        print(f"| {name} | {got} | {want} | {'not measured' if ok is None else 'met' if ok else 'NOT met'} |")
    print(f"(scale {args.scale}, {PARTITIONS} partitions, {args.workers} worker(s), batch max {settings.batch_max}, "
          f"batch wait {settings.batch_wait_s} s, "
          f"fetch wait {pipeline.settings.fetch_wait_ms or DEFAULT_FETCH_WAIT_MS} ms, "
          f"{pipeline.settings.processing_guarantee or 'exactly_once'}, {broker})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
