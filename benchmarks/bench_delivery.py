"""Benchmark: publishing batches exactly once — the worker's ``ExactlyOnce.deliver`` for four input partitions at
once, as a worker does after each micro-batch, against the embedded Apache Kafka broker (127.0.0.1).

Each round delivers one batch per partition (two alerts and the next offset, in that partition's transaction)
and waits for all four, as ``stream_app.app`` does before its next fetch. Compared in one run, alternating:
aiokafka's default ``retry_backoff_ms`` (100) and the worker's (``TXN_RETRY_BACKOFF_MS``). The broker refuses
AddOffsetsToTxn and EndTxn with CONCURRENT_TRANSACTIONS while it still writes the previous commit's markers;
aiokafka waits the backoff before it asks again.

    python benchmarks/bench_delivery.py [--rounds 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from aiokafka.errors import KafkaError

from producer.kafka_io import ensure_topics
from stream_app.delivery import TXN_RETRY_BACKOFF_MS, ExactlyOnce, OutputTopics
from stream_app.routing import Outputs
from txmon.core.settings import Settings
from txmon.embedded import embedded_broker

PARTITIONS = 4


async def rounds(bootstrap: str, name: str, backoff_ms: int, n: int) -> list[float]:
    """Seconds per round of four concurrent deliveries (the first 5 rounds, producers warming up, left out)."""
    topics = OutputTopics(f"{name}.alerts", f"{name}.stats", f"{name}.dead", f"{name}.in")
    ensure_topics(bootstrap, [topics.alerts, topics.stats, topics.dead_letter, topics.transactions], PARTITIONS)
    eos = ExactlyOnce(bootstrap, f"{name}.group", topics.transactions, topics, assigned=lambda p: True,
                      retry_backoff_ms=backoff_ms)
    try:
        for p in range(PARTITIONS):
            for attempt in range(50):  # a fresh broker creates its offsets topic at the first group lookup
                try:
                    await eos.admit(p)
                    break
                except KafkaError:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.2)
        out = Outputs(alerts=[(b"1", b'{"alert": 1}'), (b"2", b'{"alert": 2}')])
        times = []
        for i in range(n + 5):
            t = time.perf_counter()
            done = await asyncio.gather(*(eos.deliver(p, out, i, i + 1) for p in range(PARTITIONS)))
            times.append(time.perf_counter() - t)
            if not all(done):
                raise RuntimeError(f"round {i}: a delivery was refused")
        return times[5:]
    finally:
        await eos.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=60, help="rounds per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each backoff, alternating")
    args = ap.parse_args()
    backoffs = {"aiokafka's default backoff (100 ms)": 100, f"the worker's ({TXN_RETRY_BACKOFF_MS} ms)":
                TXN_RETRY_BACKOFF_MS}
    per: dict[str, list[float]] = {k: [] for k in backoffs}
    with embedded_broker(Settings()) as broker:
        print(f"{broker.label} at {broker.bootstrap}; {PARTITIONS} partitions delivered at once per round, "
              f"{args.rounds} rounds x {args.repeat}\n")
        for r in range(args.repeat):
            for k, (label, ms) in enumerate(backoffs.items()):
                per[label] += asyncio.run(rounds(broker.bootstrap, f"bench.delivery.{r}.{k}", ms, args.rounds))
    base = statistics.median(per[next(iter(backoffs))])
    for label, times in per.items():
        med = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"  {label:36s} median {med * 1e3:6.1f} ms, p90 {p90 * 1e3:6.1f} ms a round  "
              f"{base / med:4.2f}x")


if __name__ == "__main__":
    main()
