"""Benchmark: full-size synthetic generation (target ≤ 60 s) and `describe`.

Prints medians over --repeat runs; the baseline, measured in the same run, writes the same
features file with pandas' DataFrame.to_csv (the obvious way) instead of txmon's pyarrow writer.

    python benchmarks/bench_synth.py [--scale 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from replay.data.dataset import EllipticDataset
from replay.data.describe import describe
from replay.synth import generate
from replay.synth.writer import write_kaggle_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    gen_t, write_t, base_t, desc_t = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for i in range(args.repeat):
            t0 = time.perf_counter()
            d = generate(scale=args.scale, seed=i)
            t1 = time.perf_counter()
            write_kaggle_files(out, d.tx_ids, d.steps, d.features, d.labels, d.edges)
            t2 = time.perf_counter()
            frame = pd.DataFrame(d.features)
            frame.insert(0, "step", d.steps)
            frame.insert(0, "txId", d.tx_ids)
            t3 = time.perf_counter()
            frame.to_csv(out / "baseline.csv", header=False, index=False)
            t4 = time.perf_counter()
            describe(EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges))
            t5 = time.perf_counter()
            gen_t.append(t1 - t0)
            write_t.append(t2 - t1)
            base_t.append(t4 - t3)
            desc_t.append(t5 - t4)
        size_mb = (out / "elliptic_txs_features.csv").stat().st_size / 1e6

    med = statistics.median
    total = [g + w for g, w in zip(gen_t, write_t, strict=True)]
    print(f"scale {args.scale}: {len(d.tx_ids):,} transactions, {len(d.edges):,} edges, "
          f"features file {size_mb:,.0f} MB; medians of {args.repeat} runs")
    print(f"  generate (graph + features)      {med(gen_t):7.2f} s")
    print(f"  write, pyarrow (txmon)           {med(write_t):7.2f} s")
    ratio = med(base_t) / med(write_t)
    verdict = "met" if med(total) <= 60 else "MISSED"
    print(f"  write, pandas to_csv (baseline)  {med(base_t):7.2f} s   -> txmon writer {ratio:.1f}x faster")
    print(f"  synth total                      {med(total):7.2f} s   target <= 60 s: {verdict}")
    print(f"  describe                         {med(desc_t):7.2f} s")


if __name__ == "__main__":
    main()
