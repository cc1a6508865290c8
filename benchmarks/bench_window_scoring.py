"""Benchmark: scoring arrival windows — layer by layer on the rows each layer reads (``scorer.score_rows``, the
worker's path) against PyG's forward on the window's (layers+1)-hop ball (``window_ball``, the path before).

Every complete window of the ``--steps`` largest steps of a synthetic data set, one thread, in-process, both
paths on the same windows in alternation (``--runs`` times); prints CPU seconds, the ratio and the largest score
difference. The model is the shipped architecture (3 layers, 100 wide) with random weights.

    python benchmarks/bench_window_scoring.py [--scale 1.0] [--steps 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from model_store.arrival import arrival_view, step_adjacency, window_ball
from model_store.inference import Scaler
from model_store.models.gcn import GCN
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.scorer import LoadedModel, induced, score, score_rows
from txmon.core.contracts import ARRIVAL_WINDOW


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=3, help="the largest steps to score")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the worker (stream_app.processor)
    d = generate(args.scale, seed=args.seed)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="bench")
    torch.manual_seed(0)
    model = LoadedModel(GCN(ds.features.shape[1]).eval(), Scaler.fit(ds.features), 0.5, "bench")
    steps = np.argsort(-np.bincount(ds.steps))[: args.steps]
    windows = []
    for step in steps:
        rows, adj = step_adjacency(ds, int(step))
        x = model.scale(ds.features[rows])
        for w in range(rows.size // ARRIVAL_WINDOW):
            todo = np.arange(w * ARRIVAL_WINDOW, (w + 1) * ARRIVAL_WINDOW)
            windows.append((arrival_view(adj, w, ARRIVAL_WINDOW), todo, x))

    def ball() -> list[np.ndarray]:
        out = []
        for view, todo, x in windows:
            nodes, need = window_ball(view, todo, model.layers)
            xb = np.zeros((nodes.size, x.shape[1]), dtype=np.float32)
            xb[np.searchsorted(nodes, need)] = x[need]
            out.append(score(model, xb, induced(view, nodes)).probs[np.searchsorted(nodes, todo)])
        return out

    def rows_path() -> list[np.ndarray]:
        out = []
        for view, todo, x in windows:
            scored, nodes = score_rows(model, view, todo, lambda seqs, x=x: x[seqs])
            out.append(scored.probs[np.searchsorted(nodes, todo)])
        return out

    times: dict[str, list[float]] = {"ball (PyG, before)": [], "score_rows (now)": []}
    results = {}
    for _ in range(args.runs):
        for name, fn in zip(times, (ball, rows_path), strict=True):
            t = time.process_time()
            results[name] = fn()
            times[name].append(time.process_time() - t)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*results.values(), strict=True))
    n = sum(todo.size for _, todo, _ in windows)
    print(f"{len(windows)} windows ({n:,} transactions) of steps {sorted(int(s) for s in steps)}, "
          f"{args.runs} runs each, median CPU:")
    base = statistics.median(times["ball (PyG, before)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:20s} {med:6.3f} s  {med / n * 1e6:6.1f} µs per transaction  {base / med:4.2f}x")
    print(f"largest score difference: {diff:.1e}")


if __name__ == "__main__":
    main()
