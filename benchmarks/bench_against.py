"""Benchmark: the worker's core (Processor) at this checkout against another revision — same outputs, less CPU?

Each run is a subprocess that replays a synthetic data set (same seed, same random GCN) through
``process_batch`` (batches of --batch events, about what the pipeline's worker gets) and ``on_step_end``,
against its own redis-server. The baseline's runs import a copy of the revision (``git archive``) ahead of
this checkout, in the same environment (the installed packages are this checkout's). Runs alternate, --repeat
times each. Prints each side's CPU seconds of the process per transaction (median, ratio; the step closes'
share) and whether the two raised the same alerts, statistics and final scores — compared as their JSON
without the clock fields and schema_version (event_time is the time the plan was built, processing_time and
computed_at the time of the run; a revision may bump the version).

    python benchmarks/bench_against.py --baseline 3dc080a [--scale 1.0] [--repeat 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(scale: float, batch: int, seed: int) -> dict:
    """In the subprocess: the replay through a Processor; digests of what it produced and its CPU seconds."""
    from collections import defaultdict

    import numpy as np
    import redis
    import torch

    import stream_app.processor
    from model_store.inference import Scaler
    from model_store.models.gcn import GCN
    from producer.plan import plan_replay
    from replay.data.dataset import EllipticDataset
    from replay.synth import generate
    from stream_app.processor import Processor
    from stream_app.scorer import LoadedModel
    from txmon.embedded import RedisServer

    d = generate(scale, seed=seed)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="bench")
    torch.manual_seed(seed)
    model = LoadedModel(GCN(ds.features.shape[1]).eval(), Scaler.fit(ds.features), 0.55, "gcn-bench")
    by_step = defaultdict(list)
    for sp in plan_replay(ds, replay_id="bench"):
        by_step[sp.step] += list(sp.events())
    alerts, stats, finals = [], [], []
    with RedisServer() as server:
        proc = Processor(redis.Redis.from_url(server.url), model)
        t0 = time.process_time()
        closes = 0.0
        for step, evs in by_step.items():
            for i in range(0, len(evs), batch):
                alerts += proc.process_batch(evs[i:i + batch])
            t_close = time.process_time()
            res = proc.on_step_end("bench", step, 0, 1)
            closes += time.process_time() - t_close
            assert res is not None
            alerts += res.alerts
            stats.append(res.stats)
            finals.append(res.final_scores)
        cpu = time.process_time() - t0

    def digest(lines: list[str]) -> str:
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    return {
        "code": str(Path(stream_app.processor.__file__).resolve().parent.parent), "tx": ds.n_nodes, "cpu_s": cpu,
        "close_s": closes,
        "alerts": len(alerts),
        # schema_version too: a revision that bumps it changes every record's by design
        "alerts_digest": digest([a.model_dump_json(exclude={"processing_time", "event_time", "schema_version"})
                                 for a in sorted(alerts, key=lambda a: a.alert_id)]),
        "stats_digest": digest([s.model_dump_json(exclude={"computed_at", "schema_version"}) for s in stats]),
        "finals_digest": hashlib.sha256(np.concatenate(finals).tobytes()).hexdigest()[:16],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="the git revision to compare with, e.g. HEAD~3")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=470, help="events per process_batch call")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each side, alternating")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_once(args.scale, args.batch, args.seed)))
        return
    if not args.baseline:
        ap.error("--baseline REV is required")
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                         capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="txmon-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sides = {f"baseline {rev}": Path(tmp), "this checkout": ROOT}
        runs: dict[str, list[dict]] = {k: [] for k in sides}
        for _ in range(args.repeat):
            for side, code in sides.items():
                env = {**os.environ, "PYTHONPATH": str(code)}
                cmd = [sys.executable, __file__, "--child", "--scale", str(args.scale), "--batch", str(args.batch),
                       "--seed", str(args.seed)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=code).stdout
                result = json.loads(out.strip().splitlines()[-1])
                if Path(result["code"]) != code.resolve():
                    sys.exit(f"the {side} run imported {result['code']}, not {code}")
                runs[side].append(result)
    first = next(iter(runs.values()))[0]
    keys = ("alerts", "alerts_digest", "stats_digest", "finals_digest")
    same = {k: all(r[k] == first[k] for rs in runs.values() for r in rs) for k in keys}
    print(f"{first['tx']:,} transactions, batches of {args.batch}, {args.repeat} runs of each side, alternating")
    print(f"same outputs: {first['alerts']:,} alerts identical: {same['alerts'] and same['alerts_digest']}; "
          f"step statistics identical: {same['stats_digest']}; final scores identical: {same['finals_digest']}")
    base = statistics.median(r["cpu_s"] / r["tx"] for r in runs[f"baseline {rev}"])
    for side, rs in runs.items():
        per_tx = statistics.median(r["cpu_s"] / r["tx"] for r in rs)
        each = ", ".join(f"{r['cpu_s'] / r['tx'] * 1e6:.1f}" for r in rs)
        close = statistics.median(r["close_s"] / r["tx"] for r in rs)
        print(f"  {side:18s} median {per_tx * 1e6:6.1f} µs CPU per transaction  {base / per_tx:4.2f}x  (runs: {each}); "
              f"step closes {close * 1e6:.1f} of it")
    if not all(same.values()):
        sys.exit("the two sides produced different outputs")


if __name__ == "__main__":
    main()
