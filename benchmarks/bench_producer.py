"""Benchmark: the replay producer on a full-size synthetic data set into the embedded broker.

Measures, in one run, against one broker started here (memory storage, 127.0.0.1):
- planning: ``plan_replay`` over all steps (numpy; the events themselves are built while sending);
- txmon produce --max: ``send_replay`` of the whole replay as binary ``tx_batch`` records (the default: up to
  64 transactions a record) and as one JSON record a transaction (``TXMON_RECORD_FORMAT=json``, the format
  before; flush and markers at every step), transactions per second, MB/s and CPU µs per transaction, median
  of --repeat runs, alternating;
- baseline: the straightforward loop, one ``send`` + ``flush`` per event (same events, same
  producer settings) on the first --baseline-events transactions;
- before: the producer's earlier path, a validated TxEvent model and its JSON per event (same flushes),
  alternating with the runs above; CPU µs per transaction of this process for both;
- encoding alone, no Kafka: µs per record for that path and for the wire heads send_replay uses;
- ceiling: the same producer fed pre-serialised values (no event building, no JSON), i.e. what
  kafka-python itself manages here;
- pacing: ``--rate`` held over a few seconds (achieved vs asked).

kafka-python computes the CRC-32C of every record batch in pure Python unless the optional
``crc32c`` package is installed; the first line says which one ran, because it decides the
numbers (about 100 µs per KB in pure Python).

    python benchmarks/bench_producer.py                    # full size (203,769 transactions)
    python benchmarks/bench_producer.py --scale 0.25 --repeat 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from producer.kafka_io import ensure_topics, make_producer
from producer.plan import ReplayPlan, plan_replay, stamp
from producer.send import send_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from txmon.core.settings import Settings
from txmon.embedded import embedded_broker

PARTITIONS = 4


def crc_impl() -> str:
    from kafka.record import util

    return "C (crc32c package)" if getattr(util, "crc32c_c", None) is not None else "pure Python"


def events_of(plan: ReplayPlan, limit: int):
    n = 0
    for sp in plan:
        for seq in range(sp.count):
            if n == limit:
                return
            yield sp.event(seq)
            n += 1


def bench_send(plan: ReplayPlan, bootstrap: str, topic: str, record_format: str = "batch",
               ) -> tuple[float, float, int, float]:
    """``send_replay``: (tx/s, MB/s, bytes, CPU µs per transaction of this process, kafka-python's sender thread
    included)."""
    settings = Settings(kafka_bootstrap=bootstrap, topic_transactions=topic, topic_partitions=PARTITIONS,
                        record_format=record_format)
    cpu = time.process_time()
    s = send_replay(plan, bootstrap, settings)
    cpu = time.process_time() - cpu
    assert s.events == plan.count
    return s.rate, s.mb_per_s, s.bytes, 1e6 * cpu / s.events


def bench_model_path(plan: ReplayPlan, bootstrap: str, topic: str) -> tuple[float, float]:
    """The producer as it was: a validated TxEvent per event and its model_dump_json, flushed per step as
    ``send_replay`` does: (tx/s, CPU µs per transaction)."""
    ensure_topics(bootstrap, [topic], PARTITIONS)
    producer = make_producer(bootstrap)
    try:
        producer.partitions_for(topic)
        cpu, t0 = time.process_time(), time.perf_counter()
        for sp in plan:
            for seq in range(sp.count):
                ev = sp.event(seq)
                producer.send(topic, value=ev.model_dump_json().encode(), key=str(ev.tx_id).encode())
            producer.flush()
        dt, cpu = time.perf_counter() - t0, time.process_time() - cpu
    finally:
        producer.close()
    return plan.count / dt, 1e6 * cpu / plan.count


def bench_encoding(plan: ReplayPlan) -> tuple[float, float]:
    """µs per event to build its record without Kafka: (a TxEvent model + model_dump_json, the wire heads +
    stamp that send_replay uses)."""
    t0 = time.perf_counter()
    for sp in plan:
        for seq in range(sp.count):
            sp.event(seq).model_dump_json().encode()
    model = time.perf_counter() - t0
    t0 = time.perf_counter()
    for sp in plan:
        for head in sp.wire_heads():
            head + stamp(sp.clock())
    wire = time.perf_counter() - t0
    return 1e6 * model / plan.count, 1e6 * wire / plan.count


def bench_baseline(plan: ReplayPlan, bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    """One send + flush per event: every record waits for its acknowledgement."""
    ensure_topics(bootstrap, [topic], PARTITIONS)
    producer = make_producer(bootstrap)
    try:
        producer.partitions_for(topic)
        sent = n_bytes = 0
        t0 = time.perf_counter()
        for ev in events_of(plan, n):
            key, value = str(ev.tx_id).encode(), ev.model_dump_json().encode()
            producer.send(topic, value=value, key=key)
            producer.flush()
            sent += 1
            n_bytes += len(key) + len(value)
        dt = time.perf_counter() - t0
    finally:
        producer.close()
    return sent / dt, n_bytes / 1e6 / dt


def bench_ceiling(plan: ReplayPlan, bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    """Pre-serialised values through the same producer, flushed at the same step boundaries:
    kafka-python's own limit on this machine."""
    records = [(str(ev.tx_id).encode(), ev.model_dump_json().encode()) for ev in events_of(plan, n)]
    flush_at = set(np.cumsum([sp.count for sp in plan]).tolist())
    ensure_topics(bootstrap, [topic], PARTITIONS)
    producer = make_producer(bootstrap)
    try:
        producer.partitions_for(topic)
        t0 = time.perf_counter()
        for i, (key, value) in enumerate(records, 1):
            producer.send(topic, value=value, key=key)
            if i in flush_at:
                producer.flush()
        producer.flush()
        dt = time.perf_counter() - t0
    finally:
        producer.close()
    return len(records) / dt, sum(len(k) + len(v) for k, v in records) / 1e6 / dt


