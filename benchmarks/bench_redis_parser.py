"""Benchmark: the worker's core (Processor) with redis-py's pure-Python RESP parser against hiredis (its C parser
and command packer, which redis-py uses whenever the ``hiredis`` package is installed).

Each run is a subprocess that replays a synthetic data set through ``process_batch`` (batches of --batch events,
about what the pipeline's worker gets) and ``on_step_end``, against its own redis-server, and reports the CPU
seconds of the whole process per transaction. The two variants alternate (--repeat times each); the Python
parser's runs hide ``hiredis`` from redis-py. Both must raise the same alerts.

    python benchmarks/bench_redis_parser.py [--scale 0.5] [--batch 470] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def run_once(scale: float, batch: int, seed: int) -> dict:
    """In the subprocess: the replay through a Processor; CPU seconds and the alerts raised."""
    from collections import defaultdict

    import numpy as np
    import redis
    import torch
    from redis.utils import HIREDIS_AVAILABLE

    from model_store.inference import Scaler
    from model_store.models.gcn import GCN
    from producer.plan import plan_replay
    from replay.data.dataset import EllipticDataset
    from replay.synth import generate
    from stream_app.processor import Processor
    from stream_app.scorer import LoadedModel
    from txmon.core.contracts import TxEvent
    from txmon.embedded import RedisServer

    d = generate(scale, seed=seed)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="bench")
    torch.manual_seed(seed)
    model = LoadedModel(GCN(ds.features.shape[1]).eval(), Scaler.fit(ds.features), 0.55, "gcn-bench")
    by_step: dict[int, list[TxEvent]] = defaultdict(list)
    for e in (e for sp in plan_replay(ds, replay_id="bench") for e in sp.events()):  # as the producer sends
        by_step[e.step].append(e)
    alerts: list[str] = []
    with RedisServer() as server:
        proc = Processor(redis.Redis.from_url(server.url), model)
        t0 = time.process_time()
        for step, evs in by_step.items():
            for i in range(0, len(evs), batch):
                alerts += [a.alert_id for a in proc.process_batch(evs[i:i + batch])]
            res = proc.on_step_end("bench", step, 0, 1)
            assert res is not None
            alerts += [a.alert_id for a in res.alerts]
        cpu = time.process_time() - t0
    return {"hiredis": HIREDIS_AVAILABLE, "cpu_s": cpu, "tx": ds.n_nodes, "alerts": sorted(alerts)}


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
        print(json.dumps(run_once(args.scale, args.batch, args.seed)))
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
    same = all(r["alerts"] == first["alerts"] for rs in runs.values() for r in rs)
    print(f"{first['tx']:,} transactions, batches of {args.batch}, {args.repeat} runs of each variant, alternating; "
          f"{len(first['alerts']):,} alerts, the same in every run: {same}")
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
