"""Benchmark: the stream worker's core (Processor) on a full-size synthetic replay against a real redis-server.

All events go through ``process_batch`` in micro-batches in replay order, each step closed by
``on_step_end``; then a naive per-event path (the same Processor fed one event at a time: a few
Redis round trips and one GCN forward per transaction) on a subset. Prints throughput, batch
latency, step-close time, Redis memory per transaction (with a per-key-family breakdown of the
largest step) and the final-score parity with the offline GCN.

    python benchmarks/bench_stream_core.py [--scale 1.0] [--batch 1000] [--naive 2000]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import redis
import torch

from model_store.graph import undirected_edge_index
from model_store.inference import Scaler, gcn_scores
from model_store.models.gcn import GCN
from producer.plan import plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.keys import StepKeys
from stream_app.processor import Processor
from stream_app.scorer import LoadedModel
from txmon.core.contracts import TxEvent
from txmon.embedded import RedisServer


def replay_events(ds: EllipticDataset, replay_id: str) -> list[TxEvent]:
    """The events the producer sends (producer.plan): by step, seq order, each edge on its later end."""
    return [e for sp in plan_replay(ds, replay_id=replay_id) for e in sp.events()]


def memory_breakdown(client: redis.Redis, keys: StepKeys, nodes: int) -> dict[str, float]:
    """MEMORY USAGE per key family of one step, in bytes per transaction."""
    families: dict[str, float] = defaultdict(float)
    names = [k.decode() for k in client.scan_iter(match=keys.prefix.replace("{", "\\{").replace("}", "\\}") + "*",
                                                   count=10_000)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    for name, used in zip(names, pipe.execute(), strict=True):
        family = name[len(keys.prefix):].split(":")[0]
        families[family] += used or 0
    return {k: v / nodes for k, v in sorted(families.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--naive", type=int, default=2000, help="events for the per-event path (0: skip it)")
    ap.add_argument("--alert-share", type=float, default=0.02, help="threshold = this upper quantile of scores")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    d = generate(args.scale, seed=args.seed)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="bench")
    torch.manual_seed(args.seed)
    gcn = GCN(ds.features.shape[1]).eval()  # randomly initialised, the shipped architecture (3 layers, 100 wide)
    scaler = Scaler.fit(ds.features)
    offline = gcn_scores(gcn, scaler.transform(ds.features), undirected_edge_index(ds.edge_rows, ds.n_nodes))
    model = LoadedModel(gcn, scaler, float(np.quantile(offline, 1 - args.alert_share)), "gcn-bench")
    events = replay_events(ds, "bench")
    print(f"data: {ds.n_nodes:,} tx, {ds.n_edges:,} edges, {len(np.unique(ds.steps))} steps "
          f"(set-up {time.perf_counter() - t0:.1f} s)")

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        proc = Processor(client, model)
        base = client.info("memory")["used_memory"]
        latencies, closes, alerts, finals = [], {}, 0, {}
        by_step: dict[int, list[TxEvent]] = defaultdict(list)
        for e in events:
            by_step[e.step].append(e)
        t_all = time.perf_counter()
        for step, evs in by_step.items():
            for i in range(0, len(evs), args.batch):
                t = time.perf_counter()
                alerts += len(proc.process_batch(evs[i:i + args.batch]))
                latencies.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = proc.on_step_end("bench", step, 0, 1)
            closes[step] = time.perf_counter() - t
            assert res is not None
            alerts += len(res.alerts)
            finals.update(zip(res.tx_ids.tolist(), res.final_scores.tolist(), strict=True))
        wall = time.perf_counter() - t_all
        used = client.info("memory")["used_memory"] - base
        largest = max(by_step, key=lambda s: len(by_step[s]))
        breakdown = memory_breakdown(client, StepKeys("bench", largest), len(by_step[largest]))

        ours = np.array([finals[t] for t in ds.tx_ids.tolist()])
        p50, p99 = np.percentile(np.array(latencies) * 1e3, [50, 99])
        print(f"\nbatched (batch {args.batch}): {ds.n_nodes / wall:,.0f} tx/s including step closes "
              f"({wall:.1f} s); batch latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; {alerts:,} alerts")
        print(f"step close: largest step {largest} ({len(by_step[largest]):,} tx) {closes[largest] * 1e3:.0f} ms; "
              f"median over steps {np.median(list(closes.values())) * 1e3:.0f} ms")
        print(f"redis: {used / ds.n_nodes:,.0f} bytes per transaction (used_memory delta {used / 2**20:,.1f} MiB)")
        print("  largest step by key family (MEMORY USAGE / tx): "
              + ", ".join(f"{k} {v:,.1f}" for k, v in breakdown.items()) + f"; total {sum(breakdown.values()):,.0f}")
        print(f"final scores vs offline GCN: max |diff| {np.abs(ours - offline).max():.2e}")

        if args.naive:
            naive_path(proc, client, model, by_step[largest][: args.naive], largest, args.batch)


def naive_path(proc: Processor, client: redis.Redis, model: LoadedModel, events: list, step: int, batch: int) -> None:
    """The per-event path: same code, one event per call, on the first events of the largest step."""
    subset = [e.model_copy(update={"replay_id": "naive"}) for e in events]
    batched = [e.model_copy(update={"replay_id": "naive-batched"}) for e in subset]
    one = Processor(client, model, window_size=1)  # each event scored alone, at once: one forward each
    t = time.perf_counter()
    for e in subset:
        one.process_batch([e])
    naive = len(subset) / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(0, len(batched), batch):
        proc.process_batch(batched[i:i + batch])
    same = len(batched) / (time.perf_counter() - t)
    print(f"\nper-event path on {len(subset):,} tx of step {step}: {naive:,.0f} tx/s; "
          f"batched on the same tx: {same:,.0f} tx/s ({same / naive:.0f}x)")


if __name__ == "__main__":
    main()
