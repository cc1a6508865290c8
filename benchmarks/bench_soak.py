"""Soak: repeated replays through one long-running worker; Redis memory and the worker's RSS must stay flat.

One embedded stack (Apache Kafka where it runs, redis-server) and one ``python -m txmon worker`` with
``TXMON_REPLAY_GRAPH_TTL_S`` (default 0 here: prune as soon as a replay has ended) and, with ``--retention``,
``TXMON_REPLAY_RETENTION_S``. The same synthetic data set is replayed ``--replays`` times, each under its own
replay id; after each, the benchmark waits until the worker has pruned the replay's graph (and deleted the
replay), then prints Redis ``used_memory`` and the worker's RSS. With the graph kept
(``--keep``, the behaviour before retention) memory grows by the graph's size every replay. Bounded: it stops
after ``--minutes`` whatever the count.

    python benchmarks/bench_soak.py [--scale 0.1] [--replays 8] [--minutes 10] [--ttl 0] [--retention 0] [--keep]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from producer.plan import plan_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from stream_app.keys import ENDED, ReplayKeys
from txmon.core.settings import Settings
from txmon.pipeline.runner import Pipeline
from txmon.testing.e2e import train_small_gcn


def rss_mib(pid: int | None) -> float:
    """Resident set size of a process, MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1, help="synthetic data set size (1.0 = 203,769 tx)")
    ap.add_argument("--replays", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=10.0, help="stop after this long, whatever the count")
    ap.add_argument("--ttl", type=float, default=0.0, help="TXMON_REPLAY_GRAPH_TTL_S for the worker")
    ap.add_argument("--retention", type=float, default=None,  # > 0: the runner reads the replay back at its end
                    help="TXMON_REPLAY_RETENTION_S for the worker (default: keep what users read back)")
    ap.add_argument("--keep", action="store_true", help="keep every replay's graph (no retention)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="txmon-bench-soak-"))
    d = generate(args.scale, seed=0)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="soak")
    train_small_gcn(ds, tmp / "models")
    settings = Settings(kafka_bootstrap=None, redis_url=None, model_dir=tmp / "models",
                        replay_graph_ttl_s=None if args.keep else args.ttl,
                        replay_retention_s=None if args.keep else args.retention)
    deadline = time.monotonic() + 60 * args.minutes
    print(f"data: {ds.n_nodes:,} tx over {len(np.unique(ds.steps))} steps; "
          f"{'graphs kept' if args.keep else f'graph TTL {args.ttl:g} s'}; at most {args.replays} replays or "
          f"{args.minutes:g} min")
    with Pipeline(settings, run_dir=tmp) as p:
        (worker,) = p.start_workers(1, 120)
        client = p.client
        memory, rss = [], []
        for i in range(args.replays):
            if time.monotonic() > deadline:
                print(f"stopping after {i} replays: {args.minutes:g} min are over")
                break
            t0 = time.monotonic()
            p.run(plan_replay(ds, replay_id=f"soak-{i}"), timeout=600)
            # the worker's timer: the graph pruned (and, with a retention, the replay deleted)
            while not args.keep and time.monotonic() < deadline and not (
                    client.exists(ReplayKeys(f"soak-{i}").pruned)
                    and (args.retention is None or client.zscore(ENDED, f"soak-{i}") is None)):
                time.sleep(0.2)
            used = int(client.info("memory")["used_memory"]) / 2**20
            memory.append(used)
            rss.append(rss_mib(worker.pid))
            print(f"replay {i + 1}: {time.monotonic() - t0:5.1f} s; Redis used_memory {used:7.1f} MiB; "
                  f"worker RSS {rss[-1]:6.1f} MiB", flush=True)
        p.stop_workers()
    if len(memory) >= 4:
        half = len(memory) // 2
        growth = (memory[-1] - memory[half - 1]) / (len(memory) - half)
        print(f"Redis memory from replay {half} to {len(memory)}: {growth:+.2f} MiB a replay "
              f"(a replay's data: {memory[0]:.1f} MiB after the first); worker RSS median "
              f"{statistics.median(rss[half:]):.1f} MiB, last {rss[-1]:.1f} MiB, "
              f"{(rss[-1] - rss[half - 1]) / (len(rss) - half):+.2f} MiB a replay")


if __name__ == "__main__":
    main()
