"""Benchmark: `txmon analyze` on a full-size data set (target: ≤ 120 s on 2 cores, loading included).

Prints medians over --repeat runs. The baseline, measured in the same run, computes the same numbers
the straightforward way: a networkx graph per step and per cumulative prefix (degrees, density,
weakly connected components, average_clustering), powerlaw fits on the same degree arrays and
np.polyfit for α. It needs networkx, which is not a txmon dependency (pip install networkx).

    python benchmarks/bench_analyze.py [--data DIR | --scale 1.0 --seed 0] [--repeat 3] [--baseline-repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from replay.analysis import NetworkAnalysis, run_analysis
from replay.data.dataset import EllipticDataset
from replay.data.elliptic import load_elliptic
from replay.synth import synthesize


def baseline(ds: EllipticDataset) -> dict:
    """The obvious implementation: networkx for every graph, powerlaw with its defaults, np.polyfit."""
    import networkx as nx
    import powerlaw

    er, steps = ds.edge_rows, ds.steps.astype(np.int64)
    edge_step = np.maximum(steps[er[:, 0]], steps[er[:, 1]])
    within = steps[er[:, 0]] == steps[er[:, 1]]
    cumulative_graph = nx.DiGraph()
    per_step, cumulative = [], []
    for t in np.unique(steps):
        nodes = np.flatnonzero(steps == t).tolist()
        step_graph = nx.DiGraph()
        step_graph.add_nodes_from(nodes)
        step_graph.add_edges_from(er[within & (edge_step == t)].tolist())
        cumulative_graph.add_nodes_from(nodes)
        cumulative_graph.add_edges_from(er[edge_step == t].tolist())
        for g, rows in ((step_graph, per_step), (cumulative_graph, cumulative)):
            rows.append({
                "nodes": g.number_of_nodes(), "edges": g.number_of_edges(),
                "avg_in_degree": float(np.mean([d for _, d in g.in_degree()])),
                "avg_out_degree": float(np.mean([d for _, d in g.out_degree()])),
                "density": nx.density(g), "components": nx.number_weakly_connected_components(g),
                "clustering": nx.average_clustering(nx.Graph(g)),
            })

    def fit(values: np.ndarray) -> tuple[float, float] | None:
        values = values[values > 0]
        if values.size < 10:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = powerlaw.Fit(values, discrete=True, verbose=False)
            r, _ = f.distribution_compare("power_law", "lognormal", normalized_ratio=True)
        return float(f.power_law.alpha), float(r)

    n = ds.n_nodes
    deg_in, deg_out = np.bincount(er[:, 1], minlength=n), np.bincount(er[:, 0], minlength=n)
    fits = {"in": fit(deg_in), "out": fit(deg_out)}
    s_in, s_out = np.bincount(er[within, 1], minlength=n), np.bincount(er[within, 0], minlength=n)
    step_fits = [(fit(s_in[steps == t]), fit(s_out[steps == t])) for t in np.unique(steps)]
    log_n = np.log([c["nodes"] for c in cumulative])
    log_e = np.log([c["edges"] for c in cumulative])
    alpha, _ = np.polyfit(log_n, log_e, 1)
    return {"per_step": per_step, "cumulative": cumulative, "fits": fits, "step_fits": step_fits, "alpha": alpha}


def disagreements(a: NetworkAnalysis, b: dict) -> list[str]:
    """Where txmon's numbers differ from the baseline's (empty when they agree)."""
    out = []
    for kind in ("per_step", "cumulative"):
        for ours, theirs in zip(getattr(a, kind), b[kind], strict=True):
            for key, value in theirs.items():
                if not np.isclose(getattr(ours, key), value, rtol=1e-9, atol=1e-12):
                    out.append(f"{kind} step {ours.step} {key}: {getattr(ours, key)} vs {value}")
    if a.densification and not np.isclose(a.densification.alpha, b["alpha"], rtol=1e-9):
        out.append(f"α: {a.densification.alpha} vs {b['alpha']}")
    for direction, dist in (("in", a.in_degree), ("out", a.out_degree)):
        theirs = b["fits"][direction]
        if dist.fit and theirs and not np.isclose(dist.fit.power_law.alpha, theirs[0], rtol=1e-6):
            out.append(f"{direction}-degree α: {dist.fit.power_law.alpha} vs {theirs[0]} (powerlaw's own x_min range)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="an Elliptic-format directory (default: generate a synthetic one)")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-repeat", type=int, default=1, help="the baseline is slow; 0 skips it")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = args.data
        if data is None:
            data = tmp_path / "data"
            t0 = time.perf_counter()
            synthesize(data, scale=args.scale, seed=args.seed)
            print(f"generated scale {args.scale} seed {args.seed} in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        ds = load_elliptic(data, use_cache=False)
        load_s = time.perf_counter() - t0

        total, numbers = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = run_analysis(ds, tmp_path / "out", source=str(data))
            total.append(time.perf_counter() - t0)
            numbers.append(result.seconds["statistics_and_fits"])

        base = []
        reference = None
        for _ in range(args.baseline_repeat):
            try:
                t0 = time.perf_counter()
                reference = baseline(ds)
                base.append(time.perf_counter() - t0)
            except ImportError as e:
                print(f"baseline skipped: {e}")
                break

    med = statistics.median
    print(f"{ds.n_nodes:,} transactions, {ds.n_edges:,} edges, {len(np.unique(ds.steps))} steps; "
          f"medians of {args.repeat} runs (baseline: {len(base)})")
    print(f"  load (CSV parse, no cache)          {load_s:7.2f} s")
    print(f"  numbers: statistics + fits (txmon)   {med(numbers):7.2f} s")
    print(f"  analysis incl. plots + report        {med(total):7.2f} s")
    verdict = "met" if load_s + med(total) <= 120 else "MISSED"
    print(f"  load + analysis                      {load_s + med(total):7.2f} s   target <= 120 s: {verdict}")
    if base:
        print(f"  numbers: networkx + powerlaw (base)  {med(base):7.2f} s   -> txmon {med(base) / med(numbers):.1f}x "
              "faster on the same numbers")
        diff = disagreements(result.network, reference)
        print("  numbers agree with the baseline" if not diff else "  DISAGREE:\n    " + "\n    ".join(diff[:10]))


if __name__ == "__main__":
    main()
