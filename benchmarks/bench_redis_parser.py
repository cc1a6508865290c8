"""Benchmark: the worker's core (Processor) with redis-py's pure-Python RESP parser against hiredis (its C parser
and command packer, which redis-py uses whenever the ``hiredis`` package is installed).

Each run is a subprocess that replays a synthetic data set through the processor as ``bench_against.py`` does
(``run_once``: batches of --batch events, its own redis-server) and reports the CPU seconds of the whole process
per transaction. The two variants alternate (--repeat times each); the Python parser's runs hide ``hiredis``
from redis-py. Both must raise the same alerts.

    python benchmarks/bench_redis_parser.py [--scale 0.5] [--batch 470] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from bench_against import run_once  # benchmarks/, this script's directory, is on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=470, help="events per process_batch call")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each variant, alternating")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", choices=["python", "hiredis"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "python":
            sys.modules["hiredis"] = None  # type: ignore[assignment]  # redis-py then finds no hiredis
        from redis.utils import HIREDIS_AVAILABLE

        print(json.dumps({**run_once(args.scale, args.batch, args.seed), "hiredis": HIREDIS_AVAILABLE}))
        return
    runs: dict[str, list[dict]] = {"python": [], "hiredis": []}
    for _ in range(args.repeat):
        for variant, out in runs.items():
            cmd = [sys.executable, __file__, "--child", variant, "--scale",
                   str(args.scale), "--batch", str(args.batch), "--seed", str(args.seed)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            if result["hiredis"] != (variant == "hiredis"):
                sys.exit(f"the {variant} run had hiredis {'on' if result['hiredis'] else 'off'}: "
                         "is the hiredis package installed?")
            out.append(result)
    first = runs["python"][0]
    same = all(r["alerts_digest"] == first["alerts_digest"] for rs in runs.values() for r in rs)
    print(f"{first['tx']:,} transactions, batches of {args.batch}, {args.repeat} runs of each variant, alternating; "
          f"{first['alerts']:,} alerts, the same in every run: {same}")
    base = statistics.median(r["cpu_s"] / r["tx"] for r in runs["python"])
    for variant, rs in runs.items():
        per_tx = statistics.median(r["cpu_s"] / r["tx"] for r in rs)
        each = ", ".join(f"{r['cpu_s'] / r['tx'] * 1e6:.1f}" for r in rs)
        print(f"  {variant:8s} median {per_tx * 1e6:6.1f} µs CPU per transaction  {base / per_tx:4.2f}x  "
              f"(runs: {each})")
    if not same:
        sys.exit("the variants raised different alerts")


if __name__ == "__main__":
    main()