def bench_pacing(ds: EllipticDataset, bootstrap: str, topic: str, rate: float, seconds: float) -> tuple[float, int]:
    # Enough whole steps for about `seconds` at `rate`.
    sizes = np.bincount(ds.steps)
    last = int(np.searchsorted(np.cumsum(sizes), rate * seconds))
    last = min(max(last, int(ds.steps.min())), int(ds.steps.max()))
    plan = plan_replay(ds, int(ds.steps.min()), last, "bench-pacing")
    settings = Settings(kafka_bootstrap=bootstrap, topic_transactions=topic, topic_partitions=PARTITIONS)
    s = send_replay(plan, bootstrap, settings, rate=rate)
    return s.rate, s.events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="synthetic data size (1.0 = Elliptic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="full replays (median)")
    ap.add_argument("--baseline-events", type=int, default=3000, help="events for the send+flush baseline")
    ap.add_argument("--ceiling-events", type=int, default=50_000, help="events for the pre-serialised ceiling")
    ap.add_argument("--rate", type=float, default=5000.0, help="tx/s for the pacing check")
    ap.add_argument("--pacing-seconds", type=float, default=4.0)
    args = ap.parse_args()
    med = statistics.median

    print(f"kafka-python CRC-32C: {crc_impl()}")
    t0 = time.perf_counter()
    d = generate(scale=args.scale, seed=args.seed)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges)
    print(f"generated {ds.n_nodes:,} transactions, {ds.n_edges:,} edges in {time.perf_counter() - t0:.1f} s")

    plan_s = []
    for _ in range(5):
        t0 = time.perf_counter()
        plan = plan_replay(ds, replay_id="bench")
        plan_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for sp in plan:
        for _ in sp.events():
            pass
    build_s = time.perf_counter() - t0
    print(f"planning: median {med(plan_s):.3f} s over 5 runs (all {len(plan)} steps, {plan.n_edges:,} edges); "
          f"building all {plan.count:,} events: {build_s:.2f} s ({build_s / plan.count * 1e6:.1f} µs each)")

    with embedded_broker(Settings()) as broker:  # Apache Kafka where it runs (TXMON_EMBEDDED_BROKER=tansu: Tansu)
        bs = broker.bootstrap
        print(f"{broker.label} at {bs}, {PARTITIONS} partitions per topic\n")
        runs, json_runs, before = [], [], []
        for i in range(args.repeat):  # alternating, so that a noisy moment hits all three
            runs.append(bench_send(plan, bs, f"bench.send.{i}"))
            json_runs.append(bench_send(plan, bs, f"bench.json.{i}", "json"))
            before.append(bench_model_path(plan, bs, f"bench.model.{i}"))
        rate, mbs, cpu = med(r[0] for r in runs), med(r[1] for r in runs), med(r[3] for r in runs)
        j_rate, j_mbs, j_cpu = med(r[0] for r in json_runs), med(r[1] for r in json_runs), med(r[3] for r in json_runs)
        m_rate, m_cpu = med(r[0] for r in before), med(r[1] for r in before)
        b_rate, b_mbs = bench_baseline(plan, bs, "bench.baseline", args.baseline_events)
        c_rate, c_mbs = bench_ceiling(plan, bs, "bench.ceiling", min(args.ceiling_events, plan.count))
        p_rate, p_events = bench_pacing(ds, bs, "bench.pacing", args.rate, args.pacing_seconds)

    print(f"{'':44} {'tx/s':>9} {'MB/s':>7} {'x baseline':>11}")
    print(f"{'baseline: send + flush per event':44} {b_rate:9,.0f} {b_mbs:7.1f} {1.0:11.2f}")
    print(f"{'txmon produce --max, tx_batch (median of ' + str(len(runs)) + ')':44} {rate:9,.0f} {mbs:7.1f} "
          f"{rate / b_rate:11.2f}")
    print(f"{'txmon produce --max, JSON records':44} {j_rate:9,.0f} {j_mbs:7.1f} {j_rate / b_rate:11.2f}")
    print(f"{'ceiling: pre-serialised values, same producer':44} {c_rate:9,.0f} {c_mbs:7.1f} {c_rate / b_rate:11.2f}")
    print(f"\nproducer CPU per transaction (median of {len(runs)}): txmon produce --max, tx_batch records {cpu:.1f} µs "
          f"at {rate:,.0f} tx/s; JSON records {j_cpu:.1f} µs at {j_rate:,.0f} tx/s ({j_cpu / cpu:.2f}x); a validated "
          f"event model per transaction (as before that) {m_cpu:.1f} µs at {m_rate:,.0f} tx/s ({m_cpu / cpu:.2f}x)")
    enc_model, enc_wire = bench_encoding(plan)
    print(f"building a record, no Kafka: event model + JSON {enc_model:.1f} µs, wire heads + stamp {enc_wire:.1f} µs "
          f"({enc_model / enc_wire:.1f}x)")
    print(f"\nall --max runs: tx_batch {', '.join(f'{r[0]:,.0f}' for r in runs)} tx/s, JSON "
          f"{', '.join(f'{r[0]:,.0f}' for r in json_runs)} tx/s; bytes per transaction on the wire (key + value): "
          f"tx_batch {runs[0][2] / plan.count:,.0f}, JSON {json_runs[0][2] / plan.count:,.0f}")
    print(f"pacing: asked {args.rate:,.0f} tx/s, got {p_rate:,.0f} tx/s over {p_events:,} events "
          f"({(p_rate / args.rate - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
