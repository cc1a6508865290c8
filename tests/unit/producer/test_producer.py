"""The replay producer without a broker: planning (order, seq, edges once), pacing, markers, clean errors.

Against a real broker: tests/integration/producer/test_send_kafka.py."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from producer.kafka_io import ProducerError, check_reachable, ensure_topics, make_producer, parse_bootstrap
from producer.plan import PlanError, ReplayPlan, plan_replay, resolve_steps
from producer.send import Pacer, TopicSetup, new_replay_id, send_replay
from replay.data.dataset import EllipticDataset
from replay.synth import generate, synthesize
from txmon.core.contracts import TOPIC_EVENT, ReplayEnd, StepEnd, TxEvent, encode_features
from txmon.core.elliptic_format import N_FEATURES
from txmon.core.settings import Settings
from txmon.core.tx_batch import is_batch, read_records
from txmon.embedded import free_port

runner = CliRunner()



@pytest.fixture(scope="module")
def synth_ds() -> EllipticDataset:
    d = generate(scale=0.02, n_steps=12, seed=3)
    return EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges)


def _tiny(edges: list[tuple[int, int]], rows: list[tuple[int, int]] | None = None) -> EllipticDataset:
    """Hand-made data: (tx id, step) rows in file order, steps interleaved on purpose."""
    rows = rows or [(20, 1), (40, 2), (10, 1), (50, 2), (30, 1)]
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    steps = np.array([r[1] for r in rows], dtype=np.int16)
    feats = np.arange(len(rows) * N_FEATURES, dtype=np.float32).reshape(len(rows), N_FEATURES)
    labels = np.array([1, 0, -1, 1, 0][: len(rows)], dtype=np.int8)
    return EllipticDataset(ids, steps, feats, labels, np.array(edges, dtype=np.int64).reshape(-1, 2))


def _fixed_clock() -> float:
    return 1_700_000_000.0


# -- planning ---------------------------------------------------------------------------------


def test_seq_follows_row_order_within_each_step(synth_ds: EllipticDataset) -> None:
    plan = plan_replay(synth_ds, replay_id="r")
    assert [sp.step for sp in plan] == list(range(1, 13))
    for sp in plan:
        rows = np.flatnonzero(synth_ds.steps == sp.step)
        assert np.array_equal(sp.rows, rows)
        events = list(sp.events())
        assert [e.seq for e in events] == list(range(len(rows)))
        assert [e.tx_id for e in events] == synth_ds.tx_ids[rows].tolist()
        assert all(e.step == sp.step and e.replay_id == "r" for e in events)
        assert np.array_equal(np.stack([e.features for e in events]), synth_ds.features[rows])
        end = sp.end(4)
        assert isinstance(end, StepEnd) and end.count == len(rows) == sp.count and end.step == sp.step
    assert plan.count == synth_ds.n_nodes
    assert plan.end(4).count == synth_ds.n_nodes


def test_every_edge_travels_exactly_once_on_its_later_endpoint(synth_ds: EllipticDataset) -> None:
    plan = plan_replay(synth_ds)
    assert plan.skipped.total == 0
    seq = {}
    for sp in plan:
        seq.update({int(t): i for i, t in enumerate(sp.tx_ids)})
    carried: Counter[tuple[int, int]] = Counter()
    for sp in plan:
        for e in sp.events():
            for src, src_seq in e.inputs_from:  # src → e, src sent earlier
                assert src_seq == seq[src] < e.seq
                carried[(src, e.tx_id)] += 1
            for dst, dst_seq in e.outputs_to:  # e → dst, dst sent earlier
                assert dst_seq == seq[dst] < e.seq
                carried[(e.tx_id, dst)] += 1
            # neighbours listed in the order they were sent
            assert [s for _, s in e.inputs_from] == sorted(s for _, s in e.inputs_from)
    expected = Counter(map(tuple, synth_ds.edges.tolist()))
    assert carried == expected
    assert max(carried.values()) == 1
    assert plan.n_edges == synth_ds.n_edges


def test_events_round_trip_through_the_topic_contract(synth_ds: EllipticDataset) -> None:
    plan = plan_replay(synth_ds, 2, 3, replay_id="rt")
    for sp in plan:
        for e in sp.events():
            back = TOPIC_EVENT.validate_json(e.model_dump_json())
            assert isinstance(back, TxEvent)
            assert (back.tx_id, back.seq, back.inputs_from, back.outputs_to) == (e.tx_id, e.seq, e.inputs_from,
                                                                                  e.outputs_to)
            assert np.array_equal(back.features, e.features)
        assert isinstance(TOPIC_EVENT.validate_json(sp.end(4).model_dump_json()), StepEnd)
    end = TOPIC_EVENT.validate_json(plan.end(4).model_dump_json())
    assert isinstance(end, ReplayEnd) and (end.first_step, end.last_step, end.count) == (2, 3, plan.count)


def _payloads(plan: ReplayPlan) -> list[str]:
    out = []
    for sp in plan:
        out += [e.model_dump_json() for e in sp.events()]
        out.append(sp.end(4).model_dump_json())
    out.append(plan.end(4).model_dump_json())
    return out


def test_no_label_travels(synth_ds: EllipticDataset) -> None:
    payloads = _payloads(plan_replay(synth_ds, 1, 4, "r", clock=_fixed_clock))
    allowed = set(TxEvent.model_fields) | set(StepEnd.model_fields) | set(ReplayEnd.model_fields)
    for p in payloads:
        keys = set(json.loads(p))
        assert keys <= allowed
        assert not {"label", "labels", "class", "illicit"} & keys
        assert "label" not in p and "class" not in p and "illicit" not in p
    # The proof: scrambling the labels changes no byte that is sent.
    shuffled = EllipticDataset(synth_ds.tx_ids, synth_ds.steps, synth_ds.features,
                               np.random.default_rng(0).permutation(synth_ds.labels), synth_ds.edges)
    assert _payloads(plan_replay(shuffled, 1, 4, "r", clock=_fixed_clock)) == payloads


def test_hand_made_edges_attach_to_the_later_endpoint() -> None:
    # step 1 sends 20 (seq 0), 10 (seq 1), 30 (seq 2); step 2 sends 40 (0), 50 (1)
    ds = _tiny([(10, 20), (20, 10), (30, 10), (40, 50)])
    plan = plan_replay(ds, replay_id="h")
    ev = {e.tx_id: e for sp in plan for e in sp.events()}
    assert [(e.tx_id, e.seq) for e in (ev[20], ev[10], ev[30], ev[40], ev[50])] == [
        (20, 0), (10, 1), (30, 2), (40, 0), (50, 1)]
    assert ev[20].inputs_from == [] and ev[20].outputs_to == []
    assert ev[10].outputs_to == [(20, 0)]  # 10 → 20, 20 came first
    assert ev[10].inputs_from == [(20, 0)]  # 20 → 10
    assert ev[30].outputs_to == [(10, 1)]  # 30 → 10
    assert ev[50].inputs_from == [(40, 0)]  # 40 → 50
    assert ev[40].inputs_from == [] and ev[40].outputs_to == []
    assert plan.skipped.total == 0 and plan.warnings() == []


def test_cross_step_edges_self_loops_duplicates_and_dangling_are_counted_and_skipped() -> None:
    ds = _tiny([(10, 20), (30, 30), (20, 40), (10, 20), (50, 999), (40, 50)])
    plan = plan_replay(ds)
    s = plan.skipped
    assert (s.cross_step, s.self_loops, s.duplicates, s.dangling) == (1, 1, 1, 1)
    assert s.total == 4 and plan.n_edges == 2
    carried = [(e.tx_id, e.inputs_from, e.outputs_to) for sp in plan for e in sp.events() if e.inputs_from or
               e.outputs_to]
    assert carried == [(10, [], [(20, 0)]), (50, [(40, 0)], [])]
    (warning,) = plan.warnings()
    assert "4 edges" in warning and "1 cross-step" in warning and "1 self-loop" in warning
    # Only edges touching the replayed steps count: step 2 alone sees the cross-step and dangling ones.
    s2 = plan_replay(ds, 2, 2).skipped
    assert (s2.cross_step, s2.self_loops, s2.duplicates, s2.dangling) == (1, 0, 0, 1)


@pytest.mark.parametrize(("first", "last", "message"), [
    (0, 2, "first step must be in 1..49, got 0"),
    (1, 50, "last step must be in 1..49, got 50"),
    (2, 1, "first step 2 is after last step 1"),
    (1, 5, r"last step 5 has no transactions \(the data set holds steps 1..2\)"),
    (7, 9, "first step 7 has no transactions"),
])
def test_bad_step_ranges_are_clear_errors(first: int, last: int, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_replay(_tiny([]), first, last)


def test_step_range_defaults_and_gaps() -> None:
    ds = _tiny([], rows=[(1, 3), (2, 5), (3, 3), (4, 7)])
    assert resolve_steps(ds, None, None) == (3, 7)
    assert resolve_steps(ds, 5, None) == (5, 7)
    plan = plan_replay(ds)
    assert [sp.step for sp in plan] == [3, 5, 7] and plan.empty_steps == [4, 6]
    assert any("steps 4, 6 have no transactions" in w for w in plan.warnings())
    assert plan_replay(ds, 5, 5).count == 1


def test_planning_full_size_is_fast() -> None:
    rng = np.random.default_rng(0)
    n, e = 203_769, 234_355
    steps = np.sort(rng.integers(1, 50, n)).astype(np.int16)
    ids = rng.permutation(n).astype(np.int64) + 1
    src = rng.integers(0, n, e)
    dst = np.clip(src + rng.integers(-300, 300, e), 0, n - 1)  # mostly within a step
    ds = EllipticDataset(ids, steps, np.zeros((n, N_FEATURES), np.float32), np.zeros(n, np.int8),
                         np.stack([ids[src], ids[dst]], axis=1))
    t0 = time.perf_counter()
    plan = plan_replay(ds)
    assert time.perf_counter() - t0 < 3.0
    s = plan.skipped
    assert plan.n_edges + s.cross_step + s.self_loops + s.duplicates == e and s.cross_step > 0


# -- pacing -----------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        assert s > 0
        self.slept += s
        self.now += s


def test_pacer_holds_the_rate_on_schedule() -> None:
    t = FakeTime()
    pacer = Pacer(250.0, clock=t.clock, sleep=t.sleep)
    for i in range(1000):
        pacer.wait()
        t.now += 0.0013 if i % 7 else 0.003  # sending itself takes time, unevenly
    # 1000 events at 250/s: the 1000th is due 999/250 s after the first, wherever the send costs fall
    assert 999 / 250 <= t.now - 100.0 <= 999 / 250 + 0.0031


def test_pacer_catches_up_but_not_in_a_flood() -> None:
    t = FakeTime()
    pacer = Pacer(100.0, clock=t.clock, sleep=t.sleep, max_burst=0.5)
    for _ in range(10):
        pacer.wait()
    t.now += 10.0  # a long stall (a slow flush)
    slept = t.slept
    for _ in range(45):  # up to half a second's worth goes out at once ...
        pacer.wait()
    assert t.slept == slept
    for _ in range(10):  # ... then the schedule holds again
        pacer.wait()
    assert t.slept > slept


def test_no_rate_means_no_sleep() -> None:
    t = FakeTime()
    pacer = Pacer(None, clock=t.clock, sleep=t.sleep)
    for _ in range(100):
        pacer.wait()
    assert t.slept == 0
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)


# -- sending (fake producer: no Kafka) --------------------------------------------------------


class FakeFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self.is_done = True
        self.exception = error

    def failed(self) -> bool:
        return self.exception is not None


class FakeProducer:
    def __init__(self, partitions: int, fail_after: int | None = None) -> None:
        self.log: list[tuple] = []
        self.partitions = partitions
        self.fail_after = fail_after
        self.closed = False

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> FakeFuture:
        self.log.append(("send", topic, key, value, partition))
        sends = sum(1 for x in self.log if x[0] == "send")
        return FakeFuture(RuntimeError("broker said no") if self.fail_after and sends > self.fail_after else None)

    def flush(self, timeout: float | None = None) -> None:
        self.log.append(("flush",))

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.mark.parametrize("record_format", ["json", "batch"])
def test_send_order_markers_after_flush_on_every_partition(synth_ds: EllipticDataset, record_format: str) -> None:
    settings = Settings(topic_transactions="t.tx", record_format=record_format, producer_batch=7)
    plan = plan_replay(synth_ds, 2, 4, "fake")
    fake = FakeProducer(3)
    seen: list[tuple[int, int]] = []
    summary = send_replay(plan, "unused:1", settings, setup=TopicSetup(3), producer=fake,
                          progress=lambda d, t: seen.append((d, t)))
    i = 0
    batches = 0
    for sp in plan:
        seq = 0
        while seq < sp.count:
            op, topic, key, value, partition = fake.log[i]
            events = read_records(value)
            assert (op, topic) == ("send", "t.tx")
            assert all(isinstance(ev, TxEvent) and ev.step == sp.step for ev in events)
            assert [ev.seq for ev in events] == list(range(seq, seq + len(events)))  # in order, each once
            if record_format == "json":
                assert partition is None and len(events) == 1 and key == str(events[0].tx_id).encode()
            else:  # consecutive seqs, round robin over the partitions
                assert is_batch(value) and 1 <= len(events) <= 7 and partition == batches % 3
                assert key == f"fake:{sp.step}:{seq}".encode()
                batches += 1
            for ev in events:
                assert ev.tx_id == int(sp.tx_ids[ev.seq]) and np.array_equal(ev.features, sp.features[ev.seq])
                assert ev.inputs_from == sp.inputs.pairs(ev.seq) and ev.outputs_to == sp.outputs.pairs(ev.seq)
            seq += len(events)
            i += 1
        assert fake.log[i] == ("flush",)  # the step's transactions are out before its markers
        markers = fake.log[i + 1:i + 4]
        assert [m[4] for m in markers] == [0, 1, 2] and all(m[2] is None for m in markers)
        assert {TOPIC_EVENT.validate_json(m[3]).count for m in markers} == {sp.count}
        assert fake.log[i + 4] == ("flush",)
        i += 5
    ends = fake.log[i:i + 3]
    assert [m[4] for m in ends] == [0, 1, 2]
    assert all(isinstance(TOPIC_EVENT.validate_json(m[3]), ReplayEnd) for m in ends)
    assert fake.log[i + 3:] == [("flush",)]
    assert not fake.closed  # a producer passed in is the caller's to close
    assert summary.events == plan.count and summary.markers == 3 * (len(plan) + 1)
    assert summary.step_counts == {sp.step: sp.count for sp in plan}
    assert summary.bytes == sum(len(x[3]) + len(x[2] or b"") for x in fake.log if x[0] == "send")
    assert summary.replay_id == "fake" and summary.partitions == 3 and summary.edges == plan.n_edges
    assert seen[-1] == (plan.count, plan.count)


def test_batches_respect_the_record_size_limit(synth_ds: EllipticDataset) -> None:
    plan = plan_replay(synth_ds, 2, 3, "sized")
    fake = FakeProducer(2)
    settings = Settings(producer_batch=1000, max_record_bytes=8 * 1024)
    send_replay(plan, "unused:1", settings, setup=TopicSetup(2), producer=fake)
    sizes = [len(x[3]) for x in fake.log if x[0] == "send" and is_batch(x[3])]
    assert len(sizes) > 2 * len(plan) and max(sizes) <= 8 * 1024


def test_a_paced_batch_goes_out_once_its_first_transaction_waited_the_linger_time(synth_ds: EllipticDataset) -> None:
    plan = plan_replay(synth_ds, 2, 2, "slow")
    fake = FakeProducer(1)
    t = FakeTime()
    # 200 tx/s, a transaction every 5 ms, and an 11 ms linger: a record holds three transactions (0, 5, 10 ms)
    send_replay(plan, "unused:1", Settings(producer_batch=64, producer_linger_ms=11), setup=TopicSetup(1),
                producer=fake, pacer=Pacer(200, clock=t.clock, sleep=t.sleep))
    counts = [len(read_records(x[3])) for x in fake.log if x[0] == "send" and is_batch(x[3])]
    assert sum(counts) == plan.count and counts[:-1] == [3] * (len(counts) - 1)


def test_undelivered_records_are_a_producer_error(synth_ds: EllipticDataset) -> None:
    plan = plan_replay(synth_ds, 1, 2, "x")
    with pytest.raises(ProducerError, match="were not delivered: broker said no"):
        send_replay(plan, "unused:1", Settings(), setup=TopicSetup(2), producer=FakeProducer(2, fail_after=5))


def test_replay_ids_are_readable_and_distinct() -> None:
    ids = {new_replay_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 20 and i[8] == "-" and i[15] == "-" for i in ids)


# -- Kafka plumbing without a broker ----------------------------------------------------------


def test_bootstrap_addresses_are_parsed() -> None:
    assert parse_bootstrap("a:1, b:2") == [("a", 1), ("b", 2)]
    assert parse_bootstrap("kafka") == [("kafka", 9092)]
    for bad in ("", "a:x", "a:0", ":9092"):
        with pytest.raises(ProducerError, match="bootstrap"):
            parse_bootstrap(bad)


@pytest.mark.parametrize("make", [make_producer, lambda b: ensure_topics(b, ["t"], 1), check_reachable])
def test_unreachable_broker_fails_fast_and_clearly(make) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(ProducerError, match=f"cannot reach Kafka at {bootstrap}: .*refused"):
        make(bootstrap)
    assert time.perf_counter() - t0 < 5


# -- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("produce-data")
    synthesize(out, scale=0.01, n_steps=4, seed=2)
    return out


def _app() -> typer.Typer:
    from txmon.cli.produce import produce

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(produce)
    return app


@pytest.mark.parametrize(("args", "env", "message"), [
    ([], {}, "no Kafka broker configured: set TXMON_KAFKA_BOOTSTRAP"),
    (["--rate", "10", "--max"], {"TXMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "mutually exclusive"),
    (["--rate", "0"], {"TXMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "--rate must be positive"),
    (["--from-step", "0"], {"TXMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "--from-step must be in 1..49, got 0"),
    (["--from-step", "3", "--to-step", "2"], {"TXMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "--from-step 3 is after"),
    (["--to-step", "9"], {"TXMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "last step 9 has no transactions"),
    ([], {"TXMON_KAFKA_BOOTSTRAP": "closed"}, "cannot reach Kafka at 127.0.0.1:"),
])
def test_command_errors_are_clean(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                  env: dict[str, str], message: str) -> None:
    monkeypatch.delenv("TXMON_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("TXMON_CACHE_DIR", str(tmp_path / "cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, f"127.0.0.1:{free_port()}" if v == "closed" else v)
    result = runner.invoke(_app(), ["--data", str(data_dir), *args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_wire_records_are_byte_for_byte_the_event_models_json() -> None:
    """The producer's hot path builds each record from per-step parts; the contract is the TxEvent model."""
    from producer.plan import stamp

    d = generate(0.01, 6, seed=4)
    ds = EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges)
    rng = np.random.default_rng(0)
    n = 0
    for sp in plan_replay(ds, replay_id="20261203-083010-c37a"):
        for seq, head in enumerate(sp.wire_heads()):
            t = float(rng.choice([1.7e9 + rng.random() * 1e8, 1_796_287_548.0, 0.5, 1e-7]))
            event = sp.event(seq).model_copy(update={"event_time": t})
            assert head + stamp(t) == event.model_dump_json().encode(), (sp.step, seq)
            n += 1
    assert n == ds.n_nodes


def test_rows_base64_equals_each_rows_encoding() -> None:
    from producer.plan import _rows_base64

    rng = np.random.default_rng(1)
    for width in (165, 4, 3):  # 660 bytes a row (sliced from one encoding), 16 and 12 (per row)
        x = rng.normal(size=(7, width)).astype(np.float32)
        assert _rows_base64(x) == [encode_features(r) for r in x]


def test_a_non_finite_feature_is_refused_with_its_transaction() -> None:
    d = generate(0.01, 2, seed=4)
    features = d.features.astype(np.float32)
    features[5, 17] = np.inf
    ds = EllipticDataset(d.tx_ids, d.steps, features, d.labels, d.edges)
    sp = next(sp for sp in plan_replay(ds) if 5 in sp.rows)
    with pytest.raises(PlanError, match=rf"tx {d.tx_ids[5]} \(step {d.steps[5]}\): feature 17 is inf"):
        sp.wire_heads()
