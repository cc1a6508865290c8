"""Benchmark: loading the Elliptic files (first load <= 30 s, cached load <= 2 s).

Measures, in one run and on the same files:
- baseline: a plain ``pandas.read_csv`` of the features file, default options;
- first load: ``load_elliptic`` with a fresh, empty cache directory (parse + hash + cache write);
- cached load: ``load_elliptic`` again with that cache directory (median of --repeat runs).

The OS page cache is warm in every case (the files were just written or read), so the figures
measure the loader, not the disk.

    python benchmarks/bench_loader.py --generate            # full-size random files in a temp dir
    python benchmarks/bench_loader.py --data path/to/kaggle  # real files
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from replay.data.elliptic import load_elliptic
from txmon.core.elliptic_format import CLASSES_FILE, EDGES_FILE, FEATURES_FILE, FILES, N_FEATURES

N_TX, N_EDGES = 203_769, 234_355
FIRST_TARGET_S, CACHED_TARGET_S = 30.0, 2.0


def generate(out: Path, n_tx: int = N_TX, n_edges: int = N_EDGES, seed: int = 0) -> None:
    """Random files with the Kaggle layout and sizes (pyarrow writes shortest-repr floats)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(rng.integers(1, 320_000_000, size=n_tx + n_tx // 10)))[:n_tx]
    steps = rng.integers(1, 50, size=n_tx)
    cols = [pa.array(ids), pa.array(steps)]
    # Standardised-looking values with a heavy right tail, like the real features.
    for _ in range(N_FEATURES):
        cols.append(pa.array(rng.standard_normal(n_tx) * np.exp(rng.standard_normal(n_tx) * 0.5)))
    table = pa.Table.from_arrays(cols, names=[f"c{j}" for j in range(len(cols))])
    pacsv.write_csv(table, str(out / FEATURES_FILE), pacsv.WriteOptions(include_header=False, quoting_style="none"))
    classes = rng.choice(np.array(["1", "2", "unknown"]), size=n_tx, p=[0.022, 0.206, 0.772])
    _write_with_header(out / CLASSES_FILE, "txId,class", pa.table({"a": ids, "b": classes}))
    src, dst = rng.choice(ids, size=n_edges), rng.choice(ids, size=n_edges)
    _write_with_header(out / EDGES_FILE, "txId1,txId2", pa.table({"a": src, "b": dst}))


def _write_with_header(path: Path, header: str, table: pa.Table) -> None:
    # pyarrow always quotes header names; Kaggle's headers are bare.
    with path.open("wb") as f:
        f.write(header.encode() + b"\n")
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def run(data: Path, repeat: int, first_runs: int, baseline_runs: int) -> bool:
    sizes = {name: (data / name).stat().st_size / 1e6 for name in FILES}
    print(f"data: {data}  ({', '.join(f'{n} {s:,.0f} MB' for n, s in sizes.items())})")
    med = statistics.median
    features_csv = data / FEATURES_FILE

    base = [timed(lambda: pd.read_csv(features_csv))[0] for _ in range(baseline_runs)]

    with tempfile.TemporaryDirectory(prefix="txmon-bench-cache-") as tmp:
        first: list[float] = []
        for i in range(first_runs):
            cache_dir = Path(tmp) / f"run{i}"  # fresh and empty every time
            t, fresh = timed(lambda cd=cache_dir: load_elliptic(data, cache_dir=cd))
            first.append(t)
        cached = []
        for _ in range(repeat):
            t, ds = timed(lambda cd=cache_dir: load_elliptic(data, cache_dir=cd))
            cached.append(t)
        assert ds.fingerprint == fresh.fingerprint
        for name in ("tx_ids", "steps", "features", "labels", "edges"):
            assert np.array_equal(getattr(ds, name), getattr(fresh, name)), name
        entry_mb = sum(p.stat().st_size for p in Path(cache_dir).glob("*.npz")) / 1e6

    print(f"{fresh.n_nodes:,} transactions, {fresh.n_edges:,} edges; cache entry {entry_mb:,.0f} MB")
    rows = [
        ("pandas.read_csv(features), defaults", med(base), len(base), None),
        ("load_elliptic, first (empty cache)", med(first), len(first), FIRST_TARGET_S),
        ("load_elliptic, cached", med(cached), len(cached), CACHED_TARGET_S),
    ]
    b = med(base)
    print(f"\n{'':38} {'median s':>9} {'runs':>5} {'x baseline':>11} {'target':>8}  met")
    ok = True
    for label, t, n, target in rows:
        met = "" if target is None else ("yes" if t <= target else "NO")
        ok &= met != "NO"
        tgt = "" if target is None else f"<= {target:g} s"
        print(f"{label:38} {t:9.2f} {n:5d} {t / b:11.2f} {tgt:>8}  {met}")
    if len(first) > 1 or len(cached) > 1:
        print(f"\nall first loads: {', '.join(f'{t:.2f}' for t in first)} s")
        print(f"all cached loads: {', '.join(f'{t:.2f}' for t in cached)} s")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="a directory with the three Kaggle files")
    src.add_argument("--generate", action="store_true", help="write full-size random files to a temp dir")
    ap.add_argument("--repeat", type=int, default=5, help="cached loads (median)")
    ap.add_argument("--first-runs", type=int, default=1, help="first loads, each with a fresh cache dir")
    ap.add_argument("--baseline-runs", type=int, default=3, help="pandas.read_csv runs (median)")
    args = ap.parse_args()

    if args.data:
        ok = run(args.data, args.repeat, args.first_runs, args.baseline_runs)
    else:
        with tempfile.TemporaryDirectory(prefix="txmon-bench-data-") as tmp:
            t, _ = timed(lambda: generate(Path(tmp)))
            print(f"generated full-size random files in {t:.1f} s")
            ok = run(Path(tmp), args.repeat, args.first_runs, args.baseline_runs)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
