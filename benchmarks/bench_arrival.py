"""Arrival alerts: a stored version's arrival model against the baseline it replaces (its GCN scoring on arrival,
with the GCN's threshold — what the worker did before arrival models), on the temporal test steps.

Both are the worker's arrival scores, simulated offline (tests show they equal the stream's). Prints arrival and
final precision / recall / F1, the arrival F1 as a share of the final F1, the share of arrival alerts that step
close retracts, and how many transactions of the step were still to come when the alert was raised (median), for
the test steps, the steps before and after the dark market shutdown, and overall.

    python benchmarks/bench_arrival.py --data data/synthetic-scale1-seed0 --store models [--version gcn-v3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from model_store.arrival_train import compare_on_test
from model_store.graph import undirected_edge_index
from model_store.inference import gcn_scores, load_servable_gcn
from model_store.registry import ModelStore
from model_store.splits import temporal_split
from replay.data.elliptic import load_elliptic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--version", default="latest")
    args = ap.parse_args()

    ds = load_elliptic(args.data)
    store = ModelStore(args.store)
    m, gcn, scaler, arrival = load_servable_gcn(store, args.version)
    if arrival is None or m.arrival is None:
        raise SystemExit(f"{m.version} has no arrival model: train one with `txmon train gcn`")
    split = temporal_split(ds)
    x = scaler.transform(ds.features[:, : m.n_features])
    final = gcn_scores(gcn, x, undirected_edge_index(ds.edge_rows, ds.n_nodes))
    steps = np.unique(ds.steps[split.test])
    runs = {
        f"baseline: the GCN on arrival (threshold {m.threshold:.3f})":
            compare_on_test(gcn, x, ds, split, m.threshold, final, m.threshold)[0],
        f"arrival model (threshold {m.arrival.threshold:.3f})":
            compare_on_test(arrival, x, ds, split, m.arrival.threshold, final, m.threshold,
                            m.arrival.window_size)[0],
    }
    print(f"{m.version} on {args.data}: test steps {steps.min()}-{steps.max()}, final F1 "
          f"{next(iter(runs.values()))['overall']['final']['f1']:.3f}")
    head = f"{'':58s} {'steps':>6s} {'arr P':>6s} {'arr R':>6s} {'arr F1':>6s} {'fin F1':>6s} {'ratio':>6s} " \
           f"{'alerts':>7s} {'retr':>6s} {'ahead':>6s}"
    print(head)
    for name, c in runs.items():
        for label, b in [("all", c["overall"]), *c["periods"].items()]:
            a = b["arrival"]
            print(f"{name:58s} {label:>6s} {a['precision']:6.3f} {a['recall']:6.3f} {a['f1']:6.3f} "
                  f"{b['final']['f1']:6.3f} {b['f1_ratio']:6.3f} {b['arrival_alerts']:7d} "
                  f"{b['retraction_rate']:6.1%} {b['ahead_median_tx']:6.0f}")


if __name__ == "__main__":
    main()
